"""imgtag: tag images with many labels at once (multi-label image classification)."""

__version__ = "0.1.0"
