"""Helpers shared by the benchmark scripts: the image set and the model to time."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def voc_val(n: int) -> list[str]:
    root = Path(os.environ.get("IMGTAG_VOC_ROOT") or ROOT.parent / "shared" / "data" / "VOCdevkit" / "VOC2007")
    ids = (root / "ImageSets" / "Main" / "val.txt").read_text().split()
    return [str(root / "JPEGImages" / f"{i}.jpg") for i in ids[:n]]


def pick_model(spec: str | None, tmp: Path) -> str:
    from imgtag.card import ModelFileError, resolve_model

    try:
        return str(resolve_model(spec)[1])
    except ModelFileError:
        if spec:
            raise
    import torch

    from imgtag.card import ModelCard, save_model
    from imgtag.data.voc import VOC_CLASSES
    from imgtag.models.model import MultiLabelModel

    torch.manual_seed(0)
    arch = {"backbone": "tf_efficientnet_lite2", "neck": "none", "neck_args": {}, "head": "gap", "head_args": {},
            "cosine": False, "scale": 1.0}
    card = ModelCard(name="lite2-gap-random", labels=list(VOC_CLASSES), architecture=arch, input_size=352,
                     description="random init, for speed benchmarks only")
    print("bench: no default model; using a random-init Lite2 352-px GAP model", file=sys.stderr)
    return str(save_model(MultiLabelModel(arch, len(VOC_CLASSES)).eval(), card, tmp / "lite2-gap-random")[1])
