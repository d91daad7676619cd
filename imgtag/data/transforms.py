"""Image transforms: the train/eval pipelines on PIL images and batch normalisation for tagging.

Protocol choices:

* **Squish resize.** Images are resized to ``(S, S)`` ignoring aspect ratio (bilinear, antialiased), no
  crop: what Q2L, ASL, ML-Decoder, CSRA (test) and ML-GCN (test) do, so nothing near the border is cut
  away -- in multi-label images a small object at the edge is still a label.
* **Augment** (train only): ``"none"``; ``"flip"`` = random horizontal flip; ``"randaugment"`` = flip +
  torchvision ``RandAugment()`` (defaults: 2 ops, magnitude 9) + a working Cutout. Cutout is
  ``RandomErasing(p=0.5, scale=(0.02, 0.25))`` on the normalised tensor, filled with 0 = the mean
  colour. (Q2L's ``SLCutoutPIL`` is built with ``length=-1`` by default and cuts about one pixel;
  ASL's CutoutPIL cuts a square of half the side, i.e. up to 25 % of the area.)
* **Normalisation** is a parameter because the references differ: ImageNet mean/std (Q2L, ML-GCN),
  0.5/0.5 (ViTs, DOR), none i.e. [0, 1] input (ASL, CSRA: pass ``mean=None``). Use the backbone's own.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF_MEAN_STD = (0.5, 0.5, 0.5)
AUGMENTS = ("none", "flip", "randaugment")


def build_transform(size: int | tuple[int, int], mean: Sequence[float] | None = IMAGENET_MEAN,
                    std: Sequence[float] | None = IMAGENET_STD, train: bool = False,
                    augment: str = "flip") -> v2.Compose:
    """PIL RGB image -> float32 tensor [3, H, W], squish-resized to ``size`` (int = square, or (H, W)).

    ``augment`` only matters when ``train`` is True. ``mean=None`` (or ``std=None``) skips
    normalisation and leaves values in [0, 1].
    """
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    steps: list = [v2.Resize(hw, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)]
    if train and augment != "none":
        steps.append(v2.RandomHorizontalFlip())
        if augment == "randaugment":
            steps.append(v2.RandAugment())
    steps += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]
    if mean is not None and std is not None:
        steps.append(v2.Normalize(list(mean), list(std)))
    if train and augment == "randaugment":
        steps.append(v2.RandomErasing(p=0.5, scale=(0.02, 0.25), value=0))
    steps.append(v2.ToPureTensor())
    return v2.Compose(steps)


def normalize_batch(images: torch.Tensor, mean: Sequence[float] | None = IMAGENET_MEAN,
                    std: Sequence[float] | None = IMAGENET_STD,
                    channels_last: bool | None = None) -> torch.Tensor:
    """uint8 batch [N, H, W, C] or [N, C, H, W] (any device) -> float32 [N, C, H, W], scaled to [0, 1]
    then ``(x - mean) / std`` (skipped when mean or std is None). Float input is taken as already in
    [0, 1].

    The layout is taken from ``channels_last`` when given, else guessed: NHWC when the last dim is 1 or
    3 and dim 1 is not. The result of NHWC input is a permuted view's arithmetic, i.e. NCHW in shape
    with channels-last memory format (fine for convolutions; call ``.contiguous()`` if needed).
    """
    if images.ndim != 4:
        raise ValueError(f"expected a 4-D batch, got shape {tuple(images.shape)}")
    if channels_last is None:
        channels_last = images.shape[-1] in (1, 3) and images.shape[1] not in (1, 3)
    x = images.permute(0, 3, 1, 2) if channels_last else images
    x = x.float() / 255.0 if not x.is_floating_point() else x.float()
    if mean is not None and std is not None:
        m = torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        x = (x - m) / s
    return x
