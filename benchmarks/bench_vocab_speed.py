"""CPU tagging throughput of the keyword model against the VOC-only 448-px model, in the same run (issue 13).

    nice -n 10 python benchmarks/bench_vocab_speed.py [--new lite2-448-keywords] [--old voc2007-lite2-448-csra-asl]
        [--images DIR] [-n 64] [--rounds 5] [--threads 2] [--workers 1]

Both models run with ONNX Runtime fp32 on the same images, ``--threads`` ORT threads, in alternating rounds (the
order flips every round, so a change of load on a shared box hits both alike). Two numbers per model, each the
median over rounds:

* end to end: ``Tagger.tag_paths`` (decode + resize in ``--workers`` processes, the model, scoring and selection:
  for the keyword model the vocabulary's scores, ancestors and paths), i.e. what ``imgtag tag`` does;
* model + selection: ``Tagger.tag_pixels`` on images decoded beforehand, in wall-clock images/s and in images per
  CPU second of this process (``time.process_time``: all its threads; the measure a busy shared box disturbs least).

Prints images/s and the ratio new/old (the target: >= 0.85).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's imgtag

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--new", default="lite2-448-keywords")
ap.add_argument("--old", default="voc2007-lite2-448-csra-asl")
ap.add_argument("--images", default="../shared/data/VOCdevkit/VOC2007/JPEGImages")
ap.add_argument("-n", type=int, default=64, help="images (the first N, sorted by name)")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--workers", type=int, default=1)
a = ap.parse_args()
os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))

import torch  # noqa: E402

torch.set_num_threads(a.threads)
from imgtag.io.decode import load_resized  # noqa: E402
from imgtag.runtime.tagger import Tagger  # noqa: E402

paths = sorted(str(p) for p in Path(a.images).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[: a.n]
taggers = {m: Tagger(m, device="cpu", runtime="onnx", precision="fp32", threads=a.threads, workers=a.workers,
                     batch_size=16) for m in (a.old, a.new)}
sizes = {t.size for t in taggers.values()}
assert len(sizes) == 1, "both models must run at one input size"
size = sizes.pop()
pixels = [load_resized(p, size) for p in paths]
names = [Path(p).name for p in paths]
for t in taggers.values():  # warm-up: ORT sessions, the decode pool, the vocabulary's matrices
    list(t.tag_paths(paths[:16]))
    t.tag_pixels(pixels[:16], names[:16])

e2e = {m: [] for m in taggers}
model_only = {m: [] for m in taggers}
model_cpu = {m: [] for m in taggers}
load0 = os.getloadavg()
for r in range(a.rounds):
    order = list(taggers) if r % 2 == 0 else list(taggers)[::-1]
    for m in order:
        t = taggers[m]
        t0 = time.perf_counter()
        n = sum(1 for p in t.tag_paths(paths) if p.error is None)
        e2e[m].append(n / (time.perf_counter() - t0))
        t0, c0 = time.perf_counter(), time.process_time()
        t.tag_pixels(pixels, names)
        model_only[m].append(len(pixels) / (time.perf_counter() - t0))
        model_cpu[m].append(len(pixels) / (time.process_time() - c0))
    print(f"round {r + 1}: " + ", ".join(f"{m} {e2e[m][-1]:.2f} / {model_only[m][-1]:.2f} img/s, "
                                         f"{model_cpu[m][-1]:.2f} img/CPU s" for m in taggers),
          flush=True)
load1 = os.getloadavg()

print(f"\n{len(paths)} images from {a.images}, {a.rounds} alternating rounds, ORT fp32, {a.threads} threads, "
      f"{a.workers} decode worker(s); load average {load0[0]:.1f} at start, {load1[0]:.1f} at end")
print(f"{'model':<32} {'end to end img/s':>17} {'model+select img/s':>19} {'img per CPU s':>14}")
for m in taggers:
    print(f"{m:<32} {statistics.median(e2e[m]):>17.2f} {statistics.median(model_only[m]):>19.2f} "
          f"{statistics.median(model_cpu[m]):>14.2f}")
r_e2e = statistics.median(e2e[a.new]) / statistics.median(e2e[a.old])
r_mod = statistics.median(model_only[a.new]) / statistics.median(model_only[a.old])
# per-round ratios: the two models of one round ran under nearly the same load
pr = [n / o for n, o in zip(e2e[a.new], e2e[a.old])]
r_cpu = statistics.median(model_cpu[a.new]) / statistics.median(model_cpu[a.old])
print(f"ratio {a.new} / {a.old}: end to end {r_e2e:.3f} (per round {min(pr):.3f}..{max(pr):.3f}), "
      f"model+select {r_mod:.3f}, per CPU second {r_cpu:.3f}")
