"""imgtag.io.discover: walking real directory trees, file lists and shards."""
from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgtag.io.discover import (IMAGE_EXTENSIONS, DiscoverError, image_extensions, iter_image_paths, parse_shard,
                                read_file_list, shard, shard_key)


def make_tree(root: Path, names: list[str]) -> None:
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


TREE = [
    "b.png", "a.JPG", "c.Jpeg", "d.jpe", "e.webp", "f.BMP", "g.tif", "h.TIFF", "i.gif",
    "notes.txt", "a.JPG.xmp", "b.xmp", "noext",
    ".hidden.jpg", ".cache/k.jpg", "sub/.secret/l.jpg",
    "sub/z.jpg", "sub/deeper/y.png", "Sub2/x.jpg", "fête 日本.jpg",
]


def rel(paths, root) -> list[str]:
    return [Path(p).relative_to(root).as_posix() for p in paths]


def test_walk_filters_and_sorts(tmp_path):
    make_tree(tmp_path, TREE)
    got = rel(iter_image_paths([tmp_path]), tmp_path)
    assert got == ["Sub2/x.jpg", "a.JPG", "b.png", "c.Jpeg", "d.jpe", "e.webp", "f.BMP", "fête 日本.jpg",
                   "g.tif", "h.TIFF", "i.gif", "sub/deeper/y.png", "sub/z.jpg"]
    assert rel(iter_image_paths([tmp_path]), tmp_path) == got  # deterministic


def test_order_does_not_depend_on_creation_order(tmp_path):
    make_tree(tmp_path / "one", TREE)
    make_tree(tmp_path / "two", list(reversed(TREE)))
    assert (rel(iter_image_paths([tmp_path / "one"]), tmp_path / "one")
            == rel(iter_image_paths([tmp_path / "two"]), tmp_path / "two"))


def test_not_recursive(tmp_path):
    make_tree(tmp_path, TREE)
    got = rel(iter_image_paths([tmp_path], recursive=False), tmp_path)
    assert "sub/z.jpg" not in got and "a.JPG" in got and len(got) == 10


def test_explicit_files_are_yielded_as_given(tmp_path):
    make_tree(tmp_path, TREE)
    given = [tmp_path / "notes.txt", tmp_path / ".hidden.jpg", tmp_path / "noext", str(tmp_path / "b.png")]
    got = list(iter_image_paths(given))
    assert got == [Path(p) for p in given]


def test_inputs_keep_their_order_and_duplicates_are_dropped(tmp_path):
    make_tree(tmp_path, ["d1/a.jpg", "d1/b.jpg", "d2/c.jpg"])
    got = rel(iter_image_paths([tmp_path / "d2", tmp_path / "d1/b.jpg", tmp_path / "d1",
                                f"{tmp_path}/./d2/c.jpg"]), tmp_path)
    assert got == ["d2/c.jpg", "d1/b.jpg", "d1/a.jpg"]


def test_missing_input_raises_before_yielding(tmp_path):
    make_tree(tmp_path, ["a.jpg"])
    it = iter_image_paths([tmp_path / "a.jpg", tmp_path / "missing dir"])
    with pytest.raises(FileNotFoundError) as ei:
        next(it)
    assert str(ei.value) == f"no such file or directory: {tmp_path / 'missing dir'}"


def test_symlinks(tmp_path):
    make_tree(tmp_path, ["real/a.jpg", "top/b.jpg"])
    os.symlink(tmp_path / "real", tmp_path / "top" / "linkdir")
    os.symlink(tmp_path / "real" / "a.jpg", tmp_path / "top" / "linkfile.jpg")
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "top" / "broken.jpg")
    os.symlink(tmp_path / "top", tmp_path / "top" / "loop")  # a cycle
    top = tmp_path / "top"
    assert rel(iter_image_paths([top]), top) == ["b.jpg", "linkfile.jpg"]
    assert rel(iter_image_paths([top], follow_symlinks=True), top) == ["b.jpg", "linkdir/a.jpg",
                                                                        "linkfile.jpg"]


def walk(inputs, **kw):
    """Walk with an on_error that collects; returns (paths as str, [(path, reason), ...])."""
    errors = []
    got = [str(p) for p in iter_image_paths(inputs, on_error=lambda p, r: errors.append((p, r)), **kw)]
    return got, errors


