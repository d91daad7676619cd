"""Thumbnails for the HTML pages (eval report, review sheet): small JPEGs in a folder, cached.

A thumbnail's file name is a hash of the image file's CONTENT and the thumbnail size
(``<sha1 of bytes and size>.jpg``), so a re-run into the same folder reuses every thumbnail whose photo did
not change (renaming or moving a photo costs nothing either), and a changed photo gets a new one.
Decoding uses JPEG draft mode (libjpeg scales by 1/2..1/8 while decoding), applies EXIF orientation and
keeps the aspect ratio. A photo that cannot be decoded gets no thumbnail (``None``) and one line in
``errors``; the rest go on.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .atomic import atomic_write_bytes
from .decode import DecodeError, _error, _open, _open_file, _orientation, _to_rgb, MAX_PIXELS


def thumb_name(data: bytes, size: int) -> str:
    return hashlib.sha1(data + b"\0thumb%d" % size).hexdigest()[:20] + ".jpg"


def render_thumbnail(data: bytes, name: str, size: int, quality: int = 80) -> bytes:
    """JPEG bytes of the image in ``data`` scaled to fit ``size``×``size`` (aspect kept). Raises DecodeError."""
    import io

    from PIL import Image

    im = _open(io.BytesIO(data), name, MAX_PIXELS)
    fmt = im.format
    try:
        if fmt == "JPEG":
            im.draft("RGB", (size, size))
        im.load()
        method = _orientation(im)
        im = _to_rgb(im)
        im.thumbnail((size, size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        if method is not None:
            im = im.transpose(method)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=quality, optimize=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes a DecodeError
        raise _error(name, e, fmt) from e
    return buf.getvalue()


def make_thumbnail(path: str | Path, out_dir: Path, size: int) -> str:
    """The thumbnail's file name inside ``out_dir`` (made unless already there). Raises DecodeError/OSError."""
    with _open_file(path) as f:
        data = f.read()
    if not data:
        raise DecodeError(path, "empty file (0 bytes)")
    name = thumb_name(data, size)
    dest = out_dir / name
    if not dest.exists():
        atomic_write_bytes(dest, render_thumbnail(data, str(path), size))
    return name


def make_thumbnails(paths: Iterable[str | Path], out_dir: str | Path, size: int = 160,
                    workers: int | None = None, errors: list[str] | None = None) -> dict[str, str | None]:
    """Thumbnails of ``paths`` in ``out_dir``: {path: file name in out_dir, or None if it failed}.

    Decoding runs in threads (Pillow releases the GIL while decoding and resizing).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    todo = list(dict.fromkeys(str(p) for p in paths))

    def one(p: str):
        try:
            return p, make_thumbnail(p, out, size), None
        except DecodeError as e:
            return p, None, str(e)
        except OSError as e:
            return p, None, f"{p}: {e.strerror or e}"

    result: dict[str, str | None] = {}
    n = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=n) as ex:
        for p, name, err in ex.map(one, todo):
            result[p] = name
            if err and errors is not None:
                errors.append(err)
    return result
