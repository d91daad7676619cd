"""How much flip test-time augmentation (mean of the logits of the image and its mirror) would add, per model.

    python benchmarks/tta_flip.py MODEL [MODEL ...] [--split val]

Scores VOC2007 val through the same decode path as ``imgtag eval`` (torch runtime), once plain and once mirrored,
and prints the mAP of the plain scores, of the mirrored ones and of the logit mean. imgtag does not use TTA when
tagging (it would halve the speed); this measures whether it should.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402


@torch.inference_mode()
def logits(net, card, paths, view) -> np.ndarray:
    from imgtag.models.model import normalize
    from imgtag.runtime.loader import iter_batches

    out = []
    for b in iter_batches(paths, card.input_size, 32, view=view):
        out.append(net(normalize(b.images, card.mean, card.std).contiguous(memory_format=torch.channels_last)).float())
    return torch.cat(out).numpy()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--split", default="val")
    a = ap.parse_args()
    from imgtag.data import build_dataset
    from imgtag.runtime.loader import View
    from imgtag.engine.metrics import evaluate_scores
    from imgtag.models.model import load_model

    ds = build_dataset("voc", ROOT.parent / "shared" / "data" / "VOCdevkit" / "VOC2007", a.split)
    print("| model | mAP | mirrored | flip TTA (mean logit) |")
    print("|---|---:|---:|---:|")
    for m in a.models:
        net, card = load_model(m)
        net = net.float().to(memory_format=torch.channels_last)
        t, k = ds.columns(card.labels)
        plain, mirror = logits(net, card, ds.paths, View(0)), logits(net, card, ds.paths, View(1))
        maps = [evaluate_scores(s, t, k)["mAP"] for s in (plain, mirror, (plain + mirror) / 2)]
        print(f"| {card.name} ({m}) | {maps[0]:.2f} | {maps[1]:.2f} | {maps[2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
