"""Selection: from a model's K scores to the labels an image gets (thresholds, top-k, exclusions).

:class:`Selector` (flat labels) and :class:`HierarchySelector` (a card with a keyword ``vocabulary`` over several
heads) are the one place this happens: the Tagger, and through it the local engine, the Python API and the Ray
actors, select with :func:`make_selector`'s choice, from the raw logits row (:meth:`from_logits`).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from imgtag.io.records import Label


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float32), -60, 60)))


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

    def from_logits(self, logits: np.ndarray) -> list[list[Label]]:
        """Labels of each row of N×K logits (score = sigmoid)."""
        return [self(row) for row in sigmoid(np.atleast_2d(logits)[:, : len(self.labels)])]


class HierarchySelector:
    """Selection through a card's keyword vocabulary (:class:`imgtag.vocab.score.Vocabulary`): from a raw logits row
    (all heads, the card's ``heads`` order) to the fired keywords plus their ancestors, most specific first, each a
    ``Label(name, score, path)``. ``exclude`` names keywords at any level (a subtree goes with it); ``top_k`` keeps the
    k best specific keywords with their ancestors.

    ``threshold``: None keeps the card's per-keyword thresholds; a float replaces every head threshold of every
    keyword (a keyword fires when any of its head scores reaches it); a sequence of K floats (the first head's
    thresholds for another precision, ``ModelCard.class_thresholds``) replaces the first head's thresholds of the
    keywords mapped onto one of its classes. :attr:`labels`/:attr:`thresholds` are the first head's (evaluation).
    """

    def __init__(self, heads: Sequence[dict], vocabulary: dict, labels: Sequence[str],
                 thresholds: Sequence[float] | float | None = None, top_k: int | None = None,
                 exclude: Iterable[str] = (), first_head_thresholds: Sequence[float] | None = None):
        from imgtag.vocab.score import Vocabulary

        self.labels = list(labels)
        keywords = [dict(k, thresholds=dict(k.get("thresholds", {}))) for k in vocabulary["keywords"]]
        first = heads[0]["name"]
        base = np.asarray(first_head_thresholds if first_head_thresholds is not None else [0.5] * len(self.labels),
                          np.float32)
        if thresholds is not None and np.ndim(thresholds) == 0:
            t = float(thresholds)
            for k in keywords:
                k["thresholds"] = {h: t for h in k["thresholds"]}
            base = np.full(len(self.labels), t, np.float32)
        elif thresholds is not None:
            base = np.asarray(thresholds, np.float32)
            if base.shape != (len(self.labels),):
                raise ValueError(f"{len(base)} thresholds for {len(self.labels)} labels")
            for k in keywords:
                cls = k.get("classes", {}).get(first, [])
                if first in k["thresholds"] and len(cls) == 1:
                    k["thresholds"][first] = float(base[cls[0]])
        self.thresholds = base
        self.vocabulary = Vocabulary(heads, keywords, vocabulary.get("separator", "|"), vocabulary.get("veto"))
        # a keyword is named by its name, its path, or (a VOC keyword) the head's own label ("pottedplant")
        alias = {k["path"]: k["name"] for k in keywords}
        alias.update({k["voc_label"]: k["name"] for k in keywords if k.get("voc_label")})
        self.exclude = {e if e in self.vocabulary.index else alias.get(e, e) for e in exclude}
        try:
            self._excluded = self.vocabulary.excluded_mask(self.exclude) if self.exclude else None
        except ValueError as e:
            raise ValueError(f"--exclude: {e}") from None
        self.top_k = top_k
        self.width = self.vocabulary.width

    def from_logits(self, logits: np.ndarray) -> list[list[Label]]:
        """Keywords of each row of N×W logits (W = all heads)."""
        scores, fired = self.vocabulary.score(np.atleast_2d(logits))
        return [[Label(k.name, k.score, k.path) for k in self.vocabulary.select(s, f, self._excluded, self.top_k)]
                for s, f in zip(scores, fired)]

    def __call__(self, logits: np.ndarray) -> list[Label]:
        """One image's keywords from its logits row (all heads)."""
        return self.from_logits(np.asarray(logits)[None])[0]


def make_selector(card, threshold: Sequence[float] | float | None = None, top_k: int | None = None,
                  exclude: Iterable[str] = ()) -> Selector | HierarchySelector:
    """The selector for a model card: :class:`HierarchySelector` when it has a ``vocabulary``, else
    :class:`Selector` over its labels (and their ``paths``). ``threshold`` None: the card's own thresholds."""
    if card.vocabulary is not None:
        return HierarchySelector(card.heads, card.vocabulary, card.labels, threshold, top_k, exclude,
                                 first_head_thresholds=card.class_thresholds())
    if threshold is None:
        threshold = card.class_thresholds()
    return Selector(card.labels, threshold, top_k, exclude, paths=card.paths)
