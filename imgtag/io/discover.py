"""Finding the images to tag: walking inputs, `--files-from` lists, and `--shard K/N` selection."""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from .formats import IMAGE_EXTENSIONS, RAW_EXTENSIONS, image_extensions, is_raw  # noqa: F401 - re-exported


OnError = Callable[[str, str], None]
"""`on_error(path, reason)`: told about an input or directory entry that cannot be walked; the walk goes on."""


class DiscoverError(OSError):
    """A path that cannot be walked (raised only when no `on_error` is given); str() is "path: reason"."""

    def __init__(self, path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def iter_image_paths(inputs: Iterable[str | Path], recursive: bool = True, follow_symlinks: bool = False,
                     on_error: OnError | None = None,
                     shard_spec: tuple[int, int] | None = None) -> Iterator[Path]:
    """Yield the image files named by `inputs`, in a deterministic order.

    * A file given explicitly is yielded as-is, whatever its name (decoding reports non-images).
    * A directory is walked in sorted name order (code-point order, the same on every OS), yielding
      files whose extension is in `image_extensions()` (case-insensitive). Hidden entries (name starts
      with '.') are skipped; XMP sidecars never match. `recursive=False` stays in the top directory.
    * Symlinks to files are yielded; symlinked directories are entered only with `follow_symlinks=True`
      (directory cycles are then detected and skipped). Broken symlinks are skipped. FIFOs, sockets and
      devices inside a directory are skipped (reading one could block forever).
    * A path reached twice (e.g. a directory and a file inside it) is yielded once.
    * `shard_spec=(k, n)` yields only the k-th of n shards, keyed by `shard_key` (see there): the same file
      lands in the same shard however the inputs are spelled (relative, absolute, another mount point).

    Problems never stop the walk when `on_error(path, reason)` is given; each is passed to it once and the
    path is skipped: a missing input ("no such file or directory"), an input that is neither a regular file
    nor a directory ("not a regular file (FIFO)": reading it could block forever), a directory that cannot
    be listed ("cannot read directory: permission denied"), and an image-named entry whose target cannot be
    checked (a symlink loop: "cannot read: too many levels of symbolic links"; a link into an unreadable
    directory: "cannot read: permission denied"). Without `on_error`, a missing input raises
    FileNotFoundError ("no such file or directory: PATH") before anything is yielded, and any other
    problem raises `DiscoverError`.
    """
    inputs = [Path(p) for p in inputs]
    if on_error is None:
        for p in inputs:
            if not os.path.lexists(p):
                raise FileNotFoundError(f"no such file or directory: {p}")

        def on_error(path: str, reason: str) -> None:
            raise DiscoverError(path, reason)
    kinds = [_kind(p, on_error) for p in inputs]
    files = [os.path.dirname(os.path.abspath(p)) for p, k in zip(inputs, kinds) if k == "file"]
    base = os.path.commonpath(files) if files else ""  # directly named files are keyed relative to this
    exts = None
    seen: set[str] = set()
    k, n = shard_spec or (1, 1)
    if not 1 <= k <= n:
        raise ValueError(f"invalid shard {k}/{n}: need 1 <= K <= N")
    for p, kind in zip(inputs, kinds):
        if kind == "dir":
            exts = exts or image_extensions()
            found = _walk(p, exts, recursive, follow_symlinks, set(), on_error)
            root = str(p)
        elif kind == "file":
            found = iter((p,))
            root = base
        else:
            continue
        for f in found:
            key = os.path.normpath(f)
            if key in seen:
                continue
            seen.add(key)
            if n == 1 or _shard_of(shard_key(f, root), n) == k - 1:
                yield f


def shard_key(path: str | Path, root: str | Path) -> str:
    """The key that decides a file's shard: its path relative to `root`, in POSIX form.

    `root` is the directory given as input for a file found by walking it, and, for files named directly
    (arguments or `--files-from`), the deepest directory holding all of them (so a single file is keyed by
    its name). The key does not depend on how the root is spelled or where the collection is mounted:
    `photos/2020/a.jpg`, `./photos//2020/a.jpg` and `/mnt/nas/photos/2020/a.jpg` all give "2020/a.jpg"
    when `photos` is the given directory.
    """
    return Path(os.path.relpath(os.path.abspath(path), os.path.abspath(root))).as_posix()


def _reason(e: OSError) -> str:
    """A one-line, lower-case reason for an OSError, without the path (the caller names it)."""
    msg = e.strerror or type(e).__name__
    return msg[:1].lower() + msg[1:]


def _kind(p: Path, on_error: OnError) -> str | None:
    """'dir', 'file' or None (reported through on_error) for an input path."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        on_error(str(p), "no such file or directory" if not os.path.islink(p) else "broken symbolic link")
        return None
    except OSError as e:
        on_error(str(p), f"cannot read: {_reason(e)}")
        return None
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISREG(st.st_mode):
        return "file"
    on_error(str(p), f"not a regular file ({_FILE_TYPES.get(stat.S_IFMT(st.st_mode), 'special file')})")
    return None


_FILE_TYPES = {stat.S_IFIFO: "FIFO", stat.S_IFSOCK: "socket", stat.S_IFCHR: "character device",
               stat.S_IFBLK: "block device"}


def _walk(d: Path, exts: frozenset[str], recursive: bool, follow: bool,
          visited: set[tuple[int, int]], on_error: OnError) -> Iterator[Path]:
    try:
        st = d.stat()
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        on_error(str(d), f"cannot read directory: {_reason(e)}")
        return
    if (st.st_dev, st.st_ino) in visited:  # a symlink loop back to an ancestor
        return
    visited.add((st.st_dev, st.st_ino))
    for e in entries:
        if e.name.startswith("."):
            continue
        is_image = os.path.splitext(e.name)[1].lower() in exts
        try:
            if e.is_dir(follow_symlinks=follow):
                if recursive:
                    yield from _walk(Path(e.path), exts, recursive, follow, visited, on_error)
            elif is_image and e.is_file():
                yield Path(e.path)
        except OSError as err:  # e.g. ELOOP (a link to itself) or EACCES (a link into a locked directory)
            if is_image:
                on_error(e.path, f"cannot read: {_reason(err)}")
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


def shard(paths: Iterable[str | Path], k: int, n: int,
          key: Callable[[str | Path], str] | None = None) -> Iterator[str | Path]:
    """Yield the paths of shard `k` of `n` (1-based), lazily and in input order.

    A path's shard is sha1 of `key(path)` (default: its POSIX form, so "./a//b.jpg" == "a/b.jpg") modulo n:
    stable across runs, machines and Python processes (unlike hash()), and the n shards partition any
    input exactly. `imgtag tag --shard` shards while walking, keyed by `shard_key` (see iter_image_paths).
    """
    if not 1 <= k <= n:
        raise ValueError(f"invalid shard {k}/{n}: need 1 <= K <= N")
    for p in paths:
        if n == 1 or _shard_of(key(p) if key else p, n) == k - 1:
            yield p


def _shard_of(p: str | Path, n: int) -> int:
    key = Path(p).as_posix().encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.sha1(key).digest()[:8], "big") % n
