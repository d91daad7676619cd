"""Cache the output of a frozen backbone prefix once, so training runs only the later stages.

The fair CPU recipe: the early EfficientNet stages are frozen (eval-mode BN, no grad), so their output for a
given image never changes. With the "flip" augmentation each training image has exactly two variants
(original and mirrored), both computed once. The cache is a safetensors file keyed by everything that
determines its content (backbone, weights, stage cut, input size, normalisation, image list, flip).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from imgtag.engine.loader import iter_batches, normalize


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("IMGTAG_CACHE") or user_cache_dir("imgtag")) / "features"


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@torch.inference_mode()
def compute_features(prefix: nn.Module, paths, size: int, mean, std, flip: bool = False, batch_size: int = 32,
                     workers: int | None = None, device: str = "cpu", progress=None) -> tuple[torch.Tensor, list[str]]:
    """Frozen-prefix features (fp16, N×C×h×w) for ``paths``; also the list of decode errors."""
    prefix = prefix.eval().to(device)
    out, errors = None, []
    for b in iter_batches(paths, size, batch_size, workers, flip=flip):
        x = normalize(b.images.to(device), mean, std).contiguous(memory_format=torch.channels_last)
        f = prefix(x).half().cpu()
        if out is None:
            out = torch.empty((len(paths), *f.shape[1:]), dtype=torch.float16)
        out[b.indices[0]: b.indices[-1] + 1] = f
        errors += [e for e in b.errors if e]
        if progress:
            progress(len(b.indices))
    return out if out is not None else torch.empty(0), errors


def cached_features(prefix: nn.Module, paths, size: int, mean, std, flip: bool, key_parts: dict, **kw) -> torch.Tensor:
    """Load the features from the cache, or compute and store them (atomically)."""
    key = cache_key(paths=[str(p) for p in paths], size=size, mean=list(mean), std=list(std), flip=flip, **key_parts)
    f = cache_dir() / f"{key}.safetensors"
    if f.exists():
        try:
            return load_file(str(f))["features"]
        except Exception:  # noqa: BLE001 - a broken cache file is recomputed, never trusted
            f.unlink(missing_ok=True)
    feats, errors = compute_features(prefix, paths, size, mean, std, flip=flip, **kw)
    if errors:
        raise RuntimeError(f"{len(errors)} training images failed to decode, e.g. {errors[0]}")
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
    save_file({"features": feats.contiguous()}, str(tmp))
    os.replace(tmp, f)
    return feats
