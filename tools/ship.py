"""Copy a trained model into the package's shipped models (imgtag/weights/) as fp16 safetensors + card, and
make it the default.

    python tools/ship.py runs/default/voc2007-lite2-csra-asl.json [--default] [--recalibrate VOC_ROOT]

The card (recipe, metrics, thresholds) is kept; the weights are stored in float16 (half the size) and are
loaded back as float32. ``--recalibrate`` recomputes the per-class thresholds (and the card's calibrated CF1/OF1)
from the shipped fp16 file's scores on VOC2007 val with the current rule (imgtag.engine.metrics.calibrate_thresholds),
for a model trained before that rule changed. Re-measure the shipped file with `imgtag eval` and record it in
benchmarks/RESULTS.md.
"""
import argparse
from pathlib import Path

import torch

from imgtag.card import portable_recipe, save_model
from imgtag.models.model import load_model

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--default", action="store_true")
ap.add_argument("--recalibrate", metavar="VOC_ROOT", help="recompute thresholds on this VOC2007 folder's val split")
a = ap.parse_args()
here = Path(__file__).resolve().parents[1] / "imgtag" / "weights"
model, card = load_model(a.model)
card = portable_recipe(card)
w, c = save_model(model, card, here / card.name, dtype=torch.float16)
print(f"wrote {w} ({w.stat().st_size / 2**20:.1f} MiB) and {c}")
if a.default:
    (here / "DEFAULT").write_text(card.name + "\n")
    print(f"default model: {card.name}")
if a.recalibrate:
    import dataclasses

    from imgtag.data import build_dataset
    from imgtag.engine.metrics import calibrate_thresholds, evaluate_scores
    from imgtag.engine.predict import Tagger

    ds = build_dataset("voc", a.recalibrate, "val")
    tagger = Tagger(str(c), runtime="torch")
    t, m = ds.columns(card.labels)
    scores, errors = tagger.score_paths(ds.paths)
    if errors:
        raise SystemExit(f"{len(errors)} val images failed, e.g. {errors[0]}")
    thr = calibrate_thresholds(scores, t, m)
    at_cal = evaluate_scores(scores, t, m, thresholds=thr)
    metrics = {**card.metrics, "at_calibrated": {k: at_cal[k] for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")}}
    card = dataclasses.replace(card, thresholds=[float(x) for x in thr], metrics=metrics)
    save_model(load_model(str(c))[0], card, here / card.name, dtype=torch.float16)
    print(f"recalibrated on voc:val: mAP {at_cal['mAP']:.2f}, CF1 {at_cal['CF1']:.2f}, OF1 {at_cal['OF1']:.2f} at the new thresholds")
