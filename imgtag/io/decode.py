"""Robust image decoding to 8-bit RGB.

Every failure raises `DecodeError(path, reason)`, whose str() is one line "path: reason", so the CLI can
report a bad file and go on. Choices:

* EXIF orientation is applied (same mapping as `ImageOps.exif_transpose`); an unreadable EXIF block is
  ignored rather than failing the image.
* Transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is composited onto WHITE, the
  usual background of product/web images; black would invent dark borders around cut-out objects.
* 16-bit ("I;16*", "I") images are scaled to 8 bits (v * 255 / 65535, rounded), not clipped, so a
  normal 16-bit PNG does not come out white. "F" (float) images are taken as 0..1 if max <= 1, else 0..255.
  The scaling runs in bands of rows: about 3 bytes per pixel in all for a 16-bit image (see `_to_uint8`).
* CMYK is converted naively by Pillow (Adobe-inverted JPEGs handled); ICC profiles are not applied.
* Animated images (GIF, APNG, WebP) give their first frame.
* Truncated files fail (`ImageFile.LOAD_TRUNCATED_IMAGES` is left False): a half image is a bad input.
* Decompression bombs: images over `MAX_PIXELS` (default 2 x Pillow's default, ~179 M pixels) are refused
  from the header, before any pixel is decoded. Because that check is ours (and per call), importing this
  module sets Pillow's global `Image.MAX_IMAGE_PIXELS = None`, which otherwise warns from 89 M pixels and
  would cap any larger `max_pixels`.
* HEIC/HEIF via `pi_heif` (a core dependency: decode-only libheif, LGPL) or `pillow_heif` when installed,
  AVIF via Pillow's own codec or `pillow_avif`, registered on first use (in each worker process too). HEIF
  rotation (irot/imir) is applied by libheif, which then reports EXIF orientation 1.
* Camera RAW files (by extension, see `discover.RAW_EXTENSIONS`) go through `io/raw.py`: the embedded
  preview, else a half-size then full-size demosaic (said on stderr), with the RAW's orientation.
"""
from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

from .formats import is_raw, optional_extensions  # noqa: F401 - optional_extensions re-exported
from .raw import ORIENTATION_KEY, RawError, open_raw

MAX_PIXELS = 2 * 89_478_485  # Pillow's DecompressionBombError threshold; 0 or None disables the check
Image.MAX_IMAGE_PIXELS = None  # see module docstring: the bomb check is done here, per call

_WHITE = (255, 255, 255)
_TRANSPOSE = {  # EXIF orientation -> transpose, as in ImageOps.exif_transpose
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90,
}



class DecodeError(Exception):
    """An image could not be decoded; str() is one line "path: reason"."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the library said
        super().__init__(f"{path}: {self.reason}")


# ----------------------------------------------------------------------------- public API


def load_pil(path: str | Path, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """Decode an image file to an RGB PIL image, EXIF orientation applied. Raises DecodeError."""
    with _open_file(path) as f:
        return _decode(f, path, max_pixels)


def load_pil_from_bytes(data: bytes, name: str, max_pixels: int | None = MAX_PIXELS) -> Image.Image:
    """As `load_pil`, for callers holding the encoded bytes; `name` is used in error messages."""
    if not data:
        raise DecodeError(name, "empty file (0 bytes)")
    return _decode(io.BytesIO(data), name, max_pixels)


def load_resized(path: str | Path, size: int | tuple[int, int], max_pixels: int | None = MAX_PIXELS,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Decode and "squish"-resize an image to exactly `size`, returning uint8 HxWx3 RGB.

    The hot path of CPU tagging. `size` is an int (square) or (height, width), the order of the returned
    array. The aspect ratio is NOT preserved (no crop, no padding): the models are trained that way.
    JPEGs use `Image.draft` to let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below the target
    size, then everything is resized with Pillow's antialiased BILINEAR. EXIF orientation is applied
    after resizing (cheaper; the same up to rounding). If `out` (a writable uint8 HxWx3 array, e.g. one slot of
    a batch) is given the pixels are written there and `out` is returned.
    """
    with _open_file(path) as f:
        return _resized(f, path, size, max_pixels, out)


