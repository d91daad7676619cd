"""``imgtag.tag()``: one call from paths or PIL images to predictions (see :mod:`imgtag` for the API)."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from imgtag.runtime.tagger import Prediction, Tagger


def tag(paths_or_images: Any, model: str | Path | Tagger | None = None, **kw) -> list[Prediction]:
    """Tag images and return one :class:`Prediction` per image, in input order.

    ``paths_or_images``: a path (file or directory, walked recursively as ``imgtag tag`` does), a PIL
    image, or a list mixing them. ``model``: a model name or path (``None``: the shipped default), or a
    :class:`Tagger` to reuse (no reload). Other keywords go to :class:`Tagger` (``threshold``, ``top_k``,
    ``exclude``, ``device``, ``batch_size``, ...). A file that cannot be read gives a prediction with
    ``error`` set; a missing path raises ``FileNotFoundError``.

    >>> import imgtag
    >>> preds = imgtag.tag(["cat.jpg", "holiday/"], threshold=0.5)
    >>> {p.path: [lab.label for lab in p.labels] for p in preds}
    {'cat.jpg': ['cat', 'animal'], 'holiday/beach.jpg': ['person', 'boat', 'vehicle']}
    >>> from PIL import Image
    >>> imgtag.tag(Image.open("cat.jpg"))[0].labels
    [Label(label='cat', score=0.96, path='animal|cat'), Label(label='animal', score=0.96, path='animal')]
    """
    from imgtag.io.discover import iter_image_paths

    items = paths_or_images
    if isinstance(items, (str, Path)) or hasattr(items, "getpixel") or not isinstance(items, Iterable):
        items = [items]
    if isinstance(model, Tagger):
        if kw:
            raise TypeError(f"tag(): options {sorted(kw)} cannot change an existing Tagger")
        tagger = model
    else:
        tagger = Tagger(model, **kw)
    # expand directories, keep order; runs of paths and runs of images are tagged in batches
    flat: list = []
    for it in items:
        flat += [str(p) for p in iter_image_paths([it])] if isinstance(it, (str, Path)) else [it]
    out: list[Prediction] = []
    k = 0
    while k < len(flat):
        is_path = isinstance(flat[k], str)
        j = k
        while j < len(flat) and isinstance(flat[j], str) == is_path:
            j += 1
        run = flat[k:j]
        out += list(tagger.tag_paths(run)) if is_path else tagger.tag_images(run, names=[f"image{i}" for i in range(k, j)])
        k = j
    return out
