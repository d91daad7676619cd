"""`imgtag --help` start-up time: median wall and CPU (user+sys) seconds of N fresh processes.

    python benchmarks/bench_help.py [--n 9] [--cmd "python -m imgtag --help"]

CPU time is printed beside wall time because on a shared box the wall time mostly measures the other jobs;
the bare interpreter (`python -c pass`) is printed as the floor. The target (issue 17) is a median ≤ 0.3 s.
"""
from __future__ import annotations

import argparse
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(cmd: list[str], n: int) -> tuple[float, float]:
    walls, cpus = [], []
    for _ in range(n):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, cwd=ROOT)
        walls.append(time.perf_counter() - t)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=9)
    ap.add_argument("--cmd", default=f"{sys.executable} -m imgtag --help")
    a = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for name, cmd in (("python -c pass", [sys.executable, "-c", "pass"]), (a.cmd, shlex.split(a.cmd))):
        w, c = measure(cmd, a.n)
        print(f"{name}: median wall {w:.3f} s, median CPU {c:.3f} s ({a.n} runs)")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