def load_resized_from_bytes(data: bytes, name: str, size: int | tuple[int, int], max_pixels: int | None = MAX_PIXELS,
                            out: np.ndarray | None = None) -> np.ndarray:
    """As `load_resized`, for callers holding the encoded bytes (the same pixels); `name` is used in errors."""
    if not data:
        raise DecodeError(name, "empty file (0 bytes)")
    return _resized(io.BytesIO(data), name, size, max_pixels, out)


def resize_image(im: Image.Image, size: int | tuple[int, int]) -> np.ndarray:
    """An already decoded PIL image (any mode) → uint8 HxWx3 RGB at `size`, resized as files are.

    No EXIF orientation is applied: an in-memory image is taken as the caller holds it.
    """
    h, w = (int(size),) * 2 if np.ndim(size) == 0 else map(int, size)
    return np.array(_squish(im, w, h))


# ----------------------------------------------------------------------------- internals

_SWAPS_AXES = {Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270,
               Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90}


def _resized(fp: BinaryIO, name, size, max_pixels: int | None, out: np.ndarray | None) -> np.ndarray:
    """The body of load_resized*: open, draft-decode, resize, orient."""
    h, w = (int(size),) * 2 if np.ndim(size) == 0 else map(int, size)
    im = _open(fp, name, max_pixels)
    fmt = im.format
    try:
        if fmt == "JPEG":  # EXIF comes from the header: know the orientation before draft()
            swap = _orientation(im) in _SWAPS_AXES
            im.draft("RGB", (h, w) if swap else (w, h))
        im.load()
        method = _orientation(im)  # after load(): PNG/WebP may keep EXIF behind the pixels
        tw, th = (h, w) if method in _SWAPS_AXES else (w, h)  # target size before the transpose
        im = _squish(im, tw, th)
        if method is not None:
            im = im.transpose(method)
    except Exception as e:  # noqa: BLE001 - every failure becomes a DecodeError
        raise _error(name, e, fmt) from e
    if out is None:
        return np.array(im)
    out[...] = np.asarray(im)
    return out


def _squish(im: Image.Image, w: int, h: int) -> Image.Image:
    """Any mode → RGB at exactly w×h, antialiased bilinear; greyscale (8-bit, or 16-bit/float scaled to 8 bits
    first) is resized as one channel, then expanded."""
    if (im.mode.startswith("I;16") or im.mode in ("I", "F")) and "transparency" not in im.info:
        im = _to_uint8(im)  # one byte per pixel; the RGB copy is made at the target size only
    if im.mode == "L" and "transparency" not in im.info:
        return im.resize((w, h), Image.Resampling.BILINEAR).convert("RGB")
    return _to_rgb(im).resize((w, h), Image.Resampling.BILINEAR)


def _open_file(path: str | Path) -> BinaryIO:
    """Open `path` for reading; missing/unreadable/empty files become DecodeError."""
    try:
        f = open(path, "rb")
    except FileNotFoundError as e:
        raise DecodeError(path, "file not found") from e
    except IsADirectoryError as e:
        raise DecodeError(path, "is a directory") from e
    except PermissionError as e:
        raise DecodeError(path, "permission denied") from e
    except OSError as e:
        raise DecodeError(path, f"cannot open: {e.strerror or e}") from e
    if os.fstat(f.fileno()).st_size == 0:
        f.close()
        raise DecodeError(path, "empty file (0 bytes)")
    return f


def _open(fp: BinaryIO, name, max_pixels: int | None) -> Image.Image:
    """Identify the image from its header and refuse decompression bombs; no pixels decoded yet."""
    if is_raw(name):
        try:
            im = open_raw(fp, name, max_pixels)
        except RawError as e:
            raise DecodeError(name, e.reason) from e
    else:
        optional_extensions()  # HEIF/AVIF openers, once per process
        try:
            with warnings.catch_warnings():  # JPEG reads EXIF (for DPI) here: see _orientation
                warnings.simplefilter("ignore")
                im = Image.open(fp)
        except Exception as e:  # noqa: BLE001
            raise _error(name, e, None) from e
    pixels = im.width * im.height
    if max_pixels and pixels > max_pixels:
        raise DecodeError(name, f"decompression bomb: {pixels} pixels > limit {max_pixels}"
                                f" ({im.width}x{im.height} {im.format})")
    return im


