"""fusion: unsupervised multi-sensor fusion, from aligned sensor streams to microcontrollers."""

__version__ = "0.1.0"
