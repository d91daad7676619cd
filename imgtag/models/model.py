"""The shared model core: backbone → (neck) → multi-label head, built from a model card's architecture.

``architecture`` (stored in every card)::

    {"backbone": "tf_efficientnet_lite2", "neck": "none", "neck_args": {},
     "head": "csra", "head_args": {"num_heads": 1, "lam": 0.1}, "cosine": false, "scale": 1.0}

The model maps a normalised float batch to logits with ``score = sigmoid(logit)``; cosine heads (used with
the AM-Binary loss) already multiply by their scale ``s``. :class:`TaggingModel` wraps it with the card's
normalisation so deployments (torch, ONNX) take uint8 RGB N×3×S×S.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from imgtag.card import ModelCard, ModelFileError, read_card, read_weights, resolve_model
from imgtag.models.backbone import Backbone
from imgtag.models.heads import build_head


def build_neck(name: str, in_channels: int, **kw) -> nn.Module:
    if not name or name == "none":
        return nn.Identity()
    from imgtag.models.mltr import build_neck as _build

    return _build(name, in_channels, **kw)


class MultiLabelModel(nn.Module):
    def __init__(self, architecture: dict[str, Any], num_classes: int, pretrained: str | None = None,
                 adjacency: torch.Tensor | None = None):
        super().__init__()
        a = dict(architecture)
        self.architecture = a
        self.backbone = Backbone(a["backbone"], pretrained=pretrained, drop_path_rate=a.get("drop_path_rate", 0.0))
        self.neck = build_neck(a.get("neck", "none"), self.backbone.num_features, **a.get("neck_args", {}))
        channels = getattr(self.neck, "out_channels", self.backbone.num_features)
        head_args = dict(a.get("head_args", {}))
        if a["head"] == "gcn" and adjacency is not None:
            head_args["adjacency"] = adjacency
        self.head = build_head(a["head"], channels, num_classes, cosine=bool(a.get("cosine", False)),
                               scale=float(a.get("scale", 1.0)), **head_args)
        # further heads on the same pass: linear layers on the globally average-pooled feature map, their logits
        # appended after the main head's (the card's "heads" name the slices; imgtag/vocab/score.py scores them)
        # ("pool": "avg+max": on [average, max] pooled, 2×channels: the features `imgtag learn` trains its head on)
        self.extra_pools = [h.get("pool", "avg") for h in a.get("extra_heads", [])]
        for pool in self.extra_pools:
            if pool not in ("avg", "avg+max"):
                raise ValueError(f"extra head pool {pool!r}: avg or avg+max")
        self.extra_heads = nn.ModuleDict({h["name"]: nn.Linear(channels * (2 if h.get("pool") == "avg+max" else 1),
                                                               int(h["size"])) for h in a.get("extra_heads", [])})

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.backbone(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.neck(self.backbone(x))
        if not len(self.extra_heads):
            return self.head(f)
        pooled = f.mean((2, 3))
        both = torch.cat([pooled, f.amax((2, 3))], 1) if "avg+max" in self.extra_pools else None
        return torch.cat([self.head(f).float(), *(lin(both if pool == "avg+max" else pooled).float()
                                                  for lin, pool in zip(self.extra_heads.values(), self.extra_pools))], 1)

    def stage_list(self) -> list[nn.Module]:
        """The backbone as ordered stages (EfficientNet-like), or as one stage."""
        return self.backbone.stages() or [self.backbone]

    def frozen_count(self, frozen_stages: int) -> int:
        """Number of leading stages ``frozen_stages`` means (-1 = all); validated."""
        n = len(self.stage_list())
        if n == 1 and frozen_stages not in (0, -1, 1):
            raise ValueError(f"{self.backbone.name}: partial freezing needs an EfficientNet-like backbone; use 0 or -1 (all)")
        return n if frozen_stages < 0 else min(frozen_stages, n)

    def split(self, frozen_stages: int) -> tuple[nn.Module, nn.Module]:
        """``(prefix, rest)`` with ``rest(prefix(x)) == self(x)``; the prefix holds the first stages."""
        stages, k = self.stage_list(), self.frozen_count(frozen_stages)
        return nn.Sequential(*stages[:k]), nn.Sequential(*stages[k:], self.neck, self.head)


def normalize(images: torch.Tensor, mean, std, dtype=torch.float32) -> torch.Tensor:
    """uint8 (or 0..255 float) N×3×H×W → ``(x / 255 - mean) / std`` as float, on the images' device.

    The one normalisation: training, feature caching and :class:`TaggingModel` (so torch and ONNX) use it."""
    m = torch.as_tensor(mean, device=images.device, dtype=dtype).view(1, -1, 1, 1) * 255
    s = torch.as_tensor(std, device=images.device, dtype=dtype).view(1, -1, 1, 1) * 255
    return (images.to(dtype) - m) / s


class TaggingModel(nn.Module):
    """uint8 (or 0..255 float) RGB N×3×S×S → logits, with the card's normalisation inside the graph."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(normalize(images, self.mean, self.std, self.mean.dtype))


def load_model(spec: str | None = None, device: str | torch.device = "cpu") -> tuple[MultiLabelModel, ModelCard]:
    """Load a model file set (name, path or ``None`` for the shipped default) in eval mode."""
    wpath, cpath = resolve_model(spec)
    card = read_card(cpath)
    sd = read_weights(wpath, verify_sha256=card.weights_sha256)
    if card.base:  # a model that adds a head to another one: the base's weights first, then its own
        try:
            bw, _ = resolve_model(card.base["model"])
            sd = {**read_weights(bw, verify_sha256=card.base.get("weights_sha256", "")), **sd}
        except (ModelFileError, KeyError, TypeError) as e:
            raise ModelFileError(f"{cpath}: its base model {card.base.get('model') if isinstance(card.base, dict) else card.base!r} "
                                 f"is missing or changed ({e})") from e
    try:
        model = MultiLabelModel(card.architecture, card.num_classes, pretrained=None)
    except (TypeError, ValueError, KeyError, RuntimeError) as e:
        raise ModelFileError(f"{cpath}: the card's architecture cannot be built ({e})") from e
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise ModelFileError(f"{wpath}: weights do not fit the card's architecture "
                             f"({len(missing)} missing e.g. {missing[:2]}, {len(unexpected)} unexpected e.g. {unexpected[:2]})")
    return model.eval().to(device), card
