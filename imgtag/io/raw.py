"""Camera RAW files (NEF, CR2, CR3, ARW, DNG, ... see `discover.RAW_EXTENSIONS`) through rawpy/LibRaw.

Tagging needs a few hundred pixels, not a developed 24 Mpx image, so a RAW is read through the JPEG (or
bitmap) preview the camera embedded in it: about 1 ms with LibRaw. Only when there is none, or it is too
small (its long side under min(640 px, the sensor's long side): a 160x120 EXIF thumbnail is not enough),
the sensor data is demosaiced at half size (0.66 s at 24 Mpx), and if that fails at full size (4 s), with
one line on stderr naming the file and what was used. The RAW's orientation (LibRaw's `flip`, from the
EXIF orientation) is applied; an orientation inside the preview JPEG is ignored, since LibRaw may copy the
RAW's into it. rawpy is MIT-licensed and bundles LibRaw (LGPL-2.1 / CDDL).
"""
from __future__ import annotations

import io
import os
import sys
import time
from typing import BinaryIO

from PIL import Image

from .formats import RAW_EXTENSIONS, is_raw  # noqa: F401 - re-exported

ORIENTATION_KEY = "imgtag.orientation"  # im.info key: the EXIF orientation still to apply, overriding the EXIF
MIN_PREVIEW_SIDE = 640
# LibRaw flip -> EXIF orientation (dcraw's "50132467"[orientation & 7], inverted)
_FLIP_TO_EXIF = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


class RawError(Exception):
    """A RAW file could not be read; `reason` is one line (decode.py turns it into a DecodeError)."""

    def __init__(self, reason: str):
        self.reason = " ".join(str(reason).split())
        super().__init__(self.reason)


def notice(msg: str) -> None:
    """One line on stderr (RAW decodes run in worker processes, which share the parent's stderr)."""
    print(f"imgtag: {msg}", file=sys.stderr, flush=True)


def open_raw(fp: BinaryIO, name, max_pixels: int | None) -> Image.Image:
    """A RAW file as a PIL image: the embedded preview (not yet loaded, so JPEG draft mode still works) or
    an 8-bit RGB demosaic; `im.info[ORIENTATION_KEY]` holds the EXIF orientation still to apply (1: none).
    Raises RawError."""
    try:
        import rawpy
    except ImportError as e:
        raise RawError("RAW support needs rawpy (pip install rawpy)") from e
    try:
        raw = _imread(rawpy, fp)
    except rawpy.LibRawFileUnsupportedError as e:
        raise RawError("not a RAW file LibRaw can read (unsupported or corrupt)") from e
    except (rawpy.LibRawError, MemoryError, ValueError) as e:
        raise RawError(f"corrupt RAW ({type(e).__name__}: {e})") from e
    with raw:
        s = raw.sizes
        if max_pixels and s.width * s.height > max_pixels:
            raise RawError(f"decompression bomb: {s.width * s.height} pixels > limit {max_pixels}"
                                    f" ({s.width}x{s.height} RAW)")
        im, why = _preview(raw, rawpy, max(s.width, s.height), max_pixels)
        if im is not None:
            im.info[ORIENTATION_KEY] = _FLIP_TO_EXIF.get(s.flip, 1)
            return im
        errors = []
        for half in (True, False):
            what = "half-size demosaic" if half else "full-size demosaic"
            t0 = time.perf_counter()
            try:
                rgb = raw.postprocess(half_size=half, use_camera_wb=True, output_bps=8)
            except MemoryError:
                errors.append(f"{what}: out of memory")
                continue
            except Exception as e:  # noqa: BLE001 - LibRaw errors of every kind: try the next way
                errors.append(f"{what}: {type(e).__name__}: {e}")
                continue
            notice(f"{name}: RAW without a usable preview ({why}); used a {what}"
                   f" ({time.perf_counter() - t0:.2f} s)")
            im = Image.fromarray(rgb)
            im.info[ORIENTATION_KEY] = 1  # LibRaw's postprocess applies the flip itself
            return im
        raise RawError(f"corrupt RAW: no usable preview ({why}); " + "; ".join(errors))


def _imread(rawpy, fp: BinaryIO):
    """Open with LibRaw: by path when `fp` is a file on disk (LibRaw then reads only the parts it needs, e.g.
    the preview: not 25-80 MB), else from the bytes."""
    name = getattr(fp, "name", None)
    if isinstance(name, (str, os.PathLike)) and os.path.isfile(name):
        try:
            return rawpy.imread(os.fspath(name))
        except UnicodeError:  # a file name LibRaw cannot take: read the bytes instead
            pass
    return rawpy.imread(io.BytesIO(fp.read()))


def _preview(raw, rawpy, sensor_side: int, max_pixels: int | None) -> tuple[Image.Image | None, str]:
    """The embedded preview as a PIL image, or (None, why not)."""
    try:
        thumb = raw.extract_thumb()
    except rawpy.LibRawNoThumbnailError:
        return None, "none embedded"
    except Exception as e:  # noqa: BLE001 - unsupported or corrupt thumbnail
        return None, f"{type(e).__name__}: {e}"
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            im = Image.open(io.BytesIO(thumb.data))
            if im.format != "JPEG":
                return None, f"preview is {im.format}, not JPEG"
        else:
            im = Image.fromarray(thumb.data)
    except Exception as e:  # noqa: BLE001
        return None, f"unreadable preview ({type(e).__name__})"
    if max(im.size) < min(MIN_PREVIEW_SIDE, sensor_side):
        return None, f"preview only {im.width}x{im.height}"
    if max_pixels and im.width * im.height > max_pixels:
        return None, f"preview of {im.width}x{im.height} over the pixel limit"
    return im, ""
