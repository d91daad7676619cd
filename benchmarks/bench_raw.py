"""RAW decoding cost: a 24 Mpx DNG (6000x4000 16-bit RGGB CFA + full-size JPEG preview) made with tests/dngmaker.py.

Times (median of --repeat rounds after a warm-up round, the rows taking turns; demosaics: repeat/3 rounds):
  extract_thumb   rawpy.imread(path) + extract_thumb(): what imgtag does first
  preview→448     imgtag.io.decode.load_resized(dng, 448): the whole tagging decode via the preview (JPEG draft)
  half demosaic   rawpy postprocess(half_size=True): the fallback without a usable preview
  full demosaic   rawpy postprocess(): the last resort
  jpeg→448        load_resized of the preview as a plain .jpg, for comparison

    python benchmarks/bench_raw.py [--repeat 3] [--size 6000x4000]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def timed(rows, repeat):
    """Median seconds per row; the rows take turns (round-robin), so a busy machine's load hits all alike."""
    runs = {name: [] for name, _ in rows}
    for r in range(repeat + 1):
        for name, fn in rows:
            t0 = time.perf_counter()
            fn()
            if r:  # round 0 warms up
                runs[name].append(time.perf_counter() - t0)
    return {name: statistics.median(v) for name, v in runs.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", default="6000x4000")
    args = ap.parse_args()
    w, h = map(int, args.size.split("x"))
    import rawpy
    from dngmaker import make_dng
    from PIL import Image

    from imgtag.io.decode import load_resized

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        src = tmp / "big.jpg"
        Image.open(ROOT / "tests" / "data" / "voc_000009_horse_person.jpg").convert("RGB").resize(
            (w, h), Image.Resampling.BICUBIC).save(src, quality=90)
        dng = make_dng(tmp / "big.dng", src)
        print(f"DNG {w}x{h}: {dng.stat().st_size / 2**20:.1f} MiB (preview {src.stat().st_size / 2**20:.1f} MiB)")

        def thumb():
            with rawpy.imread(str(dng)) as r:
                r.extract_thumb()

        def postprocess(half):
            with rawpy.imread(str(dng)) as r:
                r.postprocess(half_size=half, use_camera_wb=True, output_bps=8)

        rows = [("extract_thumb", thumb), ("preview→448", lambda: load_resized(dng, 448)),
                ("jpeg→448", lambda: load_resized(src, 448)),
                ("half demosaic", lambda: postprocess(True)), ("full demosaic", lambda: postprocess(False))]
        for name, sec in timed(rows[:3], args.repeat).items():
            print(f"{name:15s} {sec * 1000:9.1f} ms")
        for name, sec in timed(rows[3:], max(1, args.repeat // 3)).items():
            print(f"{name:15s} {sec * 1000:9.1f} ms")


if __name__ == "__main__":
    main()
