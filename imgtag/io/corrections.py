"""Corrections: a person's decisions about imgtag's keywords, one JSON object per line (JSONL).

Schema (fixed; written by the review sheet, read by ``imgtag learn`` and ``imgtag tag --corrections``)::

    {"path": "<image path as in the tag output>", "keyword": "<label>",
     "keyword_path": "<hierarchy path, e.g. animal|cat, or null>", "verdict": "wrong" | "missing" | "right"}

* ``wrong``: imgtag gave the photo this keyword and it is not in the photo.
* ``missing``: the keyword is in the photo but imgtag did not give it.
* ``right``: imgtag gave it and it is right (a confirmed positive).

A file may hold several decisions about the same (path, keyword); the last one wins (:func:`latest`).
Blank lines are skipped; any other line that is not a valid decision raises :class:`CorrectionsError`
naming the file and line. No torch here (io layer).
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, NamedTuple

from .atomic import atomic_open
from .records import Label, make_record, record_labels

VERDICTS = ("wrong", "missing", "right")
FIELDS = ("path", "keyword", "keyword_path", "verdict")


class CorrectionsError(ValueError):
    """A corrections line is not valid JSON or not a decision; str() names the file and line."""


class Correction(NamedTuple):
    path: str
    keyword: str
    keyword_path: str | None
    verdict: str

    def to_json(self) -> str:
        return json.dumps(dict(zip(FIELDS, self)), ensure_ascii=False)


def parse_correction(obj) -> Correction:
    """A :class:`Correction` from a decoded JSON object; ValueError says what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    for key in ("path", "keyword", "verdict"):
        if not isinstance(obj.get(key), str) or not obj[key]:
            raise ValueError(f"{key!r} must be a non-empty string")
    if obj["verdict"] not in VERDICTS:
        raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, not {obj['verdict']!r}")
    kp = obj.get("keyword_path")
    if kp is not None and (not isinstance(kp, str) or not kp):
        raise ValueError("'keyword_path' must be a non-empty string or null")
    return Correction(obj["path"], obj["keyword"], kp, obj["verdict"])


def iter_corrections(lines: Iterable[str], source: str = "<corrections>") -> Iterable[Correction]:
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield parse_correction(json.loads(line))
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            raise CorrectionsError(f"{source}:{n}: not a correction: {e}") from None


def read_corrections(src: str | Path | IO[str]) -> list[Correction]:
    """All decisions in a corrections JSONL file (or an open text stream), in file order."""
    if hasattr(src, "read"):
        return list(iter_corrections(src, getattr(src, "name", "<stream>")))
    with open(src, encoding="utf-8") as f:
        return list(iter_corrections(f, str(src)))


def write_corrections(dest: str | Path, corrections: Iterable[Correction]) -> Path:
    """Write decisions as JSONL, atomically (the file is complete or untouched)."""
    with atomic_open(dest, "w") as f:
        for c in corrections:
            f.write(c.to_json() + "\n")
    return Path(dest)


def latest(corrections: Iterable[Correction]) -> dict[tuple[str, str], Correction]:
    """The last decision per (path, keyword), in order of first appearance."""
    out: dict[tuple[str, str], Correction] = {}
    for c in corrections:
        out[(c.path, c.keyword)] = c
    return out


def _key(path: str) -> str:
    return os.path.normcase(os.path.abspath(path))


class CorrectionSet:
    """Decisions ready to apply to tag records (``imgtag tag --corrections FILE``).

    Per photo (matched by its absolute path, so ``./a.jpg`` and ``a.jpg`` are the same photo): a keyword
    judged ``wrong`` is removed and never re-added, whatever the score; one judged ``missing`` or ``right``
    (a person says it is in the photo) is kept or added with score 1.0. The last decision per (photo, keyword)
    counts.
    """

    def __init__(self, corrections: Iterable[Correction]):
        self.wrong: dict[str, set[str]] = {}
        self.present: dict[str, dict[str, str | None]] = {}
        for c in corrections:  # in order: a later decision replaces an earlier one
            k = _key(c.path)
            if c.verdict == "wrong":
                self.wrong.setdefault(k, set()).add(c.keyword)
                self.present.get(k, {}).pop(c.keyword, None)
            else:
                self.present.setdefault(k, {})[c.keyword] = c.keyword_path
                self.wrong.get(k, set()).discard(c.keyword)

    def __len__(self) -> int:
        return sum(map(len, self.wrong.values())) + sum(map(len, self.present.values()))

    def apply(self, record: dict) -> dict:
        """The record with the decisions about its photo applied (a new dict; error records pass through)."""
        if "labels" not in record:
            return record
        k = _key(record["path"])
        wrong, present = self.wrong.get(k, ()), self.present.get(k, {})
        if not wrong and not present:
            return record
        labels = [lab for lab in record_labels(record) if lab.label not in wrong]
        have = {lab.label for lab in labels}
        labels += [Label(kw, 1.0, kp) for kw, kp in present.items() if kw not in have]
        labels.sort(key=lambda lab: -lab.score)  # best first, as tag writes them
        return make_record(record["path"], labels)
