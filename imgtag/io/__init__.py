"""Image I/O: finding images, decoding them, result records, writing results and XMP sidecars.

Data flow: `discover` (paths) -> `decode` (pixels) -> runtime/model -> `records` -> `writers` / `xmp` (results).
The names below are imported on first use, so importing one submodule (e.g. `imgtag.io.writers` for the CLI's
format list) does not pull in PIL and numpy.
"""
_LAZY = {
    "atomic_open": "atomic", "atomic_write_bytes": "atomic",
    "DecodeError": "decode", "MAX_PIXELS": "decode", "load_pil": "decode", "load_pil_from_bytes": "decode",
    "load_resized": "decode",
    "IMAGE_EXTENSIONS": "discover", "RAW_EXTENSIONS": "discover", "is_raw": "discover", "image_extensions": "discover", "iter_image_paths": "discover",
    "parse_shard": "discover", "read_file_list": "discover", "shard": "discover",
    "Label": "records", "make_record": "records",
    "WRITERS": "writers", "Writer": "writers", "make_writer": "writers", "register_writer": "writers",
    "SidecarNamer": "xmp", "is_tagged": "xmp", "untag_sidecar": "xmp", "XmpError": "xmp", "read_sidecar": "xmp", "read_sidecar_labels": "xmp", "sidecar_path": "xmp", "write_sidecar": "xmp",
}
__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
