"""RAW (DNG made here with tifffile, see dngmaker.py) and HEIC decoding, discovery, and tagging end to end."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from dngmaker import make_dng
from PIL import Image

from imgtag.io.decode import _TRANSPOSE, DecodeError, load_pil, load_pil_from_bytes, load_resized
from imgtag.io.discover import RAW_EXTENSIONS, image_extensions, is_raw, iter_image_paths

FORMATS = Path(__file__).parent / "formats"  # files the tests cannot write (see tests/data/README.md)
pytest.importorskip("rawpy")
pytest.importorskip("tifffile")


def source(photo, orientation=1) -> np.ndarray:
    with Image.open(photo) as im:
        im = im.convert("RGB")
    return np.asarray(im.transpose(_TRANSPOSE[orientation]) if orientation != 1 else im)


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The same JPEG (same compressed pixels) with an EXIF block holding `orientation` (APP1 after SOI)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = exif.tobytes()
    return jpeg[:2] + b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body + jpeg[2:]


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_dng_preview_is_the_source_jpeg_with_the_raw_orientation(tmp_path, photo, orientation):
    dng = make_dng(tmp_path / "x.dng", photo, orientation=orientation)
    im = load_pil(dng)
    assert im.mode == "RGB" and np.array_equal(np.asarray(im), source(photo, orientation))
    small = load_resized(dng, (24, 32))
    assert small.shape == (24, 32, 3)
    jpg = tmp_path / "x.jpg"
    jpg.write_bytes(with_orientation(photo.read_bytes(), orientation))
    assert np.array_equal(small, load_resized(jpg, (24, 32)))  # resized (JPEG draft) as that JPEG is
    assert np.array_equal(np.asarray(load_pil_from_bytes(dng.read_bytes(), "x.DNG")), np.asarray(im))


def test_dng_without_preview_is_demosaiced_at_half_size_and_says_so(tmp_path, photo, capfd):
    dng = make_dng(tmp_path / "noprev.dng", photo, orientation=6, preview=False)
    im = load_pil(dng)
    err = capfd.readouterr().err
    assert im.size == (48, 64)  # half of 128x96, turned by the orientation
    lines = [line for line in err.splitlines() if "noprev.dng" in line]
    assert len(lines) == 1 and "half-size demosaic" in lines[0] and "none embedded" in lines[0]
    got = np.asarray(im, dtype=float)
    ref = np.asarray(Image.fromarray(source(photo, 6)).resize((48, 64)), dtype=float)
    assert np.corrcoef(got.mean(axis=2).ravel(), ref.mean(axis=2).ravel())[0, 1] > 0.9  # the same picture


def test_bad_raw_files_are_one_line_errors(tmp_path, photo):
    dng = make_dng(tmp_path / "x.dng", photo)
    cases = {"trunc.nef": dng.read_bytes()[:300], "text.cr2": b"not a raw file at all" * 10,
             "jpeg.arw": photo.read_bytes()}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DecodeError) as ei:
            load_pil(tmp_path / name)
        assert name in str(ei.value) and "\n" not in str(ei.value)
    with pytest.raises(DecodeError, match="decompression bomb"):
        load_pil(dng, max_pixels=1000)


def test_raw_with_a_non_utf8_name(tmp_path, photo):
    name = os.fsdecode(b"caf\xe9.dng")  # a surrogate-escaped name, as os.listdir gives it
    dng = make_dng(tmp_path / name, photo)
    assert np.array_equal(np.asarray(load_pil(dng)), source(photo))


def test_raw_and_heic_are_discovered(tmp_path):
    assert {".dng", ".nef", ".cr3", ".arw", ".raf", ".x3f"} <= RAW_EXTENSIONS <= image_extensions()
    assert {".heic", ".heif"} <= image_extensions()
    assert is_raw("a/B.NEF") and not is_raw("a/b.jpg")
    for name in ("a.NEF", "b.dng", "c.HEIC", "d.heif", "e.cr3", "f.xmp", "a.NEF.xmp"):
        (tmp_path / name).touch()
    assert [p.name for p in iter_image_paths([tmp_path])] == ["a.NEF", "b.dng", "c.HEIC", "d.heif", "e.cr3"]


def test_heic_decodes_with_its_rotation(photo):
    heic = FORMATS / "voc_000009_horse_person_orient6.heic"
    im = load_pil(heic)
    assert im.mode == "RGB" and im.size == (96, 128)
    diff = np.abs(np.asarray(im, dtype=int) - source(photo, 6).astype(int))
    assert diff.mean() < 3  # lossy HEVC of the same photo, turned once (not twice)
    assert load_resized(heic, 32).shape == (32, 32, 3)


def test_dng_and_heic_tag_like_their_source_jpeg(tmp_path, photo, tiny_model):
    """README command 1's install: a DNG (its preview) and a HEIC tag like the JPEG they were made from."""
    from typer.testing import CliRunner

    from imgtag.cli import app
    d = tmp_path / "photos"
    d.mkdir()
    (d / "a.jpg").write_bytes(photo.read_bytes())
    make_dng(d / "a_raw.DNG", photo)
    (d / "b6.jpg").write_bytes(with_orientation(photo.read_bytes(), 6))
    (d / "b6.heic").write_bytes((FORMATS / "voc_000009_horse_person_orient6.heic").read_bytes())
    r = CliRunner().invoke(app, ["tag", str(d), "-m", str(tiny_model), "--runtime", "torch", "-t", "0"])
    assert r.exit_code == 0, r.stderr
    recs = {json.loads(line)["path"].rsplit("/", 1)[1]: json.loads(line) for line in r.stdout.splitlines()}
    assert set(recs) == {"a.jpg", "a_raw.DNG", "b6.jpg", "b6.heic"}
    assert recs["a_raw.DNG"]["labels"] == recs["a.jpg"]["labels"]  # the same pixels, the same scores
    jpg, heic = ({lab["label"]: lab["score"] for lab in recs[n]["labels"]} for n in ("b6.jpg", "b6.heic"))
    assert jpg.keys() == heic.keys() and max(abs(jpg[k] - heic[k]) for k in jpg) < 0.02, (jpg, heic)
    rotated = {lab["label"]: lab["score"] for lab in recs["a.jpg"]["labels"]}
    assert max(abs(jpg[k] - rotated[k]) for k in jpg) > max(abs(jpg[k] - heic[k]) for k in jpg)
