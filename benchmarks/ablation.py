"""Head × loss ablation on VOC2007 (train → val) with one recipe; prints a markdown table.

    python benchmarks/ablation.py [--epochs 12] [--seeds 0 1] [--rows gap:bce csra:bce q2l:asl@3e-4 ...] [--out runs/ablation]

A row is ``head:loss[:neck][@lr]``; ``@lr`` overrides ``--lr`` for that row (Query2Label's transformer needs ~10×
less than the linear heads) and is part of the run's name.

Every row is trained by the real CLI (`imgtag train`), with the same recipe and seeds, so the rows differ only in
head and loss. The recipe is the CPU one: EfficientNet-Lite2 (ImageNet) at 352 px, the first 8 stages frozen and
cached (original + mirrored image), the last conv stage + head trained. Runs already finished (model card
present) are reused, so the script can be interrupted and re-run. Inference speed is measured per model by
benchmarks/bench_models.py (same card files).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROWS = ["gap:bce", "gap:focal", "gap:asl", "gap:am-binary", "csra:bce", "csra:asl", "q2l:bce", "q2l:asl",
        "gcn:bce", "gcn:am-binary", "mldecoder:bce", "mldecoder:asl"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rows", nargs="+", default=ROWS, help="head:loss[:neck][@lr] items")
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--freeze", type=int, default=-1, help="frozen backbone stages (-1: all, 8: all but the last conv)")
    ap.add_argument("--extra", default="", help="extra imgtag train arguments for every row")
    a = ap.parse_args()
    table = []
    for row in a.rows:
        spec, _, row_lr = row.partition("@")
        head, loss, *neck = spec.split(":")
        lr = float(row_lr) if row_lr else a.lr
        maps, cf1, of1 = [], [], []
        for seed in a.seeds:
            name = f"{head}-{loss}{'-' + neck[0] if neck else ''}{'-lr' + row_lr if row_lr else ''}-s{seed}"
            card = Path(a.out) / name / f"{name}.json"
            if not card.exists():
                cmd = ["imgtag", "train", "--head", head, "--loss", loss, "--neck", neck[0] if neck else "none",
                       "--freeze-stages", str(a.freeze), "--augment", "flip", "--epochs", str(a.epochs), "--seed", str(seed),
                       "--lr", str(lr), "--backbone-lr-mult", "0.1", "-b", "32", "--patience", "4",
                       "--out", str(card.parent), "--name", name, *a.extra.split()]
                print("$", " ".join(cmd), file=sys.stderr, flush=True)
                subprocess.run(cmd, check=True)
            m = json.loads(card.read_text())["metrics"]
            maps.append(m["mAP"])
            cf1.append(m["at_calibrated"]["CF1"])
            of1.append(m["at_calibrated"]["OF1"])
        sd = statistics.stdev(maps) if len(maps) > 1 else 0.0
        table.append((head + (f" (lr {row_lr})" if row_lr else ""), loss, neck[0] if neck else "none", statistics.mean(maps), sd, statistics.mean(cf1), statistics.mean(of1), len(maps)))
    print("| head | loss | neck | VOC val mAP | ± sd | CF1 | OF1 | runs |")
    print("|---|---|---|---|---|---|---|---|")
    for h, l, n, m, sd, c, o, r in table:
        print(f"| {h} | {l} | {n} | {m:.2f} | {sd:.2f} | {c:.2f} | {o:.2f} | {r} |")


if __name__ == "__main__":
    main()
