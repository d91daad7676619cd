"""The keyword vocabulary of a model as rows or a tree: what `imgtag vocab [MODEL]` prints (--json: the rows)."""
from __future__ import annotations

import json
from pathlib import Path

from imgtag.card import ModelFileError, read_card, resolve_model
from imgtag.vocab.score import format_tree, vocabulary_rows


def vocabulary(model: str | None = None) -> list[dict]:
    """Rows (name, path, depth, thresholds per head, classes per head in the subtree), root-first. A model
    without a vocabulary lists its flat labels with their thresholds."""
    _, cpath = resolve_model(model)
    card = read_card(cpath)
    if card.vocabulary is None:
        return [{"name": lab, "path": lab, "depth": 0, "thresholds": {"main": float(t)}, "classes": {"main": 1}}
                for lab, t in zip(card.labels, card.class_thresholds())]
    return vocabulary_rows(json.loads(Path(cpath).read_text()))


def render(rows: list[dict], as_json: bool = False) -> str:
    if as_json:
        return json.dumps(rows, ensure_ascii=False, indent=1)
    return format_tree(rows)


__all__ = ["vocabulary", "render", "ModelFileError"]
