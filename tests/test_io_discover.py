"""imgtag.io.discover: walking real directory trees, file lists and shards."""
from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgtag.io.discover import (IMAGE_EXTENSIONS, image_extensions, iter_image_paths, parse_shard,
                                read_file_list, shard)


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