def test_symlink_loop_in_tree_is_one_error_not_the_end(tmp_path):
    """F1: a link to itself made DirEntry.is_file() raise ELOOP, which ended the whole walk."""
    make_tree(tmp_path, ["a.jpg", "z.jpg"])
    os.symlink("self.jpg", tmp_path / "self.jpg")
    os.symlink("loop.txt", tmp_path / "loop.txt")  # not an image name: skipped without a word
    got, errors = walk([tmp_path])
    assert got == [str(tmp_path / "a.jpg"), str(tmp_path / "z.jpg")]
    assert errors == [(str(tmp_path / "self.jpg"), "cannot read: too many levels of symbolic links")]
    with pytest.raises(DiscoverError, match="self.jpg: cannot read: too many levels"):
        list(iter_image_paths([tmp_path]))  # without on_error: one clear exception, not a bare OSError
    got, errors = walk([tmp_path / "self.jpg", tmp_path / "a.jpg"])  # named directly
    assert got == [str(tmp_path / "a.jpg")] and len(errors) == 1


def test_missing_inputs_are_reported_one_by_one(tmp_path):
    """F4: with on_error, a missing path (e.g. from --files-from) is one error; the rest is walked."""
    make_tree(tmp_path, ["a.jpg", "b.jpg"])
    os.symlink(tmp_path / "nowhere.jpg", tmp_path / "broken.jpg")
    got, errors = walk([tmp_path / "a.jpg", tmp_path / "gone.jpg", tmp_path / "broken.jpg", tmp_path / "b.jpg"])
    assert got == [str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")]
    assert errors == [(str(tmp_path / "gone.jpg"), "no such file or directory"),
                      (str(tmp_path / "broken.jpg"), "broken symbolic link")]


def test_fifo_and_devices_are_refused_not_opened(tmp_path):
    """F6: a FIFO given directly was opened and blocked forever; inside a tree it is skipped."""
    make_tree(tmp_path, ["a.jpg"])
    os.mkfifo(tmp_path / "pipe.jpg")
    got, errors = walk([tmp_path / "pipe.jpg", "/dev/null", tmp_path / "a.jpg", tmp_path])
    assert got == [str(tmp_path / "a.jpg")]
    assert errors == [(str(tmp_path / "pipe.jpg"), "not a regular file (FIFO)"),
                      ("/dev/null", "not a regular file (character device)")]


@pytest.fixture()
def shared_tmp():
    """A world-readable temp dir (pytest's own are 0700 under root), for walks run as another user."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="imgtag-perm-"))
    d.chmod(0o755)
    yield d
    for sub in d.rglob("*"):
        if sub.is_dir() and not sub.is_symlink():
            sub.chmod(0o755)
    shutil.rmtree(d)


def unprivileged(fn):
    """fn() as an ordinary user: root reads mode-000 directories, so under root it runs in a forked child
    that has dropped to uid/gid 65534 (nobody); its result comes back pickled through a pipe."""
    import pickle

    if os.geteuid() != 0:
        return fn()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            data = pickle.dumps(("ok", fn()))
        except BaseException as e:  # noqa: BLE001
            data, code = pickle.dumps(("err", repr(e))), 1
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data)
    assert kind == "ok", value
    return value


def test_unreadable_directory_is_named(shared_tmp):
    """F5: an unreadable directory was skipped without a word ("0 of 0", exit 0)."""
    make_tree(shared_tmp, ["a.jpg", "locked/b.jpg", "open/c.jpg"])
    for p in shared_tmp.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    (shared_tmp / "locked").chmod(0o000)
    os.symlink(shared_tmp / "locked" / "b.jpg", shared_tmp / "open" / "link.jpg")  # F1, non-root flavour
    image_extensions()  # load Pillow's plugins before dropping privileges
    got, errors = unprivileged(lambda: walk([shared_tmp]))
    assert rel(got, shared_tmp) == ["a.jpg", "open/c.jpg"]
    assert errors == [(str(shared_tmp / "locked"), "cannot read directory: permission denied"),
                      (str(shared_tmp / "open" / "link.jpg"), "cannot read: permission denied")]
    got, errors = unprivileged(lambda: walk([shared_tmp / "locked"]))
    assert got == [] and errors == [(str(shared_tmp / "locked"), "cannot read directory: permission denied")]


def test_extensions():
    exts = image_extensions()
    assert IMAGE_EXTENSIONS <= exts
    assert all(e == e.lower() and e.startswith(".") for e in exts)
    heif = any(importlib.util.find_spec(m) for m in ("pi_heif", "pillow_heif"))
    assert (".heic" in exts) == heif
    assert (".nef" in exts) == (importlib.util.find_spec("rawpy") is not None)


# ----------------------------------------------------------------------------- --files-from


def test_read_file_list_lines():
    text = "a.jpg\r\n\nb with space .jpg\n  c.jpg\nlast.jpg"
    assert read_file_list(io.StringIO(text)) == ["a.jpg", "b with space .jpg", "  c.jpg", "last.jpg"]


def test_read_file_list_nul_binary():
    data = "a.jpg\0dir/new\nline.jpg\0fête.jpg\0\0".encode()
    assert read_file_list(io.BytesIO(data), nul_separated=True) == ["a.jpg", "dir/new\nline.jpg", "fête.jpg"]


def test_read_file_list_undecodable_bytes_survive():
    (name,) = read_file_list(io.BytesIO(b"caf\xe9.jpg\n"))
    assert os.fsencode(name) == b"caf\xe9.jpg"


# ----------------------------------------------------------------------------- shards


@pytest.mark.parametrize("spec,expected", [("2/4", (2, 4)), (" 1/1 ", (1, 1)), ("4/4", (4, 4))])
def test_parse_shard(spec, expected):
    assert parse_shard(spec) == expected


@pytest.mark.parametrize("spec", ["0/4", "5/4", "a/b", "2", "2/4/1", "", "-1/4", "1/0"])
def test_parse_shard_rejects(spec):
    with pytest.raises(ValueError, match="invalid shard .*e.g. 2/4"):
        parse_shard(spec)


def test_shards_partition_every_path_once():
    paths = [f"photos/{i // 100}/IMG_{i:05d}.jpg" for i in range(2000)]
    n = 4
    parts = [list(shard(paths, k, n)) for k in range(1, n + 1)]
    assert sorted(p for part in parts for p in part) == sorted(paths)
    assert sum(len(part) for part in parts) == len(paths)
    for part in parts:
        assert part == [p for p in paths if p in set(part)]  # input order kept
        assert 400 < len(part) < 600  # roughly balanced
    assert list(shard(paths, 1, 1)) == paths


def test_shard_accepts_paths_and_normalises():
    assert list(shard([Path("a/b.jpg")], 1, 1)) == [Path("a/b.jpg")]
    for n in (2, 3, 7):
        k = next(k for k in range(1, n + 1) if list(shard(["a/b.jpg"], k, n)))
        assert list(shard(["./a//b.jpg", Path("a/b.jpg")], k, n)) == ["./a//b.jpg", Path("a/b.jpg")]
    with pytest.raises(ValueError):
        list(shard(["a"], 3, 2))


def test_shard_is_stable_across_processes():
    code = ("from imgtag.io.discover import shard; "
            "print([p for p in (f'img{i}.jpg' for i in range(50)) if list(shard([p], 2, 3))])")
    outs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                check=True, cwd=Path(__file__).parents[1]).stdout)
    here = str([p for p in (f"img{i}.jpg" for i in range(50)) if list(shard([p], 2, 3))]) + "\n"
    assert outs == {here}


def test_shard_key_does_not_depend_on_spelling(tmp_path, monkeypatch):
    """F15: 823 of 980 files changed shard between relative and absolute spellings of the same folder."""
    names = [f"d{i % 7}/IMG_{i:04d}.jpg" for i in range(120)]
    make_tree(tmp_path / "nas" / "photos", names)
    os.symlink(tmp_path / "nas", tmp_path / "mnt")  # the same collection mounted elsewhere
    monkeypatch.chdir(tmp_path / "nas")
    spellings = ["photos", "./photos/", str(tmp_path / "nas" / "photos"), str(tmp_path / "mnt" / "photos")]
    for n in (2, 3):
        for k in range(1, n + 1):
            parts = {tuple(rel(iter_image_paths([s], shard_spec=(k, n)), s)) for s in spellings}
            assert len(parts) == 1, (k, n)  # the same files, whatever the spelling
        union = [p for k in range(1, n + 1) for p in rel(iter_image_paths(["photos"], shard_spec=(k, n)), "photos")]
        assert sorted(union) == sorted(names)  # still an exact partition
    assert shard_key(tmp_path / "mnt/photos/d1/IMG_0001.jpg", tmp_path / "mnt/photos") == "d1/IMG_0001.jpg"
    # files named directly (arguments, --files-from) are keyed relative to their common folder
    listed = {tuple(map(Path.as_posix, (Path(p).relative_to(base) for p in iter_image_paths(
        [base / n for n in names], shard_spec=(1, 2))))) for base in (Path("photos"), tmp_path / "mnt" / "photos")}
    assert len(listed) == 1
    walked = rel(iter_image_paths(["photos"], shard_spec=(1, 2)), "photos")
    assert list(next(iter(listed))) == sorted(walked, key=names.index)
