"""The ablation table from finished runs, with CF1/OF1 re-derived uniformly from each model's val scores.

    python benchmarks/ablation_table.py runs/ablation [--rows gap-bce csra-asl q2l-asl-lr3e-4 ...]

For every run name ``ROW-sSEED`` under the folder (a model card ``ROW-sSEED/ROW-sSEED.json``), loads the model,
scores VOC2007 val from the cached frozen-backbone features (the runs freeze the whole backbone, so the cache that
training wrote holds exactly the head's input; nothing is decoded), and computes mAP and CF1/OF1 at per-class
thresholds calibrated on those scores with imgtag's current rule — so rows trained before a change of the
calibration rule are still comparable. Prints mean ± sample sd over seeds, and the parameter count.
"""
from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--rows", nargs="*", help="row names (run names without -sSEED), in table order; default all")
    a = ap.parse_args()
    from imgtag.card import read_card
    from imgtag.data import build_dataset
    from imgtag.engine.features import cached_features
    from imgtag.runtime.loader import View
    from imgtag.engine.metrics import calibrate_thresholds, evaluate_scores
    from imgtag.models.model import load_model

    ds = build_dataset("voc", ROOT.parent / "shared" / "data" / "VOCdevkit" / "VOC2007", "val")
    runs = defaultdict(list)
    for card in sorted(Path(a.folder).glob("*/*.json")):
        m = re.fullmatch(r"(.+)-s(\d+)", card.stem)
        if m and card.parent.name == card.stem:
            runs[m.group(1)].append(card)
    feats_cache: dict = {}
    print("| run | seeds | VOC val mAP | ± sd | CF1 | ± sd | OF1 | ± sd | params (M) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in a.rows or sorted(runs):
        maps, cf1, of1, params = [], [], [], 0.0
        for path in runs.get(row, []):
            card = read_card(path)
            if card.recipe.get("freeze_stages") != -1:
                raise SystemExit(f"{path}: not a frozen-backbone run")
            net, _ = load_model(str(path))
            stages = net.stage_list()
            key = (card.architecture["backbone"], card.input_size)
            if key not in feats_cache:
                feats_cache[key] = cached_features(stages, len(stages), ds.paths, card.input_size, card.mean, card.std, View(0),
                                                   key_parts={"backbone": key[0], "pretrained": "imagenet"})
            _, rest = net.split(-1)
            with torch.inference_mode():
                s = torch.cat([torch.sigmoid(rest(f.float())) for f in feats_cache[key].split(64)]).numpy()
            t, k = ds.columns(card.labels)
            r = evaluate_scores(s, t, k, thresholds=calibrate_thresholds(s, t, k))
            maps.append(r["mAP"]), cf1.append(r["CF1"]), of1.append(r["OF1"])
            params = sum(p.numel() for p in net.parameters()) / 1e6
        if not maps:
            continue
        sd = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")  # noqa: E731
        print(f"| {row} | {len(maps)} | {np.mean(maps):.2f} | {sd(maps):.2f} | {np.mean(cf1):.2f} | {sd(cf1):.2f} | "
              f"{np.mean(of1):.2f} | {sd(of1):.2f} | {params:.2f} |", flush=True)


if __name__ == "__main__":
    main()
