"""Decode images into fixed-size uint8 batches in parallel workers; one preprocessing path for all uses.

Training, training-feature caching, evaluation and tagging all read images through one dataset,
:class:`ImageFiles`, and :func:`load_resized` (decode, EXIF orientation, RGB, squish-resize to S×S), so a
model sees the same pixels in every mode. Normalisation is applied later on the device
(:func:`imgtag.models.model.normalize`), which keeps host→device transfers at one byte per value. For a CUDA
device, JPEGs can travel as bytes and decode on the GPU (:func:`decode_jpegs`, nvjpeg).
"""
from __future__ import annotations

import io as _io
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple

import torch
from torch.utils.data import DataLoader, Dataset

from imgtag.io.decode import DecodeError, load_resized
from imgtag.models.model import normalize  # noqa: F401 - re-exported: the one normalisation

JPEG_EXT = {".jpg", ".jpeg", ".jpe", ".jfif"}


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


def read_chw(path, size: int) -> torch.Tensor:
    """One image through the shared decode path, as a contiguous uint8 3×S×S tensor."""
    return torch.from_numpy(load_resized(path, size)).permute(2, 0, 1).contiguous()


AUGMENTS = ("none", "flip", "randaugment")


def augment_ops(policy: str):
    """The training augmentation as a torchvision v2 pipeline on uint8 3×S×S tensors."""
    from torchvision.transforms import v2

    if policy not in AUGMENTS:
        raise ValueError(f"unknown augmentation {policy!r}: {' | '.join(AUGMENTS)}")
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


class Augment:
    """Live augmentation (a fresh draw every time) with the ``view(tensor, index)`` signature of :class:`View`."""

    def __init__(self, policy: str):
        self.ops = augment_ops(policy)

    def __call__(self, t: torch.Tensor, i: int) -> torch.Tensor:
        return self.ops(t)


class Item(NamedTuple):
    index: int
    pixels: torch.Tensor | None  # uint8 3×S×S; None for a JPEG left to the GPU or a file that failed
    error: str  # "" when fine
    jpeg: torch.Tensor | None = None  # raw JPEG bytes (uint8) for GPU decode
    orientation: int = 1  # EXIF orientation of ``jpeg``


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation of JPEG bytes (the GPU decode path), 1 when absent or broken; quietly (Pillow's EXIF
    warnings name no file; io/decode.py ignores a broken block the same way)."""
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(_io.BytesIO(data)) as im:
                return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - the CPU fallback will report real problems
        return 1


class ImageFiles(Dataset):
    """The one per-file dataset: :class:`Item` per path. ``view(tensor, index)`` transforms the pixels (a
    :class:`View` or :class:`Augment`); ``jpeg_bytes=True`` hands JPEG files over as bytes for GPU decoding.
    A bad file gives an Item with ``error`` (one line naming the file) and no pixels: a worker never dies."""

    def __init__(self, paths: Sequence, size: int, view: Callable | None = None, jpeg_bytes: bool = False):
        self.paths, self.size, self.view, self.jpeg_bytes = list(paths), size, view, jpeg_bytes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> Item:
        p = self.paths[i]
        try:
            if self.jpeg_bytes and Path(p).suffix.lower() in JPEG_EXT:
                data = Path(p).read_bytes()
                if data[:3] == b"\xff\xd8\xff":
                    return Item(i, None, "", torch.frombuffer(bytearray(data), dtype=torch.uint8), exif_orientation(data))
            t = read_chw(p, self.size)
            return Item(i, self.view(t, i) if self.view else t, "")
        except DecodeError as e:
            return Item(i, None, str(e))
        except Exception as e:  # noqa: BLE001 - a worker must never die on one file
            return Item(i, None, f"{p}: {type(e).__name__}: {e}")


@dataclass
class Batch:
    images: torch.Tensor  # uint8 B×3×S×S
    indices: list[int]
    errors: list[str]  # "" where the image decoded


def collate(items: list[Item], size: int) -> Batch:
    """Items → a :class:`Batch` (zeros where an image failed)."""
    zeros = torch.zeros(3, size, size, dtype=torch.uint8)
    return Batch(torch.stack([zeros if it.pixels is None else it.pixels for it in items]),
                 [it.index for it in items], [it.error for it in items])


def _quiet_worker(_worker_id: int) -> None:
    """In a decode worker: no traceback from a helper thread. multiprocessing's fd server (resource_sharer), which
    hands batches to the parent, prints one through sys.excepthook when the parent stops the worker mid-request
    (after Ctrl-C/SIGTERM: issue 16, F2); the parent reports whatever matters. IMGTAG_DEBUG=1 keeps them."""
    import sys

    if not os.environ.get("IMGTAG_DEBUG"):
        sys.excepthook = lambda *exc: None


def loader(ds: ImageFiles, batch_size: int, workers: int | None = None, sampler=None, collate_fn=None,
           pin_memory: bool = False, prefetch: int = 4) -> DataLoader:
    """A DataLoader over ``ds`` in input order (or ``sampler``'s), decoded by ``workers`` processes (0: here)."""
    workers = default_workers() if workers is None else workers
    kw = dict(num_workers=workers, persistent_workers=False, prefetch_factor=prefetch,
              worker_init_fn=_quiet_worker) if workers > 0 else {}
    collate_fn = collate_fn or partial(collate, size=ds.size)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, sampler=sampler, collate_fn=collate_fn,
                      pin_memory=pin_memory, **kw)


def iter_batches(paths: Sequence, size: int, batch_size: int = 16, workers: int | None = None,
                 view: View | None = None, pin_memory: bool = False, prefetch: int = 4) -> Iterator[Batch]:
    """Batches in input order, decoded by ``workers`` processes (0 = in this process), each image as ``view``."""
    yield from loader(ImageFiles(paths, size, view), batch_size, workers, pin_memory=pin_memory, prefetch=prefetch)


def _orient(img: torch.Tensor, o: int) -> torch.Tensor:
    """Apply EXIF orientation ``o`` (1..8) to a C×H×W tensor, as PIL's ``ImageOps.exif_transpose`` does."""
    ops = {2: lambda t: t.flip(-1), 3: lambda t: t.flip(-1).flip(-2), 4: lambda t: t.flip(-2),
           5: lambda t: t.transpose(-1, -2), 6: lambda t: torch.rot90(t, -1, (-2, -1)),
           7: lambda t: t.transpose(-1, -2).flip(-1).flip(-2), 8: lambda t: torch.rot90(t, 1, (-2, -1))}
    return ops[o](img) if o in ops else img


def decode_jpegs(items: Sequence[Item], size: int, device: torch.device) -> list[torch.Tensor | None]:
    """Decode the Items' raw JPEGs on the GPU (nvjpeg), rotate per EXIF, resize to S×S: per item a uint8
    3×S×S tensor on ``device``, or None where nvjpeg refused the batch (CMYK, odd sampling: decode on the CPU)."""
    import torch.nn.functional as F
    import torchvision.io as tio

    try:
        decoded = tio.decode_jpeg([it.jpeg for it in items], mode=tio.ImageReadMode.RGB, device=device)
    except Exception:  # noqa: BLE001 - nvjpeg refuses some files: CPU fallback
        return [None] * len(items)
    out = []
    for img, it in zip(decoded, items):
        img = _orient(img, it.orientation).unsqueeze(0).float()
        img = F.interpolate(img, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append(img.round_().clamp_(0, 255).to(torch.uint8)[0])
    return out
