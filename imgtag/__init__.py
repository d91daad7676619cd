"""imgtag: tag images with many labels at once (multi-label image classification).

The Python API (the same objects the CLI uses; imported on first use, so ``import imgtag`` stays light)::

    import imgtag
    preds = imgtag.tag(["photos/a.jpg", "photos/"], threshold=0.4)
    for p in preds:
        print(p.path, p.labels, p.error)          # labels: [Label(label, score, path), ...], best first

    tagger = imgtag.Tagger("runs/model")         # load once (a name or path), tag many times
    preds = tagger.tag_images([pil_image])        # PIL images, e.g. in a notebook

``tag``, ``Tagger``, ``Prediction``, ``Label``, ``load_model``, ``ModelCard``; distributed tagging: :mod:`imgtag.ray`.
"""

__version__ = "0.1.0"


def _leave_nothing_behind() -> None:
    """imgtag writes nothing outside its outputs and its own cache (issue 16, F16), unless the user asks:

    * importing timm imports torch._dynamo, which makes ``$TMPDIR/torchinductor_$USER`` at once: pointed into
      imgtag's cache (unless TORCHINDUCTOR_CACHE_DIR is set);
    * importing onnxruntime (1.32) makes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,
      onnxruntime.db}`` and queues a usage event: ORT_DISABLE_TELEMETRY=1 (read at import; unless set) stops
      both, and runtime/onnx.py also calls ``onnxruntime.disable_telemetry_events()``.
    Set here, before anything imports torch or onnxruntime; Ray workers and decode processes inherit it."""
    import os

    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        base = os.environ.get("IMGTAG_CACHE")
        if not base:
            from platformdirs import user_cache_dir

            base = user_cache_dir("imgtag")
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(base, "torchinductor")


_leave_nothing_behind()

_LAZY = {"Tagger": "imgtag.runtime.tagger", "Prediction": "imgtag.runtime.tagger", "Label": "imgtag.io.records",
         "load_model": "imgtag.models.model", "ModelCard": "imgtag.card", "tag": "imgtag.api"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # cache: later look-ups skip this hook
        return value
    raise AttributeError(f"module 'imgtag' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
