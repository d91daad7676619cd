"""Image I/O: finding images, decoding them, writing results and XMP sidecars.

Data flow: `discover` (paths) -> `decode` (pixels) -> engine/model -> `writers` / `xmp` (results).
"""
from .atomic import atomic_open, atomic_write_bytes
from .decode import DecodeError, MAX_PIXELS, load_pil, load_pil_from_bytes, load_resized
from .discover import (IMAGE_EXTENSIONS, RAW_EXTENSIONS, image_extensions, is_raw, iter_image_paths,
                       parse_shard, read_file_list, shard)
from .writers import WRITERS, Writer, make_writer
from .xmp import (SidecarNamer, XmpError, is_tagged, read_sidecar, read_sidecar_labels, sidecar_path,
                  untag_sidecar, write_sidecar)

__all__ = [
    "atomic_open", "atomic_write_bytes",
    "DecodeError", "MAX_PIXELS", "load_pil", "load_pil_from_bytes", "load_resized",
    "IMAGE_EXTENSIONS", "RAW_EXTENSIONS", "image_extensions", "is_raw", "iter_image_paths", "parse_shard", "read_file_list", "shard",
    "WRITERS", "Writer", "make_writer",
    "SidecarNamer", "XmpError", "is_tagged", "read_sidecar", "read_sidecar_labels", "sidecar_path",
    "untag_sidecar", "write_sidecar",
]
