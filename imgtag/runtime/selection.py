"""Selection: from a model's K scores to the labels an image gets (thresholds, top-k, exclusions).

:class:`Selector` is the one place this happens (the Tagger, the Ray actors and evaluation use it), so a
hierarchy-aware selection (a label path, a parent implied by its child) is a change here only.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from imgtag.io.records import Label


class Selector:
    """``selector(scores[K]) -> [Label, ...]``: labels at or above their threshold, best first; ``top_k`` caps
    the count; ``exclude`` names labels never output. ``thresholds``: one per label (the card's per-class
    ones), or one float for all."""

    def __init__(self, labels: Sequence[str], thresholds: Sequence[float] | float, top_k: int | None = None,
                 exclude: Iterable[str] = (), paths: Sequence[str] | None = None):
        self.labels = list(labels)
        # hierarchy paths (a model card's ``paths``, e.g. a model from `imgtag learn`): each Label carries its path,
        # and excluding a path or one of its parents ("Family") drops the subtree
        self.paths = list(paths) if paths else None
        exclude = set(exclude)
        known = set(self.labels) | {"|".join(q.split("|")[:n]) for q in self.paths or () for n in range(1, q.count("|") + 2)}
        unknown = sorted(exclude - known)
        if unknown:
            raise ValueError(f"--exclude: unknown label(s) {', '.join(unknown)}; the model knows {', '.join(self.labels)}")
        self.exclude = exclude
        if np.ndim(thresholds) == 0:
            thresholds = np.full(len(self.labels), float(thresholds), np.float32)
        self.thresholds = np.asarray(thresholds, np.float32)
        if self.thresholds.shape != (len(self.labels),):
            raise ValueError(f"{len(self.thresholds)} thresholds for {len(self.labels)} labels")
        self.top_k = top_k
        self._allowed = np.array([lab not in exclude and not (self.paths and any(
            self.paths[i] == e or self.paths[i].startswith(e + "|") for e in exclude)) for i, lab in enumerate(self.labels)])

    def __call__(self, scores: np.ndarray) -> list[Label]:
        keep = (scores >= self.thresholds) & self._allowed
        idx = [int(i) for i in np.argsort(-scores, kind="stable") if keep[i]]
        if self.top_k:
            idx = idx[: self.top_k]
        if self.paths:
            return [Label(self.labels[i], float(scores[i]), self.paths[i]) for i in idx]
        return [Label(self.labels[i], float(scores[i])) for i in idx]
