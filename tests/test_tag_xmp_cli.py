"""`imgtag tag -f xmp` and `imgtag untag` end to end: naming, bad sidecars in skip mode, RAW+JPEG pairs, undo."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from dngmaker import make_dng
from typer.testing import CliRunner
from xmpreaders import exiftool_json, exiv2_read, needs_exiftool, needs_exiv2

from imgtag.cli import app
from imgtag.io.xmp import read_sidecar, read_sidecar_labels

runner = CliRunner()

DARKTABLE = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:darktable="http://darktable.sf.net/"
   xmp:Rating="4"
   darktable:xmp_version="5">
   <dc:subject>
    <rdf:Bag>
     <rdf:li>holiday</rdf:li>
     <rdf:li>dog</rdf:li>
    </rdf:Bag>
   </dc:subject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def tag(*args):
    return runner.invoke(app, ["tag", *map(str, args)])


@pytest.fixture()
def folder(tmp_path, photos):
    d = tmp_path / "photos"
    d.mkdir()
    for p in photos[:3]:
        (d / p.name).write_bytes(p.read_bytes())
    return d


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("imgtag: ") and ".xmp" in line]


def test_b3_truncated_sidecar_in_skip_mode_is_one_error_and_the_run_goes_on(tiny_model, folder):
    """B3: one truncated sidecar made `--on-existing skip` exit 2 ("usage error") and tag nothing."""
    images = sorted(folder.glob("*.jpg"))
    bad = images[0].parent / (images[0].name + ".xmp")
    bad.write_text(DARKTABLE[: len(DARKTABLE) // 2], encoding="utf-8")
    r = tag(folder, "-m", tiny_model, "--runtime", "torch", "-f", "xmp", "--on-existing", "skip", "-t", "0")
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and str(bad) in lines[0], r.stderr
    assert bad.read_text(encoding="utf-8") == DARKTABLE[: len(DARKTABLE) // 2]  # left as it was
    for img in images[1:]:
        assert sorted(read_sidecar_labels(img)) == ["cat", "dog", "person"]


def test_b4_unreadable_sidecar_in_skip_mode_is_one_error(tiny_model, folder):
    """B4: an unreadable sidecar gave an uncaught PermissionError traceback in skip mode. As root a mode-000
    file is readable, so a directory named like the sidecar stands in (the same OSError path)."""
    images = sorted(folder.glob("*.jpg"))
    bad = images[0].parent / (images[0].name + ".xmp")
    if os.geteuid() == 0:
        bad.mkdir()
    else:
        bad.write_text(DARKTABLE)
        bad.chmod(0)
    try:
        r = tag(folder, "-m", tiny_model, "--runtime", "torch", "-f", "xmp", "--on-existing", "skip")
    finally:
        if not bad.is_dir():
            bad.chmod(0o644)
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    lines = error_lines(r.stderr)
    assert len(lines) == 1 and str(bad) in lines[0], r.stderr
    assert all((img.parent / (img.name + ".xmp")).is_file() for img in images[1:])


def test_b1_images_sharing_a_stem_get_their_own_sidecars(tiny_model, tmp_path, photos):
    """B1: photo.jpg and photo.png shared photo.xmp; then `skip` reported "0 tagged, 2 skipped"."""
    d = tmp_path / "p"
    d.mkdir()
    (d / "photo.jpg").write_bytes(photos[1].read_bytes())
    (d / "photo.png").write_bytes(photos[3].read_bytes())
    (d / "photo.xmp").write_text(DARKTABLE, encoding="utf-8")
    r = tag(d, "-m", tiny_model, "--runtime", "torch", "-f", "xmp", "-t", "0")
    assert r.exit_code == 0, r.output
    assert (d / "photo.xmp").read_text(encoding="utf-8") == DARKTABLE
    assert read_sidecar_labels(d / "photo.jpg.xmp") and read_sidecar_labels(d / "photo.png.xmp")
    r = tag(d, "-m", tiny_model, "--runtime", "torch", "-f", "xmp", "--on-existing", "skip")
    assert r.exit_code == 0 and "0 tagged, 2 skipped" in r.stderr


def test_raw_jpeg_pair_and_lightroom_sidecar(tiny_model, tmp_path, photo):
    """A RAW+JPEG pair with Lightroom's photo.xmp: the RAW merges into it, the JPEG gets photo.JPG.xmp."""
    d = tmp_path / "shoot"
    d.mkdir()
    make_dng(d / "DSC_1.DNG", photo)
    (d / "DSC_1.JPG").write_bytes(photo.read_bytes())
    (d / "DSC_1.xmp").write_text(DARKTABLE, encoding="utf-8")
    r = tag(d, "-m", tiny_model, "--runtime", "torch", "-f", "xmp", "-t", "0")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in d.iterdir()) == ["DSC_1.DNG", "DSC_1.JPG", "DSC_1.JPG.xmp", "DSC_1.xmp"]
    raw_side = read_sidecar(d / "DSC_1.xmp")
    assert raw_side["subject"][:2] == ["holiday", "dog"] and raw_side["model"] == "tiny"
    assert "dog" not in raw_side["added"]["subject"]  # the user's dog stays the user's (B6)
    assert read_sidecar(d / "DSC_1.JPG.xmp")["scores"] == raw_side["scores"]  # the preview is the JPEG


def test_zero_labels_are_not_retagged_in_skip_mode(tiny_model, folder):
    """(#16 minor) `--on-existing skip` re-tagged images that got zero labels, every time."""
    r = tag(folder, "-m", tiny_model, "--runtime", "torch", "-f", "xmp", "-t", "1")  # nothing reaches 1.0
    assert r.exit_code == 0, r.output
    r = tag(folder, "-m", tiny_model, "--runtime", "torch", "-f", "xmp", "--on-existing", "skip")
    assert "0 tagged, 3 skipped" in r.stderr


@needs_exiftool
@needs_exiv2
def test_untag_round_trip(tiny_model, folder):
    """tag, then untag: every sidecar reads as before in exiftool and libexiv2; created ones are gone."""
    images = sorted(folder.glob("*.jpg"))
    side = images[0].parent / (images[0].name + ".xmp")
    side.write_text(DARKTABLE, encoding="utf-8")
    before = (exiftool_json(side), exiv2_read(side))
    assert tag(folder, "-m", tiny_model, "--runtime", "torch", "-f", "xmp", "-t", "0").exit_code == 0
    assert len(list(folder.glob("*.xmp"))) == 3
    r = runner.invoke(app, ["untag", str(folder)])
    assert r.exit_code == 0, r.output
    assert "1 sidecars cleaned, 2 deleted" in r.stderr
    assert sorted(p.name for p in folder.glob("*.xmp")) == [side.name]
    assert (exiftool_json(side), exiv2_read(side)) == before
    r = runner.invoke(app, ["untag", str(folder)])
    assert r.exit_code == 0 and "0 sidecars cleaned, 0 deleted, 1 without imgtag data" in r.stderr


def test_untag_reports_a_bad_sidecar_and_goes_on(tmp_path):
    good = tmp_path / "a.jpg"
    good.touch()
    from imgtag.io.xmp import write_sidecar
    write_sidecar(good, [("cat", 0.9)])
    (tmp_path / "b.jpg").touch()
    (tmp_path / "b.jpg.xmp").write_text("<x:xmpmeta", encoding="utf-8")
    r = subprocess.run([sys.executable, "-m", "imgtag", "untag", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(error_lines(r.stderr)) == 1 and "b.jpg.xmp" in r.stderr
    assert not (tmp_path / "a.jpg.xmp").exists()
