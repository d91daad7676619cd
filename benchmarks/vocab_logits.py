"""Raw logits rows (every head) of a model on VOC2007 val (or any folder), as the Tagger computes them, cached in an
.npz for the vocabulary's threshold and veto studies (benchmarks/vocab_veto.py).

    nice -n 10 python benchmarks/vocab_logits.py --model lite2-448-keywords --voc ../shared/data/VOCdevkit/VOC2007 \
        --split val --out .cache/logits_voc-val.npz [--threads 2]

Also prints the VOC mAP of the first head's scores (sigmoid of the first 20 columns, the metric of `imgtag eval`).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's imgtag

ap = argparse.ArgumentParser()
ap.add_argument("--model", default="lite2-448-keywords")
ap.add_argument("--voc", default="../shared/data/VOCdevkit/VOC2007")
ap.add_argument("--split", default="val")
ap.add_argument("--images", default="", help="a folder instead of VOC (no mAP)")
ap.add_argument("--out", required=True)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--limit", type=int, default=0)
a = ap.parse_args()
os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))

import numpy as np  # noqa: E402

from imgtag.runtime.tagger import Tagger  # noqa: E402

t = Tagger(a.model, device="cpu", runtime="onnx", precision="fp32", threads=a.threads, workers=1)
targets = masks = None
if a.images:
    paths = sorted(str(p) for p in Path(a.images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
else:
    from imgtag.data import build_dataset

    ds = build_dataset("voc", a.voc, a.split)
    paths = [str(p) for p in ds.paths]
    targets, masks = ds.columns(t.labels)
if a.limit:
    paths = paths[: a.limit]
    targets = None if targets is None else targets[: a.limit]
    masks = None if masks is None else masks[: a.limit]
t0 = time.perf_counter()
rows = np.full((len(paths), t.card.num_outputs), np.nan, np.float32)
for i, p in enumerate(t.tag_paths(paths)):
    if p.logits is not None:
        rows[i] = p.logits
    if (i + 1) % 250 == 0:
        print(f"{i + 1}/{len(paths)} {(i + 1) / (time.perf_counter() - t0):.2f} img/s", flush=True)
dt = time.perf_counter() - t0
Path(a.out).parent.mkdir(parents=True, exist_ok=True)
extra = {} if targets is None else {"targets": targets, "masks": masks}
np.savez_compressed(a.out, logits=rows, paths=np.array(paths), labels=np.array(t.labels), **extra)
print(f"{len(paths)} images in {dt:.0f} s ({len(paths) / dt:.2f} img/s, load {os.getloadavg()[0]:.1f}) -> {a.out}")
if targets is not None:
    from imgtag.engine.metrics import evaluate_scores

    ok = ~np.isnan(rows).any(1)
    r = evaluate_scores(t.scores_of(rows[ok]), targets[ok], masks[ok], thresholds=np.asarray(t.thresholds))
    print(f"VOC {a.split} mAP (first head, {int(ok.sum())} images): {r['mAP']:.2f}  CF1 {r['CF1']:.2f}  OF1 {r['OF1']:.2f}")
