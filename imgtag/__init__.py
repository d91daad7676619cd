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
