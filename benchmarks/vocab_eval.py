"""Keywords on imagenet-sample at the shipped thresholds: coverage, correctness, keywords per photo.

    python benchmarks/vocab_eval.py [--feats .cache/feats_sample_ft.npz] [--model MODEL_CARD.json]
    python benchmarks/vocab_eval.py --records out.jsonl       # from a real `imgtag tag -f jsonl` run

A photo's keyword is *correct* when it is the keyword of the photo's synset (file name = wnid) or one of its
ancestors; *correct below the top level* excludes the 9 top levels (animal, object, ...). With --feats the
logits are rebuilt from cached pooled features (the ImageNet head is linear on them) and scored by the same
imgtag.vocab.score.Vocabulary the Tagger uses.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's imgtag
from imgtag.vocab.score import Vocabulary  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feats", default=".cache/feats_sample_ft.npz")
    ap.add_argument("--model", default="", help="model card with heads + vocabulary (default: the shipped default)")
    ap.add_argument("--weights", default="", help="safetensors with the imagenet head (default: the card's model)")
    ap.add_argument("--records", default="", help="JSONL from `imgtag tag` instead of cached features")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    from imgtag.card import read_card, read_weights, resolve_model

    wpath, cpath = resolve_model(a.model or None)
    cd = json.loads(Path(cpath).read_text())
    v = Vocabulary.from_card(cd)
    kw = {k["name"]: k for k in cd["vocabulary"]["keywords"]}
    by_wnid = {k["wnid"]: k for k in cd["vocabulary"]["keywords"] if k.get("wnid")}
    head = next(h for h in cd["heads"] if h["activation"] == "softmax")
    wnids = head["wnids"]
    cls_kw = {}
    for k in cd["vocabulary"]["keywords"]:
        for c in k["classes"].get(head["name"], []):
            cls_kw[wnids[c]] = k
    if a.records:
        recs = [json.loads(line) for line in open(a.records)]
        names = [Path(r["path"]).name for r in recs]
        got = [[lab["label"] for lab in r.get("labels", [])] for r in recs]
    else:
        import torch

        F = np.load(a.feats)
        names = [p.rsplit("/", 1)[1] for p in F["paths"]]
        sd = read_weights(a.weights or wpath)
        key = next(k for k in sd if k.endswith("weight") and sd[k].shape == (len(wnids), F["feat_v0"].shape[1]))
        W, b = sd[key].float().numpy(), sd[key[:-6] + "bias"].float().numpy()
        logits = np.concatenate([F["voc_v0"].astype(np.float32), F["feat_v0"].astype(np.float32) @ W.T + b], 1)
        got = [[k.name for k in row] for row in v.tag(logits)]
        del torch
    tops = {k["name"] for k in cd["vocabulary"]["keywords"] if "|" not in k["path"]}
    n_any = n_ok = n_ok_spec = 0
    counts, wrong = [], 0
    for name, labs in zip(names, got):
        w = name[:9]
        k = cls_kw.get(w)
        good = set(k["path"].split("|")) if k else set()
        if not k:  # a dropped class: the keywords of its WordNet ancestors that are in the vocabulary
            good = set()
        n_any += bool(labs)
        n_ok += bool(good & set(labs))
        n_ok_spec += bool((good - tops) & set(labs))
        counts.append(len(labs))
        wrong += sum(1 for x in labs if x not in good)
    n = len(names)
    r = {"photos": n, "keywords_in_vocabulary": len(kw), "pct_with_keyword": 100 * n_any / n,
         "pct_with_correct": 100 * n_ok / n, "pct_with_correct_below_top": 100 * n_ok_spec / n,
         "keywords_per_photo_median": float(np.median(counts)), "keywords_per_photo_p90": float(np.percentile(counts, 90)),
         "pct_keywords_off_synset_path": 100 * wrong / max(sum(counts), 1)}
    for key_, val in r.items():
        print(f"{key_:32s} {val:.1f}" if isinstance(val, float) else f"{key_:32s} {val}")
    if a.json:
        json.dump(r, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
