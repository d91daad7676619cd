"""End-to-end tagging speed: the real `imgtag tag` CLI against a plain PIL + torch loop, same images, same model.

    python benchmarks/bench_tag.py [--n 500] [--images DIR] [--model NAME|PATH] [--device cpu|cuda|auto]
                                   [--runtimes onnx torch] [--workers N] [--batch-size B]

* `imgtag tag` runs as a subprocess (`-T LIST -o OUT.jsonl -t 0 --quiet`, all K scores per image), once per
  runtime; a warm-up run on a few images first fills the ONNX export cache, so the timed runs only load it.
* The baseline is the usual hand-written loop, also in a fresh subprocess (so both sides pay interpreter start,
  imports and model load): PIL open → convert RGB → resize S×S bilinear → ToTensor → Normalize in a torch
  DataLoader with the same worker count and batch size, the model in eval fp32 NCHW (`torch.inference_mode`).
* Printed: images/s of each, the ratio, and the max |score difference| between them (only the resize path
  differs: JPEG draft mode + antialiased bilinear vs plain PIL bilinear, so ~1e-3 is expected; scores in the
  JSONL are rounded to 4 decimals) and between the two runtimes.

Images: the first N of VOC2007 val (../shared/data/VOCdevkit/VOC2007, or $IMGTAG_VOC_ROOT), or --images DIR.
Model: --model; default the shipped default model, else a random-init EfficientNet-Lite2 352-px GAP model made
in a temp dir (speed does not depend on training; the scores are then meaningless but still comparable).
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

import numpy as np

from _common import pick_model, voc_val  # noqa: E402  (benchmarks/ is on sys.path)


def run_cli(listfile: Path, out: Path, model: str, runtime: str, args) -> float:
    cmd = [sys.executable, "-m", "imgtag", "tag", "-T", str(listfile), "-o", str(out), "--on-existing", "overwrite",
           "-t", "0", "--quiet", "-m", model, "--runtime", runtime, "--device", args.device]
    cmd += ["--workers", str(args.workers)] if args.workers is not None else []
    cmd += ["--batch-size", str(args.batch_size)] if args.batch_size else []
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    return time.perf_counter() - t


def cli_scores(out: Path, labels: list[str]) -> dict[str, np.ndarray]:
    res = {}
    for line in out.read_text().splitlines():
        r = json.loads(line)
        s = {d["label"]: d["score"] for d in r.get("labels", [])}
        res[r["path"]] = np.array([s.get(lab, np.nan) for lab in labels], np.float32)
    return res


def baseline(listfile: str, model: str, out: str, device: str, workers: int, batch_size: int) -> None:
    """The plain loop (runs in its own process): PIL + torchvision transforms + fp32 NCHW eval."""
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    from imgtag.models.model import load_model

    dev = torch.device(device)
    net, card = load_model(model, dev)
    S = card.input_size
    tf = T.Compose([T.Resize((S, S), interpolation=T.InterpolationMode.BILINEAR), T.ToTensor(),
                    T.Normalize(card.mean, card.std)])
    paths = Path(listfile).read_text().splitlines()

    class Files(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as im:
                return tf(im.convert("RGB"))

    kw = dict(num_workers=workers, prefetch_factor=4) if workers > 0 else {}
    scores = []
    with torch.inference_mode():
        for x in DataLoader(Files(), batch_size=batch_size, pin_memory=dev.type == "cuda", **kw):
            scores.append(torch.sigmoid(net(x.to(dev))).float().cpu().numpy())
    np.save(out, np.concatenate(scores))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=500, help="number of images (default 500)")
    ap.add_argument("--images", help="a folder of images instead of VOC2007 val")
    ap.add_argument("--model", help="model name or path (default: the shipped default, else a random Lite2)")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda")
    ap.add_argument("--runtimes", nargs="+", default=None, help="default: onnx torch on CPU, torch on CUDA")
    ap.add_argument("--workers", type=int, default=None, help="decode workers (default: the CLI's default)")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the CLI's default (16 CPU, 64 CUDA)")
    ap.add_argument("--_baseline", nargs=6, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._baseline:
        lf, model, out, dev, w, b = args._baseline
        return baseline(lf, model, out, dev, int(w), int(b))

    import torch

    from imgtag.card import read_card
    from imgtag.runtime.loader import default_workers
    from imgtag.io.discover import iter_image_paths

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    runtimes = args.runtimes or (["torch"] if cuda else ["onnx", "torch"])
    workers = default_workers() if args.workers is None else args.workers
    batch = args.batch_size or (64 if cuda else 16)
    tmp = Path(tempfile.mkdtemp(prefix="bench_tag_"))
    paths = sorted(map(str, iter_image_paths([args.images])))[: args.n] if args.images else voc_val(args.n)
    model = pick_model(args.model, tmp)
    card = read_card(model)
    listfile = tmp / "files.txt"
    listfile.write_text("\n".join(paths) + "\n")
    (tmp / "warm.txt").write_text("\n".join(paths[:4]) + "\n")
    dev_name = torch.cuda.get_device_name(0) if cuda else f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    print(f"bench: {len(paths)} images, model {card.name} ({card.architecture['backbone']} + {card.architecture['head']}, "
          f"{card.input_size} px), device {args.device} ({dev_name}), workers {workers}, batch {batch}, "
          f"load average {os.getloadavg()[0]:.1f}", file=sys.stderr)

    rates, scores = {}, {}
    for rt in runtimes:  # warm-up: ONNX export cache, page cache
        run_cli(tmp / "warm.txt", tmp / "warm.jsonl", model, rt, args)
    for rt in runtimes:
        dt = run_cli(listfile, tmp / f"{rt}.jsonl", model, rt, args)
        rates[f"imgtag tag --runtime {rt}"] = len(paths) / dt
        scores[rt] = cli_scores(tmp / f"{rt}.jsonl", card.labels)
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--_baseline", str(listfile), model, str(tmp / "base.npy"), args.device,
                    str(workers), str(batch)], check=True)
    rates["plain PIL + torch fp32 loop"] = len(paths) / (time.perf_counter() - t)
    base = np.load(tmp / "base.npy")

    base_rate = rates["plain PIL + torch fp32 loop"]
    print(f"\n{'':34s} images/s   × plain loop   (load average now {os.getloadavg()[0]:.1f})")
    for k, v in rates.items():
        print(f"{k:34s} {v:8.1f}   {v / base_rate:5.2f}×")
    for rt in runtimes:
        a = np.stack([scores[rt][p] for p in paths])
        print(f"max |score diff| imgtag --runtime {rt} vs plain loop: {np.nanmax(np.abs(a - base)):.2e}")
    if len(runtimes) == 2:
        a, b = (np.stack([scores[rt][p] for p in paths]) for rt in runtimes)
        print(f"max |score diff| --runtime {runtimes[0]} vs {runtimes[1]}: {np.nanmax(np.abs(a - b)):.2e} (JSONL rounds to 4 decimals)")


if __name__ == "__main__":
    main()
