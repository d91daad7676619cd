"""``TrainConfig``: every training option, its default and its help text, in one place.

``imgtag train``'s options are generated from these fields (cli.py), so a default lives only here. Field
metadata: ``help``; ``flag`` (the option name when it is not ``--field-name``), ``short``; ``choices``
(``"module:NAME"`` of a registry, read when the command runs or shows its help); ``cli=False`` hides a field.
Importing this module is light (no torch): ``imgtag --help`` stays fast.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def opt(default, help: str = "", **meta):
    """A dataclass field with CLI metadata (see the module docstring)."""
    kw = {"default_factory": dict} if default is dict else {"default": default}
    return field(metadata={"help": help, **meta}, **kw)


@dataclass
class TrainConfig:
    dataset: str = opt("voc", "Dataset kind.", short="-d", choices="imgtag.data:DATASET_KINDS")
    root: str = opt("", "Dataset root (VOC year dir, COCO dir, or the training csv/jsonl file). "
                        "Default for voc: ../shared/data/VOCdevkit/VOC2007 or $IMGTAG_VOC_ROOT.")
    val_root: str = opt("", "csv/jsonl: the validation file (VOC/COCO: same root, other split).")
    train_split: str = opt("train")
    val_split: str = opt("val")
    backbone: str = opt("tf_efficientnet_lite2", "Any timm model name (or mltr_s/m/l).")
    pretrained: str | None = opt("imagenet", "imagenet (offline packages) | none | PATH to weights.")
    head: str = opt("gap", "Multi-label head.", choices="imgtag.models.heads:HEADS")
    head_args: dict[str, Any] = opt(dict, "Head option key=value (repeatable), e.g. num_heads=4.", flag="--head-opt")
    neck: str = opt("none", "none | mltr (MlTr blocks on the backbone's feature map).")
    neck_args: dict[str, Any] = opt(dict, "Neck option key=value (repeatable).", flag="--neck-opt")
    loss: str = opt("bce", "Loss.", choices="imgtag.models.losses:LOSSES")
    loss_args: dict[str, Any] = opt(dict, "Loss option key=value (repeatable), e.g. gamma_neg=4.", flag="--loss-opt")
    size: int = opt(352, "Input size S (images are squished to S×S).")
    epochs: int = opt(20)
    batch_size: int = opt(32, short="-b")
    lr: float = opt(1e-3, "Peak learning rate of the head (OneCycle).")
    backbone_lr_mult: float = opt(0.1, "The backbone's learning rate as a fraction of --lr.")
    weight_decay: float = opt(1e-4)
    ema: float = opt(0.999, "EMA decay of the weights (0: off).")
    augment: str = opt("flip", "Training augmentation.", choices="imgtag.runtime.loader:AUGMENTS")
    freeze_stages: int = opt(0, "Freeze the first N backbone stages (-1: all); their output is cached.")
    cache: bool = opt(True, "Cache the frozen stages' output.")
    views: int = opt(0, "Cached views per training image: 0 = 1 (none) / 2 (flip); with randaugment N fixed views "
                        "(image, mirror, N-2 seeded draws) instead of live augmentation.")
    patience: int = opt(5, "Stop after N epochs without a validation mAP gain.")
    seed: int = opt(0)
    grad_clip: float = opt(0.0, "Clip the gradient norm (0: off).")
    workers: int | None = opt(None, "Decode worker processes.", short="-j")
    device: str = opt("auto", "auto | cpu | cuda | cuda:N.")
    out: str = opt("runs/model", "Output folder (checkpoints, model file set).", short="-o")
    name: str = opt("", "Model name (file stem); default 'model'.")
    resume: bool = opt(False, "Continue from OUT/last.safetensors.")
    stop_after: int = opt(0, "Stop after N epochs in this run (continue later with --resume).")
    limit: int = opt(0, "Use only the first N images per split (smoke tests).")
    command: str = opt("", cli=False)

    def architecture(self, num_classes: int) -> dict[str, Any]:
        from imgtag.models.heads import HEADS
        from imgtag.models.losses import AM_BINARY_SCALE

        cosine = self.loss == "am-binary"
        scale = float(self.loss_args.get("s", AM_BINARY_SCALE)) if cosine else 1.0
        head_args = {**getattr(HEADS[self.head], "defaults", {}), **self.head_args}
        head_args.pop("adjacency", None)
        return {"backbone": self.backbone, "neck": self.neck, "neck_args": dict(self.neck_args), "head": self.head,
                "head_args": head_args, "cosine": cosine, "scale": scale}
