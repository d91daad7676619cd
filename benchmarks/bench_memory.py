"""Page faults and kernel time of a CPU forward pass, with and without imgtag's allocator settings.

    python benchmarks/bench_memory.py [--batch 32] [--size 352] [--iters 3] [--threads 2]

Each setting runs in a fresh process (torch reads THP_MEM_ALLOC_ENABLE once, at its first allocation): the
Lite2 backbone forward (random weights, fp32 channels_last, inference mode), one warm-up pass, then ``--iters``
timed passes; it prints wall seconds, user/kernel CPU seconds and minor page faults per setting.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import imgtag, torch, timm
from imgtag.runtime.memory import keep_freed_memory
keep_freed_memory()
batch, size, iters, threads = map(int, sys.argv[1:5])
torch.set_num_threads(threads)
m = timm.create_model("tf_efficientnet_lite2").eval().to(memory_format=torch.channels_last)
x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    m(x)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(iters):
        m(x)
    r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
print(json.dumps({"wall": t1 - t0, "user": r1.ru_utime - r0.ru_utime, "sys": r1.ru_stime - r0.ru_stime,
                  "faults": r1.ru_minflt - r0.ru_minflt, "images_per_s": batch * iters / (t1 - t0)}))
"""

SETTINGS = {
    "glibc/torch defaults": {"IMGTAG_MALLOC_TUNE": "0", "THP_MEM_ALLOC_ENABLE": "0"},
    "imgtag default (malloc thresholds)": {"IMGTAG_MALLOC_TUNE": "1", "THP_MEM_ALLOC_ENABLE": "0"},
    "thresholds + THP_MEM_ALLOC_ENABLE=1": {"IMGTAG_MALLOC_TUNE": "1", "THP_MEM_ALLOC_ENABLE": "1"},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=352)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    print(f"Lite2 forward, batch {a.batch}, {a.size} px, {a.iters} passes, {a.threads} threads, os.cpu_count()={os.cpu_count()}")
    print("| setting | wall s | user s | kernel s | minor faults | images/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, env in SETTINGS.items():
        out = subprocess.run([sys.executable, "-c", CHILD, str(a.batch), str(a.size), str(a.iters), str(a.threads)],
                             env={**os.environ, **env}, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(f"| {name} | {r['wall']:.2f} | {r['user']:.2f} | {r['sys']:.2f} | {r['faults']} | {r['images_per_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
