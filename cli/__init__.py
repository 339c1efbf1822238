"""The `fusion` command-line application (thin: parses, calls the library)."""
