"""One writer per output file: an advisory lock that a second imgtag run writing the same `-o` is refused by.

The lock is `flock(LOCK_EX | LOCK_NB)` on a small lock file beside the output, `.NAME.lock` (hidden, in the
same directory, so every machine sharing the directory over NFS v4 or a local disk sees it). It is held from
before the model loads until the output is in place, and the kernel drops it when the process ends, however it
ends (even SIGKILL), so a crashed run never blocks the next one. The lock file is removed when the run ends;
a left-over one (after SIGKILL) is harmless and reused. Only imgtag honours the lock: other programs writing
the same file are not stopped.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


class OutputLocked(Exception):
    """Another run holds the output's lock; str() is one line naming the output."""

    def __init__(self, dest: str):
        self.dest = dest
        super().__init__(f"another imgtag run is writing {dest}; wait for it to finish or choose another -o")


def lock_path(dest: str | Path) -> Path:
    p = Path(dest)
    return p.with_name(f".{p.name}.lock")


@contextlib.contextmanager
def output_lock(dest: str | Path) -> Iterator[None]:
    """Hold the lock of output `dest` for the block; raise OutputLocked at once if another run holds it.
    "-" (stdout) needs no lock. OSErrors making the lock file (read-only directory...) propagate."""
    if str(dest) == "-":
        yield
        return
    path = lock_path(dest)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLocked(str(dest)) from None
        except OSError:
            os.close(fd)
            raise
        try:  # the holder before us may have removed the file after we opened it: lock the live one
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: a waiter that opened it retries on the new file
        os.close(fd)
