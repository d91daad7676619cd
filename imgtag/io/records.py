"""The result record: the one place it is built (:func:`make_record`) and read back (:func:`record_labels`).

A record is ``{"path": str, "labels": [{"label": str, "score": float}, ...]}`` (a label with a hierarchy
path also has ``"path": "animal|dog|golden retriever"``) or, for a file that failed, ``{"path": str,
"error": str}``. Every engine (local, Ray) and every writer (io/writers.py) goes through these functions.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Label(NamedTuple):
    """One predicted label. ``path``: its place in a hierarchy ("animal|dog|golden retriever"); None = flat.    Use the attributes (``lab.label``, ``lab.score``): a Label has three fields, not a ``(label, score)`` pair.
    """

    label: str
    score: float
    path: str | None = None


def as_label(x) -> Label:
    """A :class:`Label` from a Label, a ``(label, score[, path])`` tuple or a record's ``{"label", "score"[, "path"]}``."""
    if isinstance(x, Label):
        return x
    if isinstance(x, dict):
        return Label(str(x["label"]), float(x["score"]), x.get("path"))
    return Label(str(x[0]), float(x[1]), x[2] if len(x) > 2 else None)


def make_record(path, labels: Iterable | None = None, error: str | None = None) -> dict:
    """THE result record for one image: with ``error`` the failure record, else its labels (best first as given)."""
    if error:
        return {"path": str(path), "error": str(error)}
    out = []
    for lab in labels or ():
        lab = as_label(lab)
        d = {"label": lab.label, "score": lab.score}
        if lab.path is not None:
            d["path"] = lab.path
        out.append(d)
    return {"path": str(path), "labels": out}


def record_labels(record: dict) -> list[Label]:
    """The labels of a record (none for an error record), as :class:`Label` s."""
    return [as_label(d) for d in record.get("labels", ())]
