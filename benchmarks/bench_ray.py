"""Ray engine vs local engine on one machine: `imgtag tag --engine ray` against `imgtag tag`, same images and model.

    python benchmarks/bench_ray.py [--n 500] [--images DIR] [--model NAME|PATH] [--actors N] [--runtime torch]

Both run as the real CLI in a fresh subprocess (`-T LIST -o OUT.jsonl -t 0 --quiet`), so both pay interpreter
start, imports and model load; the Ray run also pays starting a local Ray instance and its actors (each loads
the model). The local engine runs twice: as is (torch uses every core) and with OMP_NUM_THREADS=1, which is
how each Ray actor runs (one CPU, one thread; process-level rather than intra-op parallelism). Printed: images/s
of each, the Ray overhead against the faster local run (extra seconds, and %), and the max |score difference|.
Ray is not meant to win on one machine; it spreads a big job over many.

Images: the first N of VOC2007 val (../shared/data/VOCdevkit/VOC2007, or $IMGTAG_VOC_ROOT), or --images DIR.
Model: --model; default the shipped default model, else a random-init EfficientNet-Lite2 352-px GAP model made
in a temp dir (speed does not depend on training).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import pick_model, voc_val  # noqa: E402  (benchmarks/ is on sys.path)


def images(args) -> list[str]:
    if args.images:
        from imgtag.io.discover import iter_image_paths
        return [str(p) for p in iter_image_paths([args.images])][: args.n]
    return voc_val(args.n)


def run(listfile: Path, out: Path, model: str, extra: list[str], env: dict | None = None) -> float:
    cmd = [sys.executable, "-m", "imgtag", "tag", "-T", str(listfile), "-o", str(out), "--on-existing", "overwrite",
           "-t", "0", "--quiet", "-m", model, *extra]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - t


def scores(out: Path) -> dict[str, dict[str, float]]:
    return {r["path"]: {d["label"]: d["score"] for d in r.get("labels", [])} for r in map(json.loads, out.read_text().splitlines())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--images", help="a folder of images instead of VOC2007 val")
    ap.add_argument("--model")
    ap.add_argument("--actors", type=int, default=os.cpu_count() or 1, help="Ray actors (default: CPU count)")
    ap.add_argument("--runtime", default="torch", help="torch | onnx (both engines)")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        paths = images(args)
        model = pick_model(args.model, tmp)
        listfile = tmp / "list.txt"
        listfile.write_text("\n".join(paths) + "\n")
        common = ["--runtime", args.runtime, "--batch-size", str(args.batch_size), "--device", "cpu"]
        t_local = run(listfile, tmp / "local.jsonl", model, common)
        t_local1 = run(listfile, tmp / "local1.jsonl", model, common, {"OMP_NUM_THREADS": "1"})
        t_ray = run(listfile, tmp / "ray.jsonl", model, [*common, "--engine", "ray", "--actors", str(args.actors)])
        a, b = scores(tmp / "local.jsonl"), scores(tmp / "ray.jsonl")
        assert a.keys() == b.keys(), "the engines tagged different images"
        diff = max(abs(a[p][k] - b[p].get(k, float("nan"))) for p in a for k in a[p])
    n = len(paths)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
          f"{n} images, model {Path(model).stem}, runtime {args.runtime}, batch {args.batch_size}")
    print(f"local engine : {t_local:6.1f} s  {n / t_local:6.1f} images/s")
    print(f"local, 1 thr : {t_local1:6.1f} s  {n / t_local1:6.1f} images/s  (OMP_NUM_THREADS=1: one torch thread)")
    print(f"ray engine   : {t_ray:6.1f} s  {n / t_ray:6.1f} images/s  ({args.actors} actors x 1 CPU, local Ray started by the run)")
    best = min(t_local, t_local1)
    print(f"ray overhead : {t_ray - best:+6.1f} s  ({100 * (t_ray / best - 1):+.0f}%) vs the faster local run; "
          f"max |score diff| {diff:.4f}")


if __name__ == "__main__":
    main()
