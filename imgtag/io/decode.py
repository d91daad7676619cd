"""Image decoding (placeholder: the io helper extends this; keep `load_pil` and `DecodeError`)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageOps


class DecodeError(Exception):
    """An image could not be decoded; str() is one line naming the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def load_pil(path: str | Path) -> Image.Image:
    """Open an image file as an RGB PIL image with EXIF orientation applied."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return im.convert("RGB")
    except Exception as e:  # noqa: BLE001
        raise DecodeError(path, str(e)) from e