def _decode(fp: BinaryIO, name, max_pixels: int | None) -> Image.Image:
    """Open, check, decode, orient and convert to RGB: the body of load_pil*."""
    im = _open(fp, name, max_pixels)
    fmt = im.format
    try:
        im.load()
        method = _orientation(im)
        im = _to_rgb(im)
        if method is not None:
            im = im.transpose(method)
            for key in ("exif", "xmp", "XML:com.adobe.xmp"):  # so nobody applies the orientation twice
                im.info.pop(key, None)
        return im
    except Exception as e:  # noqa: BLE001
        raise _error(name, e, fmt) from e


def _orientation(im: Image.Image) -> Image.Transpose | None:
    """The transpose that undoes the EXIF orientation, or None; a broken EXIF block counts as none, silently
    (Pillow's "Corrupt EXIF data" / "Tag data larger than file" warnings named no file and changed nothing).
    A RAW's orientation (set by io/raw.py) overrides the EXIF of its preview."""
    if ORIENTATION_KEY in im.info:
        return _TRANSPOSE.get(im.info[ORIENTATION_KEY])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _TRANSPOSE.get(im.getexif().get(0x0112))
    except Exception:  # noqa: BLE001
        return None


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB (see the module docstring for the choices)."""
    mode = im.mode
    if mode == "RGB" and "transparency" not in im.info:
        return im
    if mode.startswith("I;16") or mode in ("I", "F"):
        return _to_uint8(im).convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info:
        rgba = im.convert("RGBA")
        bg = Image.new("RGB", im.size, _WHITE)
        bg.paste(rgba, mask=rgba.getchannel("A"))
        return bg
    return im.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


_CHUNK_PIXELS = 1 << 20  # _to_uint8 converts this many pixels at a time


def _to_uint8(im: Image.Image) -> Image.Image:
    """A 16-bit ("I;16*", "I") or float ("F") single-channel image → "L" (full range to full range).

    Memory stays bounded: the 8-bit result (1 byte per pixel) is filled a band of rows at a time, each band
    converted in uint32/float32 (under 10 MB of temporaries), never a whole-image int64 copy. With Pillow's own
    pixels (2 bytes per pixel for 16-bit) a 16-bit image takes about 3 bytes per pixel in all, so at most
    ~0.55 GB per decode worker at the MAX_PIXELS limit (~179 M pixels); it used to be ~25 bytes per pixel.
    """
    mode = im.mode
    w, h = im.size
    out = np.empty((h, w), dtype=np.uint8)
    rows = max(1, _CHUNK_PIXELS // max(w, 1))
    scale = 1.0
    if mode == "F":  # 0..1 if max <= 1, else 0..255 (NaN/inf ignored)
        lo_hi = im.getextrema()
        scale = 255.0 if lo_hi and np.isfinite(lo_hi[1]) and lo_hi[1] <= 1.0 else 1.0
    for y in range(0, h, rows):
        a = np.asarray(im.crop((0, y, w, min(h, y + rows))))
        if mode == "F":
            a = np.nan_to_num(a.astype(np.float32, copy=False))
            out[y:y + rows] = np.clip(a * scale + 0.5, 0, 255).astype(np.uint8)
        else:  # "I" is taken to hold 16-bit data, as 16-bit PNG/PGM do
            a = np.clip(a, 0, 65535).astype(np.uint32)
            a *= 255
            a += 32767
            a //= 65535
            out[y:y + rows] = a
    return Image.fromarray(out, "L")


def _error(name, e: BaseException, fmt: str | None) -> DecodeError:
    """Turn a Pillow/OS exception into a DecodeError with a human reason."""
    kind = fmt or "image"
    msg = str(e)
    if isinstance(e, UnidentifiedImageError):
        reason = "not an image file (cannot identify image format)"
    elif isinstance(e, Image.DecompressionBombError):
        reason = f"decompression bomb: {msg}"
    elif isinstance(e, MemoryError):
        reason = "out of memory while decoding"
    elif "truncated" in msg.lower() or isinstance(e, EOFError):
        reason = f"truncated {kind}"
    elif isinstance(e, OSError) and e.strerror and not fmt:
        reason = f"cannot read: {e.strerror}"
    else:
        reason = f"corrupt {kind} ({type(e).__name__}: {msg})" if msg else f"corrupt {kind}"
    return DecodeError(name, reason)
