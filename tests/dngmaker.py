"""Tiny DNG files made offline for the RAW tests (tifffile writes the TIFF structure, Pillow the preview).

`make_dng(dst, src_jpeg)` writes a DNG whose IFD0 is a full-size JPEG preview (the source JPEG's own bytes,
as one strip; so a preview-based decode gives the source's exact pixels) and whose SubIFD is a 16-bit RGGB
CFA mosaic of the same photo, with the DNG tags LibRaw needs (version, camera model, colour matrix, black
and white levels, CFA layout) and an EXIF orientation. `preview=False` leaves the preview out (a DNG that
must be demosaiced). exiftool cannot add a preview to a DNG that has none, hence this module.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# TIFF/DNG tag codes
NEW_SUBFILE_TYPE, ORIENTATION, MAKE, MODEL = 254, 274, 271, 272
CFA_REPEAT_PATTERN_DIM, CFA_PATTERN = 33421, 33422
DNG_VERSION, DNG_BACKWARD_VERSION, UNIQUE_CAMERA_MODEL = 50706, 50707, 50708
CFA_PLANE_COLOR, CFA_LAYOUT, BLACK_LEVEL, WHITE_LEVEL = 50710, 50711, 50714, 50717
COLOR_MATRIX_1, AS_SHOT_NEUTRAL, CALIBRATION_ILLUMINANT_1 = 50721, 50728, 50778
# sRGB(D65) -> XYZ inverse, i.e. XYZ -> camera for a camera whose raw RGB *is* linear sRGB
XYZ_TO_CAM = [3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570]


def _srational(values, den=10000):
    return [v for x in values for v in (int(round(x * den)), den)]


def mosaic(rgb: np.ndarray) -> np.ndarray:
    """uint8 HxWx3 sRGB -> uint16 HxW RGGB mosaic of the linear values."""
    lin = (rgb.astype(np.float64) / 255.0) ** 2.2
    h, w = rgb.shape[:2]
    cfa = np.empty((h, w), np.float64)
    cfa[0::2, 0::2] = lin[0::2, 0::2, 0]   # R
    cfa[0::2, 1::2] = lin[0::2, 1::2, 1]   # G
    cfa[1::2, 0::2] = lin[1::2, 0::2, 1]   # G
    cfa[1::2, 1::2] = lin[1::2, 1::2, 2]   # B
    return np.round(cfa * 65535).astype(np.uint16)


def _pillow_jpeg_encode(data, level=None, **_):
    """A JPEG encoder for tifffile without imagecodecs (only looked up: make_dng hands it encoded strips)."""
    import io
    buf = io.BytesIO()
    Image.fromarray(np.asarray(data).reshape(data.shape[-3:])).save(buf, "JPEG", quality=level or 90)
    return buf.getvalue()


def make_dng(dst: str | Path, src_jpeg: str | Path, orientation: int = 1, preview: bool = True) -> Path:
    import tifffile

    jpeg = Path(src_jpeg).read_bytes()
    with Image.open(src_jpeg) as im:
        rgb = np.asarray(im.convert("RGB"))
    h, w = rgb.shape[:2]
    cfa = mosaic(rgb[: h - h % 2, : w - w % 2])
    dng = [(DNG_VERSION, "B", 4, (1, 4, 0, 0), True), (DNG_BACKWARD_VERSION, "B", 4, (1, 1, 0, 0), True),
           (UNIQUE_CAMERA_MODEL, "s", 0, "imgtag test camera", True),
           (MAKE, "s", 0, "imgtag", True), (MODEL, "s", 0, "test camera", True),
           (ORIENTATION, "H", 1, orientation, True),
           (COLOR_MATRIX_1, "2i", 9, _srational(XYZ_TO_CAM), True),
           (CALIBRATION_ILLUMINANT_1, "H", 1, 21, True),  # D65
           (AS_SHOT_NEUTRAL, "2I", 3, (1, 1, 1, 1, 1, 1), True)]
    raw_tags = [(CFA_REPEAT_PATTERN_DIM, "H", 2, (2, 2), True), (CFA_PATTERN, "B", 4, (0, 1, 1, 2), True),
                (CFA_PLANE_COLOR, "B", 3, (0, 1, 2), True), (CFA_LAYOUT, "H", 1, 1, True),
                (BLACK_LEVEL, "H", 1, 0, True), (WHITE_LEVEL, "H", 1, 65535, True)]
    tifffile.TIFF.COMPRESSORS._codecs.setdefault(7, _pillow_jpeg_encode)  # no imagecodecs needed
    dst = Path(dst)
    with tifffile.TiffWriter(dst) as tif:
        if preview:  # IFD0: the JPEG preview (NewSubFileType 1), the raw image in its SubIFD
            tif.write(iter([jpeg]), shape=(h, w, 3), dtype=np.uint8, photometric="ycbcr", subsampling=(1, 1),
                      compression=7, rowsperstrip=h, subfiletype=1, subifds=1, extratags=dng)
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=raw_tags)
        else:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=dng + raw_tags)
    return dst
