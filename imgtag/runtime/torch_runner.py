"""The torch runner: eager PyTorch on the CPU (channels_last fp32) or on CUDA (bf16 autocast by default).

On CUDA out-of-memory the batch is split in halves and :attr:`TorchRunner.max_batch` records the size that
fits, so the :class:`~imgtag.runtime.tagger.Tagger` backs off for later batches. The GPU JPEG decode that feeds
it (nvjpeg) lives in runtime/loader.py (:func:`~imgtag.runtime.loader.decode_jpegs`).
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from imgtag.models.model import TaggingModel
from imgtag.runtime.registry import register_runner


@register_runner("torch")
class TorchRunner:
    precisions = ("fp32", "bf16")
    fp32_thresholds = ("fp32", "bf16")  # bf16 autocast keeps scores within 1e-2 of fp32 (benchmarks/gpu_check.py)
    auto_priority = 0  # on the CPU, any faster runner that is available goes first

    @classmethod
    def available(cls, device) -> str | None:
        return None

    def __init__(self, net, card, device, precision: str | None = None, **kw):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.precision = precision or ("bf16" if self.cuda else "fp32")
        self.module = TaggingModel(net, card.mean, card.std).eval().to(self.device)
        self.module = self.module.to(memory_format=torch.channels_last)
        self.max_batch: int | None = None  # set when CUDA ran out of memory

    @property
    def description(self) -> str:
        where = torch.cuda.get_device_name(self.device) if self.cuda else f"CPU, {torch.get_num_threads()} threads"
        return f"torch {torch.__version__.split('+')[0]} {where}, {self.precision}"

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×3×S×S (on the device) → float logits on the CPU, splitting the batch on CUDA out-of-memory."""
        try:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                x = images.to(self.device).contiguous(memory_format=torch.channels_last)
                return self.module(x).float().cpu()
        except torch.cuda.OutOfMemoryError:
            if len(images) == 1:
                raise
            torch.cuda.empty_cache()
            self.max_batch = max(1, len(images) // 2)
            print(f"imgtag: CUDA out of memory; batch size backs off to {self.max_batch}", file=sys.stderr)
            h = len(images) // 2
            return torch.cat([self.logits(images[:h]), self.logits(images[h:])])

    def __call__(self, images) -> np.ndarray:
        if isinstance(images, np.ndarray):
            images = torch.from_numpy(images)
        return self.logits(images).numpy()
