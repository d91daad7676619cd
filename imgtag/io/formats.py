"""Which files imgtag reads: the extensions, the camera RAW formats, and the optional Pillow plugins.

The one place that knows file formats by name; discover (walking folders), decode (dispatching RAW files to
io/raw.py, registering plugins in each worker process) and xmp (which images share a stem) all ask here.
Importing this module is cheap: Pillow and the plugins are imported by `optional_extensions`, once.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp",
                              ".tif", ".tiff", ".gif"})
# Camera RAW formats read through rawpy/LibRaw (io/raw.py): Nikon, Canon, Sony, Fujifilm, Olympus/OM,
# Panasonic, Pentax, Samsung, Adobe DNG, Hasselblad, Phase One, Epson, Mamiya, Leaf, Sigma
RAW_EXTENSIONS = frozenset({".nef", ".nrw", ".cr2", ".cr3", ".arw", ".sr2", ".raf", ".orf", ".rw2", ".pef",
                            ".srw", ".dng", ".3fr", ".iiq", ".erf", ".mef", ".mos", ".x3f"})


def is_raw(path: str | Path) -> bool:
    """Whether a file name has a camera RAW extension (case-insensitive)."""
    return os.path.splitext(str(path))[1].lower() in RAW_EXTENSIONS


def image_extensions() -> frozenset[str]:
    """Lower-case extensions picked up in directories: the built-in set, the RAW formats (with rawpy), and
    HEIC/HEIF/AVIF when a Pillow plugin (pi-heif, pillow-heif, or Pillow's own AVIF codec) is installed
    (checked lazily, once)."""
    return IMAGE_EXTENSIONS | optional_extensions()


@functools.cache
def optional_extensions() -> frozenset[str]:
    """Register optional Pillow plugins (once per process) and return the extra extensions readable."""
    import importlib.util

    exts = set(RAW_EXTENSIONS) if importlib.util.find_spec("rawpy") else set()
    for module in ("pi_heif", "pillow_heif"):  # pi-heif: the decode-only build, a core dependency
        try:
            heif = __import__(module)
            heif.register_heif_opener()
            exts |= {".heic", ".heif", ".hif"}
            if hasattr(heif, "register_avif_opener"):  # pillow_heif < 1.0
                heif.register_avif_opener()
                exts.add(".avif")
            break
        except Exception:  # noqa: BLE001 - absent or broken optional plugin
            continue
    try:
        import pillow_avif  # noqa: F401 - registers itself on import
        exts.add(".avif")
    except Exception:  # noqa: BLE001
        pass
    from PIL import features
    if features.check("avif"):  # Pillow >= 11.2 built with libavif
        exts.add(".avif")
    return frozenset(exts)
