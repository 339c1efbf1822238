"""A content-addressed file store: each file is kept once, under the sha256 of its bytes.

Layout under the store's folder::

    sha256/ab/cdef…   one file per distinct content (read-only once written)
    tmp/              files being written (removed on success and on error)

:meth:`BlobStore.put` copies a file into ``tmp/`` while hashing it, flushes it to disk, then
renames it to its digest. Two processes storing the same content race harmlessly (both renames
install identical bytes) and a crash leaves at most an unreferenced temporary or blob, never a
half file under a digest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from fusion.registry.errors import RegistryCorruptError

__all__ = ["CHUNK_BYTES", "BlobStore", "sha256_file"]

#: Read and hash files in chunks of this many bytes.
CHUNK_BYTES = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


class BlobStore:
    """Files by sha256 under ``root`` (see the module docstring).

    Args:
        root: the store's folder (created when missing).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "sha256").mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        """Where the blob with this digest lives (it may not exist)."""
        return self.root / "sha256" / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put(self, source: str | Path) -> tuple[str, int]:
        """Store a file's content; return its hex sha256 and size in bytes."""
        digest = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(dir=self.root / "tmp", prefix="blob.", suffix=".tmp")
        try:
            with open(source, "rb") as src, os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: src.read(CHUNK_BYTES), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                # The database row that refers to the blob is committed after this returns: the
                # bytes must reach the disk first, or a power cut could commit a row to nothing.
                os.fsync(out.fileno())
            hexdigest = digest.hexdigest()
            final = self.path(hexdigest)
            if final.is_file():
                os.unlink(tmp)
            else:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return hexdigest, size

    def verify(self, digest: str) -> Path:
        """The blob's path, after checking that its content still hashes to ``digest``.

        Raises:
            RegistryCorruptError: the blob is missing or altered.
        """
        path = self.path(digest)
        if not path.is_file():
            raise RegistryCorruptError(f"stored file {path} (sha256 {digest}) is missing")
        actual = sha256_file(path)
        if actual != digest:
            raise RegistryCorruptError(
                f"stored file {path} was altered: sha256 {actual}, expected {digest}"
            )
        return path

    def copy_to(self, digest: str, dest: str | Path) -> Path:
        """Copy a verified blob to ``dest`` (a writable copy, not a link: editing it must never
        alter the store)."""
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.verify(digest), dest)
        return dest
