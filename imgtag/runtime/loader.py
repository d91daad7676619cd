"""Decode images into fixed-size uint8 batches in parallel workers; one preprocessing path for all uses.

Training-feature caching, evaluation and tagging all read images through :func:`load_resized` (decode,
EXIF orientation, RGB, squish-resize to S×S), so a model sees the same pixels in every mode. Normalisation is
applied later on the device (:func:`normalize`), which keeps host→device transfers at one byte per value.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from imgtag.io.decode import DecodeError, load_resized


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


def read_chw(path, size: int) -> torch.Tensor:
    """One image through the shared decode path, as a contiguous uint8 3×S×S tensor."""
    return torch.from_numpy(load_resized(path, size)).permute(2, 0, 1).contiguous()


def augment_ops(policy: str):
    """The training augmentation as a torchvision v2 pipeline on uint8 3×S×S tensors."""
    from torchvision.transforms import v2

    if policy not in ("none", "flip", "randaugment"):
        raise ValueError(f"unknown augmentation {policy!r}: none | flip | randaugment")
    ops = [] if policy == "none" else [v2.RandomHorizontalFlip()]
    if policy == "randaugment":
        ops += [v2.RandAugment(), v2.RandomErasing(p=0.5, scale=(0.02, 0.25), value=0)]
    return v2.Compose(ops)


class View:
    """A fixed, reproducible variant of every image: 0 the image, 1 its mirror, k ≥ 2 the ``policy`` drawn with seed
    (k, image index), the same in any process, so a frozen prefix's output for it can be cached."""

    def __init__(self, k: int = 0, policy: str = "randaugment"):
        self.k, self.policy = k, policy
        self.ops = augment_ops(policy) if k >= 2 else None

    def __call__(self, t: torch.Tensor, i: int) -> torch.Tensor:
        if self.k == 1:
            return t.flip(-1)
        if self.ops is None:
            return t
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.k * 1_000_003 + i)
            return self.ops(t)


class ImageFiles(Dataset):
    """``(uint8 tensor 3×S×S, index, error)`` per path; a bad file yields zeros and a one-line error."""

    def __init__(self, paths: Sequence, size: int, view: View | None = None):
        self.paths, self.size, self.view = list(paths), size, view

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            t = read_chw(self.paths[i], self.size)
            return (self.view(t, i) if self.view else t), i, ""
        except DecodeError as e:
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), i, str(e)
        except Exception as e:  # noqa: BLE001 - a worker must never die on one file
            return torch.zeros(3, self.size, self.size, dtype=torch.uint8), i, f"{self.paths[i]}: {type(e).__name__}: {e}"


@dataclass
class Batch:
    images: torch.Tensor  # uint8 B×3×S×S
    indices: list[int]
    errors: list[str]  # "" where the image decoded


def _collate(items) -> Batch:
    return Batch(torch.stack([t for t, _, _ in items]), [i for _, i, _ in items], [e for _, _, e in items])


def iter_batches(paths: Sequence, size: int, batch_size: int = 16, workers: int | None = None,
                 view: View | None = None, pin_memory: bool = False, prefetch: int = 4) -> Iterator[Batch]:
    """Batches in input order, decoded by ``workers`` processes (0 = in this process), each image as ``view``."""
    workers = default_workers() if workers is None else workers
    ds = ImageFiles(paths, size, view)
    kw = dict(num_workers=workers, persistent_workers=False, prefetch_factor=prefetch) if workers > 0 else {}
    yield from DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=_collate, pin_memory=pin_memory, **kw)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype=torch.float32) -> torch.Tensor:
    """uint8 (or 0..255 float) N×3×H×W → normalised float, on the images' device."""
    m = torch.tensor(mean, device=images.device, dtype=dtype).view(1, -1, 1, 1) * 255
    s = torch.tensor(std, device=images.device, dtype=dtype).view(1, -1, 1, 1) * 255
    return (images.to(dtype) - m) / s
