"""Pick the ImageNet-keyword threshold on VOC (never on imagenet-sample), and score the rule.

    python benchmarks/vocab_calibrate.py --feats .cache/feats_voc-val_s12_ft.npz [--head .cache/distilled_head.npz]

The ImageNet head scores a keyword by the softmax mass of its subtree. VOC has ground truth for the 20 keywords
the VOC labels map to (dog, cat, car, bird, ...), all of which also collect ImageNet classes. The rule: ONE
threshold for all ImageNet-derived keywords = the smallest mass t at which those keywords, pooled over the
photos, reach a precision of at least --precision (default 0.9). Use VOC *val*: the shipped backbone tail was
fine-tuned on VOC train, so its features are over-confident there (train gives t = 0.15 at precision 0.955, an
optimistic number). VOC photos are cluttered multi-object scenes, so precision measured there is a conservative
estimate for single-subject photos.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import timm

from imgtag.models.backbone import load_pretrained
from imgtag.vocab.score import softmax

VOC = "/work/shared/data/VOCdevkit/VOC2007"
LABELS = ["aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
          "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"]


def voc_targets(paths, split: str) -> np.ndarray:
    """N×20: 1 present, 0 absent, -1 difficult-only (ignored)."""
    ids = [p.rsplit("/", 1)[1][:-4] for p in paths]
    pos = {i: n for n, i in enumerate(ids)}
    y = np.zeros((len(ids), 20), np.int8)
    for c, lab in enumerate(LABELS):
        for line in open(f"{VOC}/ImageSets/Main/{lab}_{split}.txt"):
            i, v = line.split()
            if i in pos:
                y[pos[i], c] = {"1": 1, "-1": 0, "0": -1}[v]
    return y


def subtree_classes(vocab: dict) -> dict[str, list[int]]:
    kws = vocab["keywords"]
    out = {k["name"]: [] for k in kws}
    for k in kws:
        parts = k["path"].split("|")
        for d in range(1, len(parts) + 1):
            anc = "|".join(parts[:d])
            name = next(x["name"] for x in kws if x["path"] == anc)
            out[name] += k["classes"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--feats", default=".cache/feats_voc-val_s12_ft.npz", help="cached features of a VOC split")
    ap.add_argument("--head", default="", help="distilled head .npz (weight, bias); default: the original classifier")
    ap.add_argument("--precision", type=float, default=0.9)
    a = ap.parse_args()
    T = np.load(a.feats)
    if a.head:
        H = np.load(a.head)
        W, b = H["weight"], H["bias"]
    else:
        m = timm.create_model("tf_efficientnet_lite2")
        load_pretrained(m, "tf_efficientnet_lite2", "imagenet")
        W, b = m.classifier.weight.detach().numpy(), m.classifier.bias.detach().numpy()
    P = softmax(T["feat_v0"].astype(np.float32) @ W.T + b)
    split = "val" if "voc-val" in a.feats else "train"
    y = voc_targets(T["paths"], split)
    vocab = json.load(open("imgtag/vocab/imagenet1k.json"))
    sub = subtree_classes(vocab)
    voc_kw = {k["voc"]: k["name"] for k in vocab["keywords"] if k["voc"]}
    used = [(c, voc_kw[lab]) for c, lab in enumerate(LABELS) if sub[voc_kw[lab]]]
    S = np.stack([P[:, sub[name]].sum(1) for _, name in used], 1)
    Y = np.stack([y[:, c] for c, _ in used], 1)
    ok = Y >= 0
    print(f"VOC {split}: {len(P)} photos, {len(used)} VOC keywords with ImageNet classes: {', '.join(n for _, n in used)}")
    print("   t   precision  recall  (pooled)")
    best = None
    for t in np.arange(0.05, 0.96, 0.05):
        pred = (S >= t) & ok
        tp = (pred & (Y == 1)).sum()
        prec, rec = tp / max(pred.sum(), 1), tp / max(((Y == 1) & ok).sum(), 1)
        print(f"{t:5.2f}  {prec:8.3f}  {rec:6.3f}")
        if best is None and prec >= a.precision:
            best = round(float(t), 2)
    print(f"threshold: {best} (smallest t with pooled precision >= {a.precision})")
    for (c, name), j in zip(used, range(S.shape[1])):
        pred = S[:, j] >= (best or 1)
        pos = Y[:, j] == 1
        print(f"  {name:14s} precision {(pred & pos).sum() / max(pred.sum(), 1):.2f}  recall {(pred & pos).sum() / max(pos.sum(), 1):.2f}  (n+ {pos.sum()})")


if __name__ == "__main__":
    main()
