"""Ship a model's int8 graph with thresholds calibrated for it, and pick its CPU default precision.

    python tools/ship_precision.py imgtag/weights/voc2007-lite2-448-csra-asl.json --voc VOC2007_ROOT \
        [--logits-dir .cache/bench_precision]

* Writes ``NAME.int8.onnx`` beside the card (``imgtag export --int8``'s graph: static QDQ, 128 training images,
  seed 0, MinMax); with ``--logits-dir`` the graph benchmarks/bench_precision.py made and scored is reused.
* Scores the val split with each (runtime, precision) that is installed: ONNX Runtime fp32 and int8 (the
  reference int8), OpenVINO int8 (its int8 kernels round differently: up to ~0.9 logit from ORT's, so it gets
  its own key). Cached logits ``NAME-<variant>.npz`` in ``--logits-dir`` are used instead of a new pass.
* Calibrates per-class thresholds on each one's own scores with the card's rule
  (:func:`imgtag.engine.metrics.calibrate_thresholds`) into ``thresholds_by_precision`` (``int8``,
  ``openvino:int8``); ``thresholds`` (fp32) is left as it is. Metrics per key go to
  ``metrics["by_precision"]``.
* ``cpu_precision``: ``int8`` when the reference int8 scores are within 0.3 mAP and 0.5 CF1 (each at its own
  thresholds) of fp32, else ``fp32``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_MAP_DROP, MAX_CF1_DROP = 0.3, 0.5
VARIANTS = {"fp32": "ort-fp32", "int8": "ort-int8", "openvino:int8": "ov-int8"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("card")
    ap.add_argument("--voc", required=True)
    ap.add_argument("--logits-dir", default=str(ROOT / ".cache" / "bench_precision"))
    a = ap.parse_args()

    from imgtag.card import read_card
    from imgtag.data import build_dataset
    from imgtag.engine.metrics import calibrate_thresholds, evaluate_scores

    card = read_card(a.card)
    cdir = Path(a.logits_dir)
    graph = Path(a.card).with_suffix(".int8.onnx")
    cached = cdir / f"{card.name}-int8.onnx"
    if cached.is_file():
        shutil.copyfile(cached, graph)
    elif not graph.is_file():
        from imgtag.models.model import load_model
        try:
            from imgtag.runtime.onnx import quantize_int8
        except ImportError:  # before the runtime layer moved out of engine/
            from imgtag.engine.onnx import quantize_int8

        net, _ = load_model(a.card)
        ids = (Path(a.voc) / "ImageSets/Main/train.txt").read_text().split()
        quantize_int8(net, card, graph, [f"{a.voc}/JPEGImages/{i}.jpg" for i in ids], n=128)
    ds = build_dataset("voc", a.voc, "val")
    t, m = ds.columns(card.labels)
    by_thr, by_metrics = dict(card.thresholds_by_precision), {}
    for key, variant in VARIANTS.items():
        f = cdir / f"{card.name}-{variant}.npz"
        if not f.is_file():
            print(f"{key}: no cached logits {f} (run benchmarks/bench_precision.py --variants {variant}); skipped")
            continue
        s = 1 / (1 + np.exp(-np.load(f)["logits"].astype(np.float64)))
        thr = calibrate_thresholds(s, t, m)
        r = evaluate_scores(s, t, m, thresholds=thr)
        by_metrics[key] = {"mAP": r["mAP"], "CF1": r["CF1"], "OF1": r["OF1"], "dataset": "voc:val"}
        if key != "fp32":
            by_thr[key] = [float(x) for x in thr]
        print(f"{key}: mAP {r['mAP']:.2f} CF1 {r['CF1']:.2f} OF1 {r['OF1']:.2f} (own thresholds)")
    ref, q = by_metrics.get("fp32"), by_metrics.get("int8")
    cpu = "fp32"
    if ref and q and ref["mAP"] - q["mAP"] <= MAX_MAP_DROP and ref["CF1"] - q["CF1"] <= MAX_CF1_DROP:
        cpu = "int8"
    card = dataclasses.replace(card, thresholds_by_precision=by_thr, cpu_precision=cpu,
                               metrics={**card.metrics, "by_precision": by_metrics})
    d = card.to_dict()
    Path(a.card).write_text(json.dumps(d, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {a.card} (cpu_precision {cpu}) and {graph} ({graph.stat().st_size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
