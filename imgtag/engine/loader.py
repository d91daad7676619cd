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


class ImageFiles(Dataset):
    """``(uint8 tensor 3×S×S, index, error)`` per path; a bad file yields zeros and a one-line error."""

    def __init__(self, paths: Sequence, size: int, flip: bool = False):
        self.paths, self.size, self.flip = list(paths), size, flip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            t = read_chw(self.paths[i], self.size)
            return (t.flip(-1) if self.flip else t), i, ""
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
                 flip: bool = False, pin_memory: bool = False, prefetch: int = 4) -> Iterator[Batch]:
    """Batches in input order, decoded by ``workers`` processes (0 = in this process)."""
    workers = default_workers() if workers is None else workers
    ds = ImageFiles(paths, size, flip)
    kw = dict(num_workers=workers, persistent_workers=False, prefetch_factor=prefetch) if workers > 0 else {}
    yield from DataLoader(ds, batch_size=batch_size, shuffle=False, collate_fn=_collate, pin_memory=pin_memory, **kw)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float], dtype=torch.float32) -> torch.Tensor:
    """uint8 (or 0..255 float) N×3×H×W → normalised float, on the images' device."""
    m = torch.tensor(mean, device=images.device, dtype=dtype).view(1, -1, 1, 1) * 255
    s = torch.tensor(std, device=images.device, dtype=dtype).view(1, -1, 1, 1) * 255
    return (images.to(dtype) - m) / s
