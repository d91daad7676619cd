"""Peak memory of decoding one large 16-bit PNG, as a decode worker does (issue 16, F9).

    python benchmarks/bench_decode16.py [SIDE]   # default 13000: a legal 13000x13000 16-bit PNG (~1.3 MB file)

Each measurement runs in a fresh process and prints its peak RSS above the process's baseline (after imports),
in bytes per pixel and GB. Before the fix `_to_uint8` went through int64: 4.1 GB at 13000x13000.
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import resource, sys, time
from imgtag.io.decode import load_resized, load_pil
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t = time.time()
{call}
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(peak - base, time.time() - t)
"""


def main() -> None:
    side = int(sys.argv[1]) if len(sys.argv) > 1 else 13000
    import numpy as np
    from PIL import Image

    with tempfile.TemporaryDirectory() as d:
        png = Path(d) / "deep.png"
        row = np.linspace(0, 65535, side).astype(np.uint16)
        Image.fromarray(np.broadcast_to(row, (side, side)).copy()).save(png)
        print(f"{side}x{side} 16-bit PNG, {png.stat().st_size / 1e6:.1f} MB file, {side * side / 1e6:.0f} Mpixels")
        for name, call in (("load_resized (tagging)", f"load_resized({str(png)!r}, 448)"),
                           ("load_pil (full-size RGB)", f"load_pil({str(png)!r})")):
            out = subprocess.run([sys.executable, "-c", CHILD.format(call=call)], capture_output=True, text=True,
                                 cwd=Path(__file__).resolve().parents[1])
            if out.returncode:
                print(f"{name}: failed: {out.stderr.strip().splitlines()[-1]}")
                continue
            extra, secs = out.stdout.split()
            extra = int(extra)
            print(f"{name}: +{extra / 1e9:.2f} GB peak RSS ({extra / side / side:.1f} bytes/pixel), {float(secs):.1f} s")


if __name__ == "__main__":
    main()
