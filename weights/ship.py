"""Copy a trained model into weights/ as fp16 safetensors + card, and make it the default.

    python weights/ship.py runs/default/voc2007-lite2-csra-asl.json [--default]

The card (recipe, metrics, thresholds) is kept; the weights are stored in float16 (half the size) and are
loaded back as float32. Re-measure the shipped file with `imgtag eval` and record it in benchmarks/RESULTS.md.
"""
import argparse
from pathlib import Path

import torch

from imgtag.card import save_model
from imgtag.models.model import load_model

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--default", action="store_true")
a = ap.parse_args()
here = Path(__file__).resolve().parent
model, card = load_model(a.model)
w, c = save_model(model, card, here / card.name, dtype=torch.float16)
print(f"wrote {w} ({w.stat().st_size / 2**20:.1f} MiB) and {c}")
if a.default:
    (here / "DEFAULT").write_text(card.name + "\n")
    print(f"default model: {card.name}")
