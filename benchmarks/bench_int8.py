"""int8 vs fp32 ONNX on VOC2007 val: mAP, CF1/OF1 (the card's thresholds) and images/s, same Tagger pipeline.

    python benchmarks/bench_int8.py --model runs/t_gap/gap.json [--calib-count 128] [--limit N]

The int8 graph is made by the real CLI (`imgtag export --int8 --calib <VOC train list>`), then the Tagger's
ONNX Runtime session is swapped for it, so decoding, batching and metrics are exactly those of `imgtag eval`.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--voc", default=os.environ.get("IMGTAG_VOC_ROOT") or str(ROOT.parent / "shared/data/VOCdevkit/VOC2007"))
    ap.add_argument("--calib-count", type=int, default=128)
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()

    import onnxruntime as ort

    from imgtag.engine.evaluate import evaluate
    from imgtag.runtime.onnx import _session
    from imgtag.runtime.tagger import Tagger

    tmp = Path(tempfile.mkdtemp(prefix="bench_int8_"))
    ids = (Path(args.voc) / "ImageSets/Main/train.txt").read_text().split()
    (tmp / "train.txt").write_text("".join(f"{args.voc}/JPEGImages/{i}.jpg\n" for i in ids))
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "imgtag", "export", args.model, "--int8", "--calib", str(tmp / "train.txt"),
                    "--calib-count", str(args.calib_count), "-o", str(tmp / "int8.onnx")], check=True)
    print(f"int8 export + calibration: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    tagger = Tagger(args.model, device="cpu", runtime="onnx")
    print(f"| precision | mAP | CF1 | OF1 | images/s | load avg |\n|---|---|---|---|---|---|")
    for name in ("fp32", "int8"):
        if name == "int8":
            tagger.runner.session = _session(ort, tmp / "int8.onnx", tagger.runner.threads)
        t = time.perf_counter()
        r = evaluate(tagger, "voc", args.voc, "val", limit=args.limit)
        dt = time.perf_counter() - t
        print(f"| {name} | {r['mAP']:.2f} | {r['CF1']:.2f} | {r['OF1']:.2f} | {r['images'] / dt:.1f} | "
              f"{os.getloadavg()[0]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
