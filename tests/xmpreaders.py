"""Real XMP readers for the sidecar tests: exiftool (a subprocess) and libexiv2 (the `exiv2` wheel, GPL,
test-only: the library behind digiKam, darktable, gThumb and Shotwell), plus the keyword-reading rules of
darktable, digiKam and Lightroom applied to what libexiv2 reads (see the README's compatibility table)."""
from __future__ import annotations

import atexit
import json
import logging
import shutil
import subprocess

import pytest

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(EXIFTOOL is None, reason="exiftool not installed (libimage-exiftool-perl)")
try:
    import exiv2
    exiv2.XmpParser.initialize()
except ImportError:  # pragma: no cover - the test extra installs it
    exiv2 = None
needs_exiv2 = pytest.mark.skipif(exiv2 is None, reason="python exiv2 not installed (pip install exiv2)")


class _ExifTool:
    """One exiftool process for the whole test session (-stay_open): ~10 ms a read instead of ~0.5 s."""

    def __init__(self):
        self.proc = subprocess.Popen([EXIFTOOL, "-stay_open", "True", "-@", "-"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     encoding="utf-8")
        atexit.register(self.close)

    def run(self, *args: str) -> str:
        self.proc.stdin.write("\n".join(args) + "\n-execute\n")
        self.proc.stdin.flush()
        out = []
        for line in self.proc.stdout:
            if line.rstrip("\n") == "{ready}":
                return "".join(out)
            out.append(line)
        raise RuntimeError("exiftool exited")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("-stay_open\nFalse\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=10)


_exiftool = None


def exiftool_json(path) -> dict:
    """All XMP tags as exiftool reads them (-G1: "XMP-dc:Subject"), minus the file's name."""
    global _exiftool
    _exiftool = _exiftool or _ExifTool()
    out = _exiftool.run("-j", "-G1", "-struct", "-XMP:all", str(path))
    assert out.strip(), f"exiftool read nothing from {path}"
    tags = json.loads(out)[0]
    tags.pop("SourceFile", None)
    return tags


def as_list(v):
    return v if isinstance(v, list) else [v]  # exiftool prints one-item lists as a scalar


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def exiv2_read(path) -> dict[str, list[str]]:
    """{key: [values]} as libexiv2 reads the sidecar ("Xmp.dc.subject": ["a", "b"]). Any warning or error
    libexiv2 logs (e.g. "XMP Toolkit error 201" for control characters) fails the test."""
    log = logging.getLogger("exiv2")
    handler = _Collect()
    log.addHandler(handler)
    try:
        image = exiv2.ImageFactory.open(str(path))
        image.readMetadata()
        out = {}
        for d in image.xmpData():
            v = d.value()
            if d.typeName() in ("XmpBag", "XmpSeq", "XmpAlt"):
                out[d.key()] = [v.toString(i) for i in range(d.count())]
            else:
                out[d.key()] = [d.toString()]
    finally:
        log.removeHandler(handler)
    assert not handler.messages, f"libexiv2 complained about {path}: {handler.messages}"
    return out


KEYWORD_KEYS = {"Xmp.dc.subject", "Xmp.lr.hierarchicalSubject", "Xmp.digiKam.TagsList",
                "Xmp.MicrosoftPhoto.LastKeywordXMP"}


def darktable_keywords(x: dict) -> list[str]:
    """darktable (src/common/exif.cc): lr:hierarchicalSubject if present, else dc:subject; "|" separates levels."""
    return x.get("Xmp.lr.hierarchicalSubject") or x.get("Xmp.dc.subject", [])


def digikam_keywords(x: dict) -> list[str]:
    """digiKam's default read order (dmetadatasettingscontainer.cpp): the first non-empty of TagsList,
    MicrosoftPhoto:LastKeywordXMP, lr:hierarchicalSubject ("|" -> "/"), mediapro:CatalogSets, dc:subject."""
    for key, sep in (("Xmp.digiKam.TagsList", "/"), ("Xmp.MicrosoftPhoto.LastKeywordXMP", "/"),
                     ("Xmp.lr.hierarchicalSubject", "|"), ("Xmp.mediapro.CatalogSets", "|"),
                     ("Xmp.dc.subject", "/")):
        if x.get(key):
            return [v.replace(sep, "/") for v in x[key]]
    return []


def lightroom_keywords(x: dict) -> set[str]:
    """Lightroom Classic: the keywords of lr:hierarchicalSubject (each level) together with dc:subject."""
    out = set(x.get("Xmp.dc.subject", []))
    for h in x.get("Xmp.lr.hierarchicalSubject", []):
        out |= set(h.split("|"))
    return out


OURS_EXIFTOOL = {"XMP-dc:Subject", "XMP-lr:HierarchicalSubject", "XMP-digiKam:TagsList",
                 "XMP-microsoft:LastKeywordXMP"}


def foreign(tags: dict) -> dict:
    """A reader's values minus imgtag's namespace and the four keyword fields imgtag edits."""
    return {k: v for k, v in tags.items()
            if k not in KEYWORD_KEYS | OURS_EXIFTOOL and not k.startswith(("Xmp.imgtag.", "XMP-imgtag:"))}
