"""Precision × runtime on VOC2007 val: model-only images/s, mAP, and CF1 at each precision's OWN thresholds.

    nice -n 10 python benchmarks/bench_precision.py [--model voc2007-lite2-448-csra-asl]
        [--variants ort-fp32,ort-int8,ov-f32,ov-bf16,ov-int8] [--speed-n 256] [--threads 2] [--batch 16]
        [--sweep]

One decode of the val split into a uint8 memmap (.cache/, git-ignored), then every variant runs the SAME pixels:
* ``ort-fp32``: the graph ``imgtag tag`` runs today (imgtag.engine.onnx.export_bytes), ONNX Runtime.
* ``ort-int8``: ``imgtag export --int8`` (static QDQ, 128 VOC train images, MinMax), ONNX Runtime.
* ``ov-f32`` / ``ov-bf16``: the fp32 ONNX graph compiled by OpenVINO with INFERENCE_PRECISION_HINT f32 / bf16.
* ``ov-int8``: the int8 QDQ ONNX graph compiled by OpenVINO (it folds QDQ into its own int8 kernels).
Logits per variant are cached in .cache/bench_precision/<model>-<variant>.npz (delete to re-run).
Per variant: max |logit − ort-fp32|, mAP, CF1/OF1 at the card's (fp32) thresholds, and CF1/OF1 at thresholds
calibrated on that variant's own val scores (imgtag.engine.metrics.calibrate_thresholds, the rule the card uses).
Speed: model-only images/s on the first ``--speed-n`` val images (best of 2 passes); ``--sweep`` adds threads
1/2 × batch 1/8/16/32. ``uptime`` load averages are printed before and after: the box is shared.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's imgtag
CACHE = ROOT / ".cache" / "bench_precision"


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def decode_val(voc: str, size: int, paths: list[str]) -> np.ndarray:
    """uint8 N×3×S×S val pixels, decoded once exactly as tagging does (read_chw), cached as a memmap."""
    f = CACHE / f"voc_val_{size}_{len(paths)}.u8"
    shape = (len(paths), 3, size, size)
    if f.is_file() and f.stat().st_size == int(np.prod(shape)):
        return np.memmap(f, np.uint8, "r", shape=shape)
    from imgtag.runtime.loader import read_chw

    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".part")
    mm = np.memmap(tmp, np.uint8, "w+", shape=shape)
    t = time.perf_counter()
    for i, p in enumerate(paths):
        mm[i] = read_chw(p, size).numpy()
    mm.flush()
    del mm
    tmp.rename(f)
    print(f"decoded {len(paths)} val images in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return np.memmap(f, np.uint8, "r", shape=shape)


def graphs(model: str, voc: str) -> dict[str, Path]:
    """fp32 and int8 ONNX graphs of ``model`` (cached by card name)."""
    from imgtag.runtime.onnx import export_bytes, quantize_int8
    from imgtag.models.model import load_model

    net, card = load_model(model)
    out = {"fp32": CACHE / f"{card.name}-fp32.onnx", "int8": CACHE / f"{card.name}-int8.onnx"}
    CACHE.mkdir(parents=True, exist_ok=True)
    if not out["fp32"].is_file():
        out["fp32"].write_bytes(export_bytes(net, card, dynamic_hw=False))
    if not out["int8"].is_file():
        ids = (Path(voc) / "ImageSets/Main/train.txt").read_text().split()
        t = time.perf_counter()
        quantize_int8(net, card, out["int8"], [f"{voc}/JPEGImages/{i}.jpg" for i in ids], n=128)
        print(f"int8 export + calibration: {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return out


def make_runner(variant: str, g: dict[str, Path], threads: int):
    """``f(uint8 N×3×S×S) -> float32 logits``."""
    rt, prec = variant.split("-")
    if rt == "ort":
        import onnxruntime as ort

        from imgtag.runtime.onnx import _session

        sess = _session(ort, g["int8" if prec == "int8" else "fp32"], threads)
        return lambda x: sess.run(None, {"images": np.ascontiguousarray(x)})[0]
    import openvino as ov

    core = ov.Core()
    cfg = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    if prec in ("f32", "bf16"):
        cfg["INFERENCE_PRECISION_HINT"] = prec
    else:
        cfg["INFERENCE_PRECISION_HINT"] = "f32"  # non-quantised parts stay f32 (bf16 is not native on AVX2)
    cm = core.compile_model(core.read_model(str(g["int8" if prec == "int8" else "fp32"])), "CPU", cfg)
    req = cm.create_infer_request()
    return lambda x: req.infer({0: np.ascontiguousarray(x)}, share_inputs=True)[0].copy()


def all_logits(run, px: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([run(px[i:i + batch]) for i in range(0, len(px), batch)])


def speed(run, px: np.ndarray, batch: int, passes: int = 2) -> float:
    run(px[:batch])  # warm-up
    best = 0.0
    for _ in range(passes):
        t = time.perf_counter()
        for i in range(0, len(px), batch):
            run(px[i:i + batch])
        best = max(best, len(px) / (time.perf_counter() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="voc2007-lite2-448-csra-asl", help="model name or card path")
    ap.add_argument("--voc", default=os.environ.get("IMGTAG_VOC_ROOT") or str(ROOT.parent.parent / "shared/data/VOCdevkit/VOC2007"))
    ap.add_argument("--variants", default="ort-fp32,ort-int8,ov-f32,ov-bf16,ov-int8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--eval-threads", type=int, default=1, help="threads for the accuracy passes (1: best on a loaded box)")
    ap.add_argument("--speed-n", type=int, default=256)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--no-eval", action="store_true", help="speed only")
    ap.add_argument("--parity-only", default="", help="variants run on the first --parity-n val images only "
                    "(max |Δlogit| vs ort-fp32, no mAP): for graphs expected to match fp32")
    ap.add_argument("--parity-n", type=int, default=256)
    ap.add_argument("--json", help="also write the rows here")
    args = ap.parse_args()
    if not Path(args.voc).is_dir():
        args.voc = "/work/shared/data/VOCdevkit/VOC2007"

    from imgtag.card import read_card, resolve_model
    from imgtag.data import build_dataset
    from imgtag.engine.metrics import calibrate_thresholds, evaluate_scores

    card = read_card(resolve_model(args.model)[1])
    ds = build_dataset("voc", args.voc, "val")
    t, m = ds.columns(card.labels)
    print(f"load before: {load_avg()}  ({os.cpu_count()} CPUs)", flush=True)
    px = decode_val(args.voc, int(card.input_size), [str(p) for p in ds.paths])
    g = graphs(args.model, args.voc)
    rows, ref = [], None
    for v in args.variants.split(","):
        run = make_runner(v, g, args.eval_threads)
        row = {"variant": v}
        if v in args.parity_only.split(","):
            f = CACHE / f"{card.name}-ort-fp32.npz"
            ref = np.load(f)["logits"][:args.parity_n] if f.is_file() else None
            logits = all_logits(run, px[:args.parity_n], args.batch)
            row.update(parity_images=args.parity_n,
                       max_abs_vs_ort_fp32=None if ref is None else float(np.abs(logits - ref).max()),
                       max_abs_logit_ref=None if ref is None else float(np.abs(ref).max()))
        elif not args.no_eval:
            f = CACHE / f"{card.name}-{v}.npz"
            if f.is_file():
                logits = np.load(f)["logits"]
            else:
                t0 = time.perf_counter()
                logits = all_logits(run, px, args.batch)
                np.savez(f, logits=logits)
                print(f"{v}: {len(px)} val images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            rf = CACHE / f"{card.name}-ort-fp32.npz"
            ref = np.load(rf)["logits"] if rf.is_file() else None
            s = 1 / (1 + np.exp(-logits.astype(np.float64)))
            own = calibrate_thresholds(s, t, m)
            at_card = evaluate_scores(s, t, m, thresholds=np.asarray(card.thresholds))
            at_own = evaluate_scores(s, t, m, thresholds=own)
            row.update(mAP=at_own["mAP"], CF1_card=at_card["CF1"], OF1_card=at_card["OF1"],
                       CF1_own=at_own["CF1"], OF1_own=at_own["OF1"], thresholds_own=[float(x) for x in own],
                       max_abs_vs_ort_fp32=None if ref is None else float(np.abs(logits - ref).max()))
        sp = px[:args.speed_n]
        run = make_runner(v, g, args.threads)
        row[f"img_s_t{args.threads}_b{args.batch}"] = speed(run, sp, args.batch)
        if args.sweep:
            for th in (1, 2):
                r2 = make_runner(v, g, th)
                for b in (1, 8, 16, 32):
                    row[f"img_s_t{th}_b{b}"] = speed(r2, sp[:64] if b == 1 else sp, b)
        row["load_after"] = load_avg()
        rows.append(row)
        print(json.dumps({k: (round(x, 4) if isinstance(x, float) else x) for k, x in row.items() if k != "thresholds_own"}),
              flush=True)
    print(f"load after: {load_avg()}")
    print("\n| variant | mAP | CF1 own thr | OF1 own thr | CF1 card thr | max abs Δlogit vs ORT fp32 | images/s |")
    print("|---|---|---|---|---|---|---|")
    key = f"img_s_t{args.threads}_b{args.batch}"
    for r in rows:
        d = r.get("max_abs_vs_ort_fp32")
        print(f"| {r['variant']} | {r.get('mAP', float('nan')):.2f} | {r.get('CF1_own', float('nan')):.2f} | "
              f"{r.get('OF1_own', float('nan')):.2f} | {r.get('CF1_card', float('nan')):.2f} | "
              f"{'—' if d is None else f'{d:.2g}'} | {r[key]:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
