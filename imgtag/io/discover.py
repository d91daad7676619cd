"""Finding the images to tag: walking inputs, `--files-from` lists, and `--shard K/N` selection."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Iterable, Iterator

from .formats import IMAGE_EXTENSIONS, RAW_EXTENSIONS, image_extensions, is_raw  # noqa: F401 - re-exported


def iter_image_paths(inputs: Iterable[str | Path], recursive: bool = True,
                     follow_symlinks: bool = False) -> Iterator[Path]:
    """Yield the image files named by `inputs`, in a deterministic order.

    * A file given explicitly is yielded as-is, whatever its name (decoding reports non-images).
    * A directory is walked in sorted name order (code-point order, the same on every OS), yielding
      files whose extension is in `image_extensions()` (case-insensitive). Hidden entries (name starts
      with '.') are skipped; XMP sidecars never match. `recursive=False` stays in the top directory.
    * Symlinks to files are yielded; symlinked directories are entered only with `follow_symlinks=True`
      (directory cycles are then detected and skipped). Broken symlinks are skipped.
    * A path reached twice (e.g. a directory and a file inside it) is yielded once.
    * Every input is checked before anything is yielded: a missing one raises FileNotFoundError
      ("no such file or directory: PATH").
    """
    inputs = [Path(p) for p in inputs]
    for p in inputs:
        if not os.path.lexists(p):
            raise FileNotFoundError(f"no such file or directory: {p}")
    exts = None
    seen: set[str] = set()
    for p in inputs:
        if p.is_dir():
            exts = exts or image_extensions()
            found = _walk(p, exts, recursive, follow_symlinks, set())
        else:
            found = iter((p,))
        for f in found:
            key = os.path.normpath(f)
            if key not in seen:
                seen.add(key)
                yield f


def _walk(d: Path, exts: frozenset[str], recursive: bool, follow: bool,
          visited: set[tuple[int, int]]) -> Iterator[Path]:
    st = d.stat()
    if (st.st_dev, st.st_ino) in visited:  # a symlink loop back to an ancestor
        return
    visited.add((st.st_dev, st.st_ino))
    try:
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
    except PermissionError:
        return  # unreadable directory: nothing to tag there
    for e in entries:
        if e.name.startswith("."):
            continue
        if e.is_dir(follow_symlinks=follow):
            if recursive:
                yield from _walk(Path(e.path), exts, recursive, follow, visited)
        elif e.is_file() and os.path.splitext(e.name)[1].lower() in exts:
            yield Path(e.path)
    if follow:
        visited.discard((st.st_dev, st.st_ino))  # only ancestors count: a dir linked twice is walked twice


def read_file_list(stream: IO, nul_separated: bool = False) -> list[str]:
    """Read paths for `--files-from` from a text or binary stream.

    One path per line (a trailing CR is stripped, for lists made on Windows) or, with `nul_separated`,
    NUL-separated as `find -print0` writes. Empty entries are skipped; other whitespace is kept, since
    it may be part of a file name. Bytes are decoded with the file-system encoding (undecodable bytes
    survive as surrogates, as in os.listdir).
    """
    data = stream.read()
    if isinstance(data, bytes):
        data = os.fsdecode(data)
    if nul_separated:
        parts = data.split("\0")
    else:
        parts = [line.rstrip("\r") for line in data.split("\n")]
    return [p for p in parts if p]


def parse_shard(spec: str) -> tuple[int, int]:
    """Parse "K/N" (1-based, 1 <= K <= N) as given to `--shard`; raise ValueError with a clear message."""
    try:
        k, n = (int(x) for x in str(spec).strip().split("/"))
    except ValueError:
        raise ValueError(f"invalid shard {spec!r}: expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise ValueError(f"invalid shard {spec!r}: need 1 <= K <= N, e.g. 2/4")
    return k, n


def shard(paths: Iterable[str | Path], k: int, n: int) -> Iterator[str | Path]:
    """Yield the paths of shard `k` of `n` (1-based), lazily and in input order.

    A path's shard is sha1 of its POSIX form (so "./a//b.jpg" == "a/b.jpg") modulo n: stable across runs,
    machines and Python processes (unlike hash()), and the n shards partition any input exactly.
    """
    if not 1 <= k <= n:
        raise ValueError(f"invalid shard {k}/{n}: need 1 <= K <= N")
    for p in paths:
        if n == 1 or _shard_of(p, n) == k - 1:
            yield p


def _shard_of(p: str | Path, n: int) -> int:
    key = Path(p).as_posix().encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha1(key).digest()[:8], "big") % n
