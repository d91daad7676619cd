"""Parameters and inference images/s of model files (the model alone, random uint8 input, no decoding).

    python benchmarks/bench_models.py runs/ablation/*/*.json [--batch 16] [--iters 5] [--threads N]

Prints a markdown table: model, head, params (M), images/s (torch eager fp32 channels_last on this CPU, or
bf16 on CUDA). Decoding is left out so the numbers compare heads, not JPEG libraries.
"""
from __future__ import annotations

import argparse
import time

import torch

from imgtag.models.model import TaggingModel, load_model


def bench(spec: str, batch: int, iters: int, device: str) -> tuple[str, str, float, float]:
    net, card = load_model(spec, device)
    m = TaggingModel(net, card.mean, card.std).eval().to(device).to(memory_format=torch.channels_last)
    x = torch.randint(0, 256, (batch, 3, card.input_size, card.input_size), dtype=torch.uint8, device=device)
    params = sum(p.numel() for p in net.parameters()) / 1e6
    with torch.inference_mode(), torch.autocast("cuda", torch.bfloat16, enabled=device == "cuda"):
        m(x)
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(iters):
            m(x)
        if device == "cuda":
            torch.cuda.synchronize()
    return card.name, card.architecture["head"], params, batch * iters / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"device {a.device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {a.batch}")
    print("| model | head | params (M) | images/s |\n|---|---|---|---|")
    for spec in a.models:
        name, head, params, ips = bench(spec, a.batch, a.iters, a.device)
        print(f"| {name} | {head} | {params:.2f} | {ips:.1f} |", flush=True)


if __name__ == "__main__":
    main()
