"""Does int8 change what `imgtag tag` emits? fp32 (ONNX Runtime) vs another (runtime, precision) on the same images.

    nice -n 10 python benchmarks/int8_agreement.py [--model lite2-448-keywords] [--n 200]
        [--runtime openvino --precision int8]

Each side runs the full Tagger (its own thresholds: the card's fp32 ones, ``thresholds_by_precision`` for the
other; for a model with a keyword vocabulary, its keyword rules, e.g. the ImageNet softmax-mass thresholds) on the
first ``--n`` VOC07 val images. Prints: images whose emitted keyword set is identical, mean Jaccard of the sets,
keywords emitted in all by each side, those only one side emitted (most frequent first), and the largest
|Δscore| per head.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--runtime", default="openvino")
    ap.add_argument("--precision", default="int8")
    ap.add_argument("--voc", default=os.environ.get("IMGTAG_VOC_ROOT", "/work/shared/data/VOCdevkit/VOC2007"))
    a = ap.parse_args()
    from imgtag.runtime.tagger import Tagger

    ids = (Path(a.voc) / "ImageSets/Main/val.txt").read_text().split()[:a.n]
    paths = [f"{a.voc}/JPEGImages/{i}.jpg" for i in ids]
    ref = Tagger(a.model, device="cpu", runtime="onnx", precision="fp32", workers=1)
    other = Tagger(a.model, device="cpu", runtime=a.runtime, precision=a.precision, workers=1)
    print(f"model {ref.card.name}: fp32 = {ref.runner.description}; other = {other.runner.description}")
    same, jac, only = 0, [], collections.Counter()
    n_ref = n_oth = 0
    dmax = 0.0
    for p, q in zip(ref.tag_paths(paths), other.tag_paths(paths)):
        A, B = {lab.label for lab in p.labels}, {lab.label for lab in q.labels}
        same += A == B
        jac.append(len(A & B) / len(A | B) if A | B else 1.0)
        n_ref, n_oth = n_ref + len(A), n_oth + len(B)
        only.update([f"-{k}" for k in A - B] + [f"+{k}" for k in B - A])
        la, lb = getattr(p, "logits", None), getattr(q, "logits", None)
        if la is not None and lb is not None:
            dmax = max(dmax, float(np.abs(la - lb).max()))
        elif p.scores is not None and q.scores is not None:
            dmax = max(dmax, float(np.abs(p.scores - q.scores).max()))
    n = len(paths)
    print(f"{n} VOC07 val images: identical keyword sets {same}/{n} ({100 * same / n:.1f} %), mean Jaccard "
          f"{np.mean(jac):.3f}; keywords emitted fp32 {n_ref}, {a.runtime} {a.precision} {n_oth}; "
          f"max |Δ| (logits, all heads, when exposed; else scores) {dmax:.3g}")
    print("only one side (-: fp32 only, +: other only): " + ", ".join(f"{k} {c}" for k, c in only.most_common(15)))


if __name__ == "__main__":
    main()
