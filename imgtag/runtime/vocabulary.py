"""A model's keywords as a tree with their thresholds: what `imgtag vocab [MODEL] [--json]` prints.

:func:`vocabulary` gives the data (the same for the tree and ``--json``)::

    {"model": "lite2-448-keywords", "separator": "|",
     "heads": [{"name": "voc", "size": 20, "activation": "sigmoid"}, {"name": "imagenet", "size": 1000, ...}],
     "keywords": [{"name": "dog", "path": "animal|dog", "depth": 1, "thresholds": {"imagenet": 0.15, "voc": 0.777},
                   "classes": {"voc": 1, "imagenet": 118}}, ...]}          # root-first, children after parents

``thresholds``: per head, the score at which that head fires the keyword (a softmax head: the probability mass of
the keyword's subtree; a sigmoid head: the probability of its own class); a head without one never fires it.
``classes``: how many of the head's classes feed the keyword (a softmax head: those of its whole subtree).
A model without a vocabulary lists its labels (one head, ``main``) under their ``paths`` when the card has them;
the parents a path implies are listed too, without thresholds (they are never output on their own).
"""
from __future__ import annotations

import json

from imgtag.card import ModelCard, ModelFileError, read_card, resolve_model


def vocabulary(model: str | None = None, card: ModelCard | None = None) -> dict:
    """The keyword tree of ``model`` (a name or path; None: the default) or of ``card``; ModelFileError if the
    model cannot be read."""
    if card is None:
        _, cpath = resolve_model(model)
        card = read_card(cpath)
    if card.vocabulary is not None:
        from imgtag.vocab.score import vocabulary_rows

        rows = vocabulary_rows(card.to_dict())
        heads = [{k: h[k] for k in ("name", "size", "activation") if k in h} for h in card.heads]
        return {"model": card.name, "separator": card.vocabulary.get("separator", "|"), "heads": heads, "keywords": rows}
    paths = list(card.paths or card.labels)
    thresholds = card.class_thresholds()
    rows, seen = [], {}
    items = list(zip(card.labels, paths, thresholds))
    if card.paths:  # a tree: each parent before its children
        items.sort(key=lambda x: [c.lower() for c in x[1].split("|")])
    for lab, path, t in items:
        parts = path.split("|") if card.paths else [path]
        for d in range(1, len(parts)):  # parents a path implies
            p = "|".join(parts[:d])
            if p not in seen:
                seen[p] = len(rows)
                rows.append({"name": parts[d - 1], "path": p, "depth": d - 1, "thresholds": {}, "classes": {}})
        rows.append({"name": lab, "path": path if card.paths else lab, "depth": len(parts) - 1,
                     "thresholds": {"main": float(t)}, "classes": {"main": 1}})
    return {"model": card.name, "separator": "|", "heads": [{"name": "main", "size": card.num_classes,
                                                              "activation": "sigmoid"}], "keywords": rows}


def to_json(data: dict) -> str:
    return json.dumps(data, ensure_ascii=False, indent=1)


def _thresholds(row: dict) -> str:
    return ", ".join(f"{h} ≥ {t:.3g}" for h, t in row["thresholds"].items())


def tree(data: dict):
    """The vocabulary as a rich Tree: one node per keyword, its thresholds per head beside it."""
    from rich.markup import escape
    from rich.tree import Tree

    heads = ", ".join(f"{h['name']} ({h['size']}, {h.get('activation', 'sigmoid')})" for h in data["heads"])
    n = len(data["keywords"])
    total = f"{n} of {data['keywords_total']}" if data.get("keywords_total", n) != n else str(n)
    root = Tree(f"[bold]{escape(data['model'])}[/]: {total} keywords; heads {escape(heads)}")
    nodes = {}
    for r in data["keywords"]:
        parent = nodes.get(r["path"].rsplit(data["separator"], 1)[0]) if r["depth"] else root
        thr = _thresholds(r)
        label = f"[bold]{escape(r['name'])}[/]" if not r["depth"] else escape(r["name"])
        nodes[r["path"]] = (parent or root).add(label + (f"  [dim]{escape(thr)}[/]" if thr else ""))
    return root


def text(data: dict) -> str:
    """Plain indented text (no rich): one keyword a line, two spaces a level, thresholds in brackets."""
    return "\n".join(f"{'  ' * r['depth']}{r['name']}" + (f"  [{_thresholds(r)}]" if r["thresholds"] else "")
                     for r in data["keywords"])


__all__ = ["vocabulary", "to_json", "tree", "text", "ModelFileError"]
