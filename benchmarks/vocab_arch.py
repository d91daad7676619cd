"""Compare the ways one backbone pass can also feed an ImageNet-1k head (issue 13), from cached outputs.

    nice -n 10 python benchmarks/vocab_features.py sample --stride 4                 # cache (slow part)
    nice -n 10 python benchmarks/vocab_features.py voc-train --stride 4 --no-260
    python benchmarks/vocab_arch.py [--sample .cache/feats_sample_s4.npz] [--train .cache/feats_voc-train_s4.npz]

Rows: the original ImageNet model at 260 px (its training size) and 448 px; design (c) = shared frozen prefix +
original tail = the original model at 448 px exactly (the prefix weights are identical); design (a) = the
original classifier on the fine-tuned model's pooled features; design (b) = a 1280->1000 linear head distilled
(KL to the original model's softmax at 260 px, its training size) on VOC *train* features. imagenet-sample is never fitted on.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import timm
import torch

from imgtag.models.backbone import load_pretrained


def topk(logits: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-logits, axis=1)[:, :k]


def distill(feats: np.ndarray, teacher_logits: np.ndarray, W0: np.ndarray, b0: np.ndarray, epochs: int = 30,
            lr: float = 1e-3, wd: float = 1e-4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    x = torch.from_numpy(feats.astype(np.float32))
    t = torch.softmax(torch.from_numpy(teacher_logits.astype(np.float32)), 1)
    lin = torch.nn.Linear(x.shape[1], t.shape[1])
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(W0))
        lin.bias.copy_(torch.from_numpy(b0))
    opt = torch.optim.AdamW(lin.parameters(), lr=lr, weight_decay=wd)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            j = perm[i:i + 128]
            loss = torch.nn.functional.kl_div(torch.log_softmax(lin(x[j]), 1), t[j], reduction="batchmean")
            opt.zero_grad()
            loss.backward()
            opt.step()
    return lin.weight.detach().numpy(), lin.bias.detach().numpy()


def fit_temperature(student_logits: np.ndarray, teacher_logits: np.ndarray) -> float:
    """The T minimising KL(teacher softmax || softmax(student / T)), by a 1-D grid search."""
    t = torch.softmax(torch.from_numpy(teacher_logits), 1)
    s = torch.from_numpy(student_logits)
    grid = np.exp(np.linspace(np.log(0.2), np.log(5), 161))
    kl = [float(torch.nn.functional.kl_div(torch.log_softmax(s / g, 1), t, reduction="batchmean")) for g in grid]
    return float(grid[int(np.argmin(kl))])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sample", default=".cache/feats_sample_s4.npz")
    ap.add_argument("--train", default="")
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(2)
    m = timm.create_model("tf_efficientnet_lite2")
    load_pretrained(m, "tf_efficientnet_lite2", "imagenet")
    W0, b0 = m.classifier.weight.detach().numpy(), m.classifier.bias.detach().numpy()
    S = np.load(a.sample)
    classes = sorted({p.rsplit("/", 1)[1][:9] for p in S["paths"]})
    allc = open("imgtag/vocab/imagenet1k_classes.txt").read().split()
    y = np.array([allc.index(p.rsplit("/", 1)[1][:9]) for p in S["paths"]])
    feats = S["feat_v0"].astype(np.float32)
    rows = {"original @260 (reference)": S["o260_v0"].astype(np.float32),
            "(c) shared prefix + original tail @448": S["o448_v0"].astype(np.float32),
            "(a) original classifier on fine-tuned pooled features @448": feats @ W0.T + b0}
    if a.train:
        T = np.load(a.train)
        views = sorted(k[6:] for k in T.files if k.startswith("feat_v"))
        tf = np.concatenate([T[f"feat_v{v}"] for v in views]).astype(np.float32)
        tl = np.concatenate([T[f"o260_v{v}"] for v in views]).astype(np.float32)
        temp = fit_temperature(tf @ W0.T + b0, tl)
        rows[f"(a') = (a) with temperature {temp:.2f} fitted on VOC train"] = (feats @ W0.T + b0) / temp
        np.savez(".cache/temperature_head.npz", weight=W0 / temp, bias=b0 / temp)
        W, b = distill(tf, tl, W0 / temp, b0 / temp)
        rows[f"(b) distilled linear head (VOC train, {len(tf)} photos)"] = feats @ W.T + b
        np.savez(".cache/distilled_head.npz", weight=W, bias=b)
    ref = rows["original @260 (reference)"]
    ref1, ref5 = topk(ref, 1)[:, 0], topk(ref, 5)
    out = {}
    print(f"imagenet-sample, {len(y)} photos (every 4th; smoke set, probably seen in training)")
    print(f"{'design':62s} top1  top5  agree-top1-w/-260  top5-overlap")
    for name, L in rows.items():
        t1, t5 = topk(L, 1)[:, 0], topk(L, 5)
        r = {"top1": float((t1 == y).mean() * 100), "top5": float((t5 == y[:, None]).any(1).mean() * 100),
             "agree_top1": float((t1 == ref1).mean() * 100),
             "top5_overlap": float(np.mean([len(set(p) & set(q)) / 5 for p, q in zip(t5, ref5)]) * 100)}
        out[name] = r
        print(f"{name:62s} {r['top1']:5.1f} {r['top5']:5.1f} {r['agree_top1']:8.1f} {r['top5_overlap']:12.1f}")
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
