"""The VOC-head veto on VOC2007 val: a VOC keyword (dog, cat, chair, ...) fired by the VOC head is dropped when the
ImageNet head puts at least ``mass`` of its softmax on ONE sibling subtree (a bear: animal|bear next to animal|dog).

    python benchmarks/vocab_veto.py --logits .cache/logits_voc-val.npz [--model lite2-448-keywords]

Ground truth: VOC val's 20 labels ('difficult' ignored). For each veto mass it prints, pooled over the 19 VOC keywords
below the top level (person is a top level: no siblings), the VOC head's true and false positives that the veto
drops, and the VOC labels' CF1/OF1 as keywords (at the card's thresholds) with and without it. mAP is not touched
by the veto: it changes which keywords are emitted, never the VOC scores (`Prediction.scores`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's imgtag

from imgtag.card import read_card, resolve_model  # noqa: E402
from imgtag.engine.metrics import evaluate_scores  # noqa: E402
from imgtag.vocab.score import Vocabulary, sigmoid, softmax  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--logits", default=".cache/logits_voc-val.npz")
ap.add_argument("--model", default="lite2-448-keywords")
ap.add_argument("--masses", default="0.3,0.4,0.5,0.6,0.7,0.8,0.9")
ap.add_argument("--json", default="")
a = ap.parse_args()

card = read_card(resolve_model(a.model)[1])
d = dict(card.to_dict())
v = Vocabulary.from_card(d)
F = np.load(a.logits)
ok = ~np.isnan(F["logits"]).any(1)
L, T, M = F["logits"][ok], F["targets"][ok].astype(bool), F["masks"][ok].astype(bool)
K0 = card.num_classes
voc = sigmoid(L[:, :K0])
thr = np.asarray(card.class_thresholds(), np.float32)
fired = voc >= thr
mass = softmax(L[:, K0:]) @ v.maps["imagenet"].T  # N×K: subtree mass of every keyword
kw = {k["name"]: i for i, k in enumerate(card.vocabulary["keywords"])}
voc_kw = {k["classes"]["voc"][0]: kw[k["name"]] for k in card.vocabulary["keywords"] if k.get("classes", {}).get("voc")}


def siblings(i):
    p = v.parent[i]
    return [j for j in np.flatnonzero(v.parent == p) if j != i] if p >= 0 else []


sib = {c: siblings(i) for c, i in voc_kw.items()}
print(f"VOC val: {len(L)} images; VOC head fires {int((fired & M).sum())} labels "
      f"({int((fired & T & M).sum())} true, {int((fired & ~T & M).sum())} false) at the card's thresholds")
base = evaluate_scores(voc, T, M, thresholds=thr)
rows = []
print(f"{'mass':>5} {'TP dropped':>10} {'FP dropped':>10} {'CF1':>6} {'OF1':>6}   (no veto: CF1 {base['CF1']:.2f}, OF1 {base['OF1']:.2f})")
for m in [float(x) for x in a.masses.split(",")]:
    veto = np.zeros_like(fired)
    for c, js in sib.items():
        if js:
            veto[:, c] = mass[:, js].max(1) >= m
    kept = fired & ~veto
    tp_drop, fp_drop = int((fired & veto & T & M).sum()), int((fired & veto & ~T & M).sum())
    # CF1/OF1 of the labels as emitted: a vetoed label scores below its threshold
    r = evaluate_scores(np.where(kept, voc, np.minimum(voc, thr - 1e-6)), T, M, thresholds=thr)
    rows.append({"mass": m, "tp_dropped": tp_drop, "fp_dropped": fp_drop, "CF1": float(r["CF1"]), "OF1": float(r["OF1"])})
    print(f"{m:>5.2f} {tp_drop:>10d} {fp_drop:>10d} {r['CF1']:>6.2f} {r['OF1']:>6.2f}")
    if m == 0.5:
        for c in sorted(sib):
            n_tp, n_fp = int((fired & veto & T & M)[:, c].sum()), int((fired & veto & ~T & M)[:, c].sum())
            if n_tp or n_fp:
                print(f"       {card.labels[c]:<12} TP dropped {n_tp}, FP dropped {n_fp}")
if a.json:
    Path(a.json).write_text(json.dumps({"images": int(len(L)), "no_veto": {"CF1": float(base["CF1"]), "OF1": float(base["OF1"])},
                                        "rows": rows}, indent=1))

# ---- top levels on VOC val: how often "animal" / "vehicle" are emitted, and how often rightly ---------------------
# truth: any VOC label below that top level (VOC labels nearly every animal and vehicle in its photos; "object",
# "furniture" etc. are left out: VOC leaves most objects unlabelled, so their precision cannot be measured here)
veto_cfg = card.vocabulary.get("veto")
tagged = Vocabulary.from_card(d).tag(L)
print("\nemitted keywords on VOC val (the shipped card's selection" + (f", veto {veto_cfg['mass']}" if veto_cfg else "") + "):")
for top in ("animal", "vehicle", "person"):
    cols = [c for c, i in voc_kw.items() if v.paths[i].split("|")[0] == top]
    truth = (T[:, cols] & M[:, cols]).any(1)
    emitted = np.array([top in {k.name for k in row} for row in tagged])
    prec = (emitted & truth).sum() / max(emitted.sum(), 1)
    rec = (emitted & truth).sum() / max(truth.sum(), 1)
    print(f"  {top:<8} emitted on {int(emitted.sum()):4d} photos, precision {100 * prec:.1f} %, recall {100 * rec:.1f} % "
          f"(truth: {', '.join(card.labels[c] for c in cols)})")
counts = [len(row) for row in tagged]
print(f"  keywords per photo: median {np.median(counts):.0f}, p90 {np.percentile(counts, 90):.0f}")
