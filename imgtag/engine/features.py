"""Cache the output of a frozen backbone prefix once, so training runs only the later stages.

The fair CPU recipe: the early EfficientNet stages are frozen (eval-mode BN, no grad), so their output for a
given image never changes. Each training image is cached in a fixed number of views (runtime/loader.py View: the image, its
mirror, then seeded draws of the augmentation policy), each computed once. The cache is a safetensors file keyed by
everything that determines its content (backbone, weights, stage cut, input size, normalisation, image list, view).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from imgtag.io.atomic import atomic_write_bytes
from imgtag.models.model import normalize
from imgtag.runtime.loader import View, iter_batches


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("IMGTAG_CACHE") or user_cache_dir("imgtag")) / "features"


def cache_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@torch.inference_mode()
def compute_features(prefix: nn.Module, paths, size: int, mean, std, view: View | None = None, batch_size: int = 32,
                     workers: int | None = None, device: str = "cpu", progress=None) -> tuple[torch.Tensor, list[str]]:
    """Frozen-prefix features (fp16, N×C×h×w) for ``paths``; also the list of decode errors."""
    prefix = prefix.eval().to(device)
    out, errors = None, []
    for b in iter_batches(paths, size, batch_size, workers, view=view):
        x = normalize(b.images.to(device), mean, std).contiguous(memory_format=torch.channels_last)
        f = prefix(x).half().cpu()
        if out is None:
            out = torch.empty((len(paths), *f.shape[1:]), dtype=torch.float16)
        out[b.indices[0]: b.indices[-1] + 1] = f
        errors += [e for e in b.errors if e]
        if progress:
            progress(len(b.indices))
    return out if out is not None else torch.empty(0), errors


def _load(path: Path) -> torch.Tensor | None:
    if path.exists():
        try:
            return load_file(str(path))["features"]
        except Exception:  # noqa: BLE001 - a broken cache file is recomputed, never trusted
            path.unlink(missing_ok=True)
    return None


@torch.inference_mode()
def _run_stages(stages: nn.Module, feats: torch.Tensor, batch_size: int, device: str) -> torch.Tensor:
    stages = stages.eval().to(device)
    out = [stages(feats[i:i + batch_size].to(device).float()).half().cpu() for i in range(0, len(feats), batch_size)]
    return torch.cat(out)


def cached_features(stages: list[nn.Module], k: int, paths, size: int, mean, std, view: View, key_parts: dict,
                    batch_size: int = 32, device: str = "cpu", **kw) -> torch.Tensor:
    """Output of the first ``k`` frozen ``stages`` for ``paths`` seen as ``view``: from the cache, else computed.

    A cache of a shorter prefix (same images, view and weights) is reused: only the stages in between are run.
    """
    # views 0/1 keep the key they had as flip=False/True; augmented views add their index and policy
    vkey = {"flip": view.k == 1, **({"view": view.k, "policy": view.policy} if view.k >= 2 else {})}

    def path(j: int) -> Path:
        parts = {**key_parts, **vkey, "stages": j}
        return cache_dir() / f"{cache_key(paths=[str(p) for p in paths], size=size, mean=list(mean), std=list(std), **parts)}.safetensors"

    target = path(k)
    feats = _load(target)
    if feats is not None:
        return feats
    for j in range(k - 1, 0, -1):
        shorter = _load(path(j))
        if shorter is not None:
            feats = _run_stages(nn.Sequential(*stages[j:k]), shorter, batch_size, device)
            break
    else:
        feats, errors = compute_features(nn.Sequential(*stages[:k]), paths, size, mean, std, view=view,
                                         batch_size=batch_size, device=device, **kw)
        if errors:
            raise RuntimeError(f"{len(errors)} training images failed to decode, e.g. {errors[0]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, save({"features": feats.contiguous()}))
    return feats
