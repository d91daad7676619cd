"""Cache what the vocabulary design needs (one pass per set): the shipped VOC model and the original ImageNet
EfficientNet-Lite2 share the frozen prefix (stem + blocks 0-4), so one prefix pass feeds both tails.

Per image it stores: pooled 1280-d conv_head features of the fine-tuned model (448 px), its VOC logits, the
original model's ImageNet logits at 448 px (same prefix, original tail = design (c)) and at 260 px (its training
size), for the views asked. Writes .cache/feats_<set>.npz.

    nice -n 10 python benchmarks/vocab_features.py sample        # imagenet-sample (smoke set, never fitted on)
    nice -n 10 python benchmarks/vocab_features.py voc-train --views 0,1,2
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import timm
import torch

from imgtag.engine.loader import View, iter_batches, normalize
from imgtag.models.backbone import load_pretrained
from imgtag.models.model import load_model

VOC = Path("/work/shared/data/VOCdevkit/VOC2007")
SAMPLE = Path("/work/shared/data/imagenet-sample")


def paths_for(name: str) -> list[Path]:
    if name == "sample":
        return sorted(SAMPLE.glob("n*.jpg"))
    split = name.split("-", 1)[1]
    ids = (VOC / "ImageSets/Main" / f"{split}.txt").read_text().split()
    return [VOC / "JPEGImages" / f"{i}.jpg" for i in ids]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("set")
    ap.add_argument("--views", default="0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-b", type=int, default=16)
    ap.add_argument("--stride", type=int, default=1, help="every n-th image only")
    ap.add_argument("--no-260", action="store_true", help="skip the original model at 260 px")
    ap.add_argument("--no-448", action="store_true", help="skip the original tail at 448 px")
    ap.add_argument("--ft-only", action="store_true", help="only the shipped model (pooled features, VOC logits)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ft, card = load_model(None)
    orig = timm.create_model("tf_efficientnet_lite2", pretrained=False)
    load_pretrained(orig, "tf_efficientnet_lite2", "imagenet")
    orig.eval()
    fb, ob = ft.backbone.body, orig
    # the frozen prefix must be identical (the shipped weights are float16: compare with a tolerance)
    for (k, v), (k2, v2) in zip(list(fb.state_dict().items()), list(ob.state_dict().items())):
        if k.startswith("blocks.5"):
            break
        assert k == k2 and torch.allclose(v.float(), v2.float(), rtol=2e-3, atol=2e-3), k
    prefix = lambda x: fb.blocks[:5](fb.bn1(fb.conv_stem(x)))  # noqa: E731
    ft_tail = lambda h: fb.bn2(fb.conv_head(fb.blocks[5:](h)))  # noqa: E731
    or_tail = lambda h: ob.bn2(ob.conv_head(ob.blocks[5:](h)))  # noqa: E731
    paths = paths_for(a.set)[:: a.stride]
    out = {"paths": np.array([str(p) for p in paths])}
    for k in [int(v) for v in a.views.split(",")]:
        feats, voc, o448, o260 = [], [], [], []
        t0 = time.time()
        with torch.inference_mode():
            for b in iter_batches(paths, 448, a.b, workers=1, view=View(k)):
                x = normalize(b.images, card.mean, card.std)
                h = prefix(x)
                fm = ft_tail(h)
                n = sum(len(f) for f in feats) + len(x)
                if n % 80 == 0:
                    print(f"view {k}: {n}/{len(paths)} {n / (time.time() - t0):.2f} img/s", file=sys.stderr, flush=True)
                feats.append(fm.mean((2, 3)).numpy())
                voc.append(ft.head(fm).numpy())
                if a.ft_only:
                    continue
                if not a.no_448:
                    o448.append(ob.classifier(or_tail(h).mean((2, 3))).numpy())
                if not a.no_260:
                    x2 = torch.nn.functional.interpolate(b.images.float(), size=(260, 260), mode="bilinear", antialias=True, align_corners=False)
                    o260.append(ob(normalize(x2, card.mean, card.std)).numpy())
        out[f"feat_v{k}"] = np.concatenate(feats).astype(np.float16)
        out[f"voc_v{k}"] = np.concatenate(voc)
        if o448:
            out[f"o448_v{k}"] = np.concatenate(o448).astype(np.float16)
        if o260:
            out[f"o260_v{k}"] = np.concatenate(o260).astype(np.float16)
        Path(".cache").mkdir(exist_ok=True)
        np.savez_compressed(f".cache/feats_{a.set}{'_s%d' % a.stride if a.stride > 1 else ''}{'_ft' if a.ft_only else ''}.npz", **out)
    print("done", a.set, file=sys.stderr)


if __name__ == "__main__":
    main()
