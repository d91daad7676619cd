"""Hierarchy-aware keyword scoring (pure numpy: no torch, usable behind any runner).

A model's forward pass returns ONE logits row per image; the card's ``heads`` say which slice belongs to which
head and how it turns into probabilities::

    "heads": [{"name": "voc", "size": 20, "activation": "sigmoid"},
              {"name": "imagenet", "size": 1000, "activation": "softmax"}]      # slices in this order

and its ``vocabulary`` lists keywords, root-first, each with a ``|``-separated path::

    {"name": "golden retriever", "path": "animal|dog|retriever|golden retriever",
     "classes": {"imagenet": [207]}, "thresholds": {"imagenet": 0.5}}
    {"name": "dog", "path": "animal|dog", "classes": {"voc": [11]}, "thresholds": {"imagenet": 0.5, "voc": 0.78}}

Score of a keyword, per head it has a threshold for:

* **softmax head:** the probability mass of every class mapped onto the keyword *or any keyword below it*, so
  ``dog`` is sure when the mass spreads over ten breeds (the classes of a softmax head are exclusive, so the sum
  is the probability that the photo's main subject is some dog);
* **sigmoid head** (independent labels, e.g. VOC or a user's own keywords): the largest probability of the
  classes mapped onto the keyword itself.

A keyword *fires* when any of its head scores reaches that head's threshold; its reported score is the largest of
its head scores. What is emitted: every fired keyword plus all its ancestors (so the most specific keyword the
model is sure of comes with its path); an emitted ancestor's score is at least that of its surest emitted
descendant (a dog is an animal: "animal" is reported at >= the score of "dog", even when the VOC head alone
fired "dog").

The veto (optional, the vocabulary's ``"veto": {"heads": ["voc"], "by": "imagenet", "mass": 0.5}``): a score of a
vetoed head does not count for a keyword (not a top level) when the ``by`` head puts at least ``mass`` on ONE of
the keyword's sibling subtrees. The VOC head fires "dog" on bears; ImageNet's softmax, sure the subject is in
``animal|bear``, next to ``animal|dog``, vetoes it. ``exclude`` drops keywords and everything below them; ``top_k`` keeps the
k best *specific* keywords (emitted keywords with no emitted keyword below them, best score first) together with
their ancestors.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np


class Keyword(NamedTuple):
    name: str
    score: float
    path: str


def softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


ACTIVATIONS = {"softmax": softmax, "sigmoid": sigmoid}


class Vocabulary:
    """A card's heads + keyword tree, ready to score logits rows."""

    def __init__(self, heads: Sequence[dict], keywords: Sequence[dict], separator: str = "|",
                 veto: dict | None = None):
        self.heads = [dict(h) for h in heads]
        self.sep = separator
        self.names = [k["name"] for k in keywords]
        self.paths = [k["path"] for k in keywords]
        if len(set(self.names)) != len(self.names):
            dup = sorted({n for n in self.names if self.names.count(n) > 1})
            raise ValueError(f"vocabulary: keyword names must be unique, repeated: {', '.join(dup[:5])}")
        self.index = {n: i for i, n in enumerate(self.names)}
        by_path = {p: i for i, p in enumerate(self.paths)}
        K = len(keywords)
        # parent of each keyword (-1 for a top level); a missing parent path is an error in the card
        self.parent = np.full(K, -1, np.int64)
        for i, p in enumerate(self.paths):
            if self.sep in p:
                pp = p.rsplit(self.sep, 1)[0]
                if pp not in by_path:
                    raise ValueError(f"vocabulary: {p!r} has no keyword for its parent {pp!r}")
                self.parent[i] = by_path[pp]
        self.ancestors = [self._chain(i)[1:] for i in range(K)]
        self.depth = np.array([len(a) for a in self.ancestors])
        self.has_child = np.zeros(K, bool)
        self.has_child[self.parent[self.parent >= 0]] = True
        start = 0
        self.slices, self.maps, self.thresholds = {}, {}, {}
        for h in self.heads:
            name, size = h["name"], int(h["size"])
            if h.get("activation", "sigmoid") not in ACTIVATIONS:
                raise ValueError(f"head {name}: unknown activation {h.get('activation')!r}")
            self.slices[name] = slice(start, start + size)
            start += size
            M = np.zeros((K, size), np.float32)
            thr = np.full(K, np.inf, np.float32)  # inf: this head never fires the keyword
            aggregate = h.get("activation") == "softmax"
            for i, k in enumerate(keywords):
                for c in k.get("classes", {}).get(name, []):
                    if not 0 <= c < size:
                        raise ValueError(f"keyword {k['name']}: class {c} outside head {name} (size {size})")
                    M[i, c] = 1
                    if aggregate:
                        M[self.ancestors[i], c] = 1
                t = k.get("thresholds", {}).get(name)
                if t is not None:
                    thr[i] = float(t)
            self.maps[name], self.thresholds[name] = M, thr
        self.width = start
        self._pairs = {name: np.nonzero(M) for name, M in self.maps.items()}  # (keyword, class) pairs of each head
        # the veto (see the module doc): keyword -> its siblings, for the keywords the vetoed heads can fire
        self.veto = dict(veto) if veto else None
        self._veto_siblings: dict[int, np.ndarray] = {}
        if self.veto:
            names = {h["name"] for h in self.heads}
            bad = [h for h in [self.veto.get("by"), *self.veto.get("heads", [])] if h not in names]
            if bad or not 0 < float(self.veto.get("mass", 0)) <= 1:
                raise ValueError(f"vocabulary veto: unknown head(s) {bad} or mass outside (0, 1]: {self.veto}")
            for i in range(K):
                if self.parent[i] >= 0 and any(self.maps[h][i].any() for h in self.veto["heads"]):
                    sib = np.flatnonzero(self.parent == self.parent[i])
                    self._veto_siblings[i] = sib[sib != i]

    def _chain(self, i: int) -> list[int]:
        out = [i]
        while self.parent[out[-1]] >= 0:
            out.append(int(self.parent[out[-1]]))
        return out

    @classmethod
    def from_card(cls, card_dict: dict) -> "Vocabulary":
        v = card_dict["vocabulary"]
        return cls(card_dict["heads"], v["keywords"], v.get("separator", "|"), v.get("veto"))

    # ---- scoring -----------------------------------------------------------------------------------------------
    def head_probs(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        logits = np.atleast_2d(np.asarray(logits, np.float32))
        if logits.shape[1] != self.width:
            raise ValueError(f"logits have {logits.shape[1]} columns, the heads {self.width}")
        return {h["name"]: ACTIVATIONS[h.get("activation", "sigmoid")](logits[:, self.slices[h["name"]]]) for h in self.heads}

    def score(self, logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, fired)``, both N×K: a keyword's best head score, and whether any head reached its threshold."""
        probs = self.head_probs(logits)
        N, K = len(next(iter(probs.values()))), len(self.names)
        scores = np.zeros((N, K), np.float32)
        fired = np.zeros((N, K), bool)
        per_head = {}
        for h in self.heads:
            name, P, M = h["name"], probs[h["name"]], self.maps[h["name"]]
            if h.get("activation") == "softmax":
                per_head[name] = P @ M.T
            else:  # largest probability among the keyword's own classes
                kw, cls = self._pairs[name]
                s = np.zeros((K, N), np.float32)
                np.maximum.at(s, kw, P[:, cls].T)
                per_head[name] = s.T
        if self._veto_siblings:  # a vetoed head's score does not count where the veto head is sure of a sibling
            by, mass = per_head[self.veto["by"]], float(self.veto["mass"])
            for name in self.veto["heads"]:
                per_head[name] = per_head[name].copy()
                for i, sib in self._veto_siblings.items():
                    if len(sib):
                        per_head[name][by[:, sib].max(1) >= mass, i] = 0.0
        for h in self.heads:
            name, s = h["name"], per_head[h["name"]]
            has = self.maps[name].any(1) | np.isfinite(self.thresholds[name])
            scores = np.where(has[None], np.maximum(scores, s), scores)
            fired |= s >= self.thresholds[name][None]
        return scores, fired

    def resolve(self, names: Iterable[str]) -> list[int]:
        """Keyword indices of ``names``; an unknown name raises ValueError naming it."""
        names = list(names)
        bad = [n for n in names if n not in self.index]
        if bad:
            raise ValueError(f"unknown keyword(s) {', '.join(bad)}; `imgtag vocab` lists them")
        return [self.index[n] for n in names]

    def excluded_mask(self, exclude: Iterable[str]) -> np.ndarray:
        """K booleans: the excluded keywords and everything below them."""
        ex = set(self.resolve(exclude))
        return np.array([i in ex or any(a in ex for a in self.ancestors[i]) for i in range(len(self.names))], bool)

    def select(self, scores: np.ndarray, fired: np.ndarray, excluded: np.ndarray | None = None,
               top_k: int | None = None) -> list[Keyword]:
        """One image's keywords: fired ones plus their ancestors, most specific first (see the module doc)."""
        on = fired.copy()
        if excluded is not None:
            on &= ~excluded
        for i in np.flatnonzero(on):
            on[self.ancestors[i]] = True
        if excluded is not None:
            on &= ~excluded
        idx = np.flatnonzero(on)
        # specific keywords: emitted, with no emitted child
        child_on = np.zeros_like(on)
        p = self.parent[idx]
        child_on[p[p >= 0]] = True
        leaves = [int(i) for i in idx if not child_on[i]]
        leaves.sort(key=lambda i: (-scores[i], self.names[i]))
        if top_k:
            leaves = leaves[:top_k]
        out, seen = [], set()
        best = {}  # an ancestor is at least as sure as its surest emitted descendant ("animal" >= "dog")
        for i in leaves:
            for j in [i, *self.ancestors[i]]:
                best[j] = max(best.get(j, -1.0), float(scores[i]), float(scores[j]))
                if j not in seen:
                    seen.add(j)
                    out.append(j)
        return [Keyword(self.names[i], best[i], self.paths[i]) for i in out]

    def tag(self, logits: np.ndarray, exclude: Iterable[str] = (), top_k: int | None = None) -> list[list[Keyword]]:
        """Keywords for each row of ``logits``."""
        scores, fired = self.score(logits)
        ex = self.excluded_mask(exclude) if exclude else None
        return [self.select(scores[n], fired[n], ex, top_k) for n in range(len(scores))]


def vocabulary_rows(card_dict: dict) -> list[dict]:
    """The card's keywords as plain rows (name, path, depth, thresholds per head, VOC label, number of head
    classes in the subtree), root-first: what ``imgtag vocab --json`` prints."""
    v = Vocabulary.from_card(card_dict)
    rows = []
    for i, k in enumerate(card_dict["vocabulary"]["keywords"]):
        rows.append({"name": k["name"], "path": k["path"], "depth": int(v.depth[i]),
                     "thresholds": {h: float(t) for h, t in k.get("thresholds", {}).items()},
                     "classes": {h: int(v.maps[h][i].sum()) for h in v.maps if v.maps[h][i].any()}})
    return rows

