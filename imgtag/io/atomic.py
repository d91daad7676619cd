"""Atomic file writes: write a temp file in the destination directory, fsync, then os.replace.

Readers never see a half-written file, and an interrupted or failed write (exception, KeyboardInterrupt, a
full disk) removes the temp file and leaves any pre-existing destination untouched. The final file gets the permissions of
the file it replaces, or the usual 0o666 & ~umask for a new file (mkstemp would otherwise leave 0o600).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicFile:
    """A temp file that becomes `path` on `commit()` or disappears on `abort()`.

    The low-level form behind `atomic_open`, for writers whose open/close are separate calls.
    """

    def __init__(self, path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                 newline: str | None = None):
        if "w" not in mode:
            raise ValueError(f"atomic files are write-only, got mode {mode!r}")
        self.path = Path(path)
        fd, self.tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                        dir=self.path.parent)
        binary = "b" in mode
        self.file: IO = os.fdopen(fd, mode, encoding=None if binary else encoding,
                                  newline=None if binary else newline)

    def commit(self) -> None:
        """Flush and fsync the temp file, give it the destination's mode, and move it into place."""
        if self.file.closed:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            try:
                mode = os.stat(self.path).st_mode & 0o7777
            except FileNotFoundError:
                mode = 0o666 & ~_umask()
            os.chmod(self.tmp, mode)
            self.file.close()
            os.replace(self.tmp, self.path)
        except BaseException:
            self.abort()
            raise
        _fsync_dir(self.path.parent)

    def abort(self) -> None:
        """Discard the temp file; the destination is not touched. Never raises: closing flushes what is
        buffered, which fails again on a full disk, and the temp file must go all the same."""
        try:
            self.file.close()
        except OSError:
            pass  # the data is being discarded anyway; close() has released the descriptor
        finally:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp)


def _fsync_dir(d: Path) -> None:
    """Make the rename durable (best effort: not every OS/filesystem allows fsync on a directory)."""
    with contextlib.suppress(OSError):
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
    """Open `path` for writing atomically: the file appears, complete, only when the block exits cleanly."""
    af = AtomicFile(path, mode, encoding, newline)
    try:
        yield af.file
    except BaseException:
        af.abort()
        raise
    af.commit()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)
