"""Cache the output of a frozen backbone prefix once, so training runs only the later stages.

The fair CPU recipe: the early EfficientNet stages are frozen (eval-mode BN, no grad), so their output for a
given image never changes. Each training image is cached in a fixed number of views (runtime/loader.py View: the image, its
mirror, then seeded draws of the augmentation policy), each computed once. The cache is a safetensors file keyed by
everything that determines its content (backbone, weights, stage cut, input size, normalisation, image list, view).

The second half of this file is the photo-feature cache of `imgtag learn`: pooled backbone features keyed by each
file's content (see the comment block there).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import load_file as np_load_file
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import load_file, save
from torch import nn

from imgtag.card import sha256_file
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


# ----------------------------------------------------------------------------- photo features (imgtag learn)
# Pooled backbone features of photos, cached on disk by file content: what `imgtag learn` trains on.
#
# The feature of a photo is the default model's frozen backbone output (its last feature map, 1280×14×14 for
# Lite2 at 448 px) pooled two ways, average and max, concatenated (2×C floats). Average pooling is what a plain
# linear head reads; max pooling keeps small objects (the same two statistics the CSRA head of the shipped model
# combines). Both are computed in one backbone pass and stored as float16.
#
# The cache (``$IMGTAG_CACHE/photo-features/<model key>/``) is keyed by the sha256 of each file's bytes, and the
# folder by the sha256 of the backbone's weights (heads left out) + input size + normalisation: renaming or moving a photo costs nothing,
# an edited photo (new bytes) or another model is extracted again. Each run appends one shard
# (``shard-*.safetensors``: "sha" uint8 N×32, "features" float16 N×D), written atomically; a broken shard is
# ignored. So a re-learn after tagging 100 more photos extracts only those 100.
#
# The fast CPU path is ONNX Runtime (the default model's graph with the pooling as its output, exported once into
# the ONNX cache); torch is the fallback when onnxruntime is missing, and the path on a GPU.


SHA_BYTES = 32


class PoolFeatures(nn.Module):
    """N×C×h×w feature map → N×2C: [average, max] over space."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)


def cache_root() -> Path:
    from platformdirs import user_cache_dir

    return Path(os.environ.get("IMGTAG_CACHE") or user_cache_dir("imgtag")) / "photo-features"


class FeatureStore:
    """Content-keyed pooled features of one backbone (see the module docstring)."""

    def __init__(self, model_key: str, root: str | Path | None = None):
        self.dir = Path(root or cache_root()) / model_key
        self.rows: dict[bytes, np.ndarray] = {}
        if self.dir.is_dir():
            for shard in sorted(self.dir.glob("shard-*.safetensors")):
                try:
                    d = np_load_file(str(shard))
                    shas, feats = d["sha"], d["features"]
                except Exception:  # noqa: BLE001 - a broken shard is never trusted; it is recomputed
                    continue
                for s, f in zip(shas, feats):
                    self.rows[s.tobytes()] = f

    def get(self, sha_hex: str) -> np.ndarray | None:
        return self.rows.get(bytes.fromhex(sha_hex))

    def add(self, shas: Sequence[str], feats: np.ndarray) -> None:
        """Append one shard (atomically) and keep the rows in memory."""
        if not len(shas):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        sha_arr = np.frombuffer(b"".join(bytes.fromhex(s) for s in shas), dtype=np.uint8).reshape(-1, SHA_BYTES)
        feats = np.ascontiguousarray(feats, dtype=np.float16)
        name = f"shard-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{len(shas)}.safetensors"
        tmp = self.dir / f".{name}.tmp"
        try:
            np_save_file({"sha": sha_arr.copy(), "features": feats}, str(tmp))
            os.replace(tmp, self.dir / name)
        finally:
            tmp.unlink(missing_ok=True)
        for s, f in zip(sha_arr, feats):
            self.rows[s.tobytes()] = f


def backbone_sha256(net: nn.Module) -> str:
    """sha256 of the backbone's (and neck's) weights: names, shapes, dtypes and values, heads left out. The
    feature cache is keyed by it, so models that share a backbone (the VOC model, the keyword model with its
    extra heads, a learned model) share their cached features."""
    h = hashlib.sha256()
    for part in ("backbone", "neck"):
        mod = getattr(net, part, None)
        if mod is None:
            continue
        for name, t in sorted(mod.state_dict().items()):
            t = t.detach().cpu().contiguous()
            h.update(f"{part}.{name}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


class FeatureExtractor:
    """Pooled features of the default (or a given) model's backbone, by ONNX Runtime on the CPU, else torch."""

    def __init__(self, model: str | None = None, runtime: str = "auto", threads: int | None = None):
        from imgtag.models.model import load_model

        net, card = load_model(model)
        self.card = card
        self.size = int(card.input_size)
        self.mean, self.std = list(card.mean), list(card.std)
        self.weights_sha256 = card.weights_sha256
        feat_net = copy.copy(net)  # shares the backbone; only the head is swapped for pooling
        feat_net.head = PoolFeatures()
        feat_net.extra_heads, feat_net.extra_pools = nn.ModuleDict(), []  # (a keyword model's further heads)
        self.net = feat_net.eval()
        self.dim = 2 * int(net.backbone.num_features)
        self.backbone_sha256 = backbone_sha256(net)
        self.key = hashlib.sha256(json.dumps(
            {"backbone": self.backbone_sha256, "size": self.size, "mean": self.mean, "std": self.std,
             "pool": "avg+max"}, sort_keys=True).encode()).hexdigest()[:20]
        self.runner, self.runtime = None, "torch"
        if runtime in ("auto", "onnx") and not torch.cuda.is_available():
            try:
                from imgtag.runtime.onnx import OnnxRunner

                fcard = dataclasses.replace(card, labels=[f"f{i}" for i in range(self.dim)], thresholds=None,
                                            architecture={**card.architecture, "head": "pool-avg-max",
                                                          "head_args": {}})
                self.runner = OnnxRunner(self.net, fcard, threads=threads)
                self.runtime = "onnx"
            except ImportError:
                if runtime == "onnx":
                    raise
        if self.runner is None:
            from imgtag.models.model import TaggingModel

            self.device = "cuda" if torch.cuda.is_available() else "cpu"
            self.tm = TaggingModel(self.net, self.mean, self.std).eval().to(self.device)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """uint8 N×3×S×S → float32 N×D."""
        if self.runner is not None:
            return np.asarray(self.runner(images.numpy()), dtype=np.float32)
        with torch.inference_mode():
            return self.tm(images.to(self.device)).float().cpu().numpy()

    def store(self, root: str | Path | None = None) -> FeatureStore:
        return FeatureStore(self.key, root)


def photo_features(paths: Sequence[str | Path], extractor: FeatureExtractor, store: FeatureStore | None = None,
                   batch_size: int = 16, workers: int | None = None,
                   progress: Callable[[int], None] | None = None,
                   on_error: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """Features (float32 N×D) of ``paths``, from the cache where the content was seen before.

    Returns ``(features, ok, stats)``: ``ok[i]`` is False where the file could not be read or decoded (its row is
    zeros; ``on_error`` got one line naming it), stats = {"cached", "extracted", "failed", "hash_s", "extract_s"}.
    """
    from imgtag.runtime.loader import iter_batches

    store = store or extractor.store()
    n = len(paths)
    feats = np.zeros((n, extractor.dim), dtype=np.float32)
    ok = np.zeros(n, dtype=bool)
    t0 = time.perf_counter()
    shas: list[str | None] = []
    for p in paths:
        try:
            shas.append(sha256_file(p))
        except OSError as e:
            shas.append(None)
            if on_error:
                on_error(f"{p}: cannot read ({e.strerror or e})")
    todo = []
    for i, s in enumerate(shas):
        if s is None:
            continue
        f = store.get(s)
        if f is None:
            todo.append(i)
        else:
            feats[i], ok[i] = f, True
    stats = {"cached": int(ok.sum()), "extracted": 0, "failed": sum(s is None for s in shas),
             "hash_s": time.perf_counter() - t0}
    t1 = time.perf_counter()
    if progress and stats["cached"]:
        progress(stats["cached"])
    new_shas, new_rows = [], []
    # ONNX Runtime already uses every core for the graph: decode in a single worker process beside it
    if todo:
        for b in iter_batches([paths[i] for i in todo], extractor.size, batch_size,
                              workers=1 if workers is None else workers):
            out = extractor(b.images)
            for j, err, row in zip(b.indices, b.errors, out):
                i = todo[j]
                if err:
                    stats["failed"] += 1
                    if on_error:
                        on_error(err)
                    continue
                feats[i], ok[i] = row, True
                new_shas.append(shas[i])
                new_rows.append(row)
            if progress:
                progress(len(b.indices))
            if len(new_rows) >= 256:  # a shard now and then: an interrupted run keeps what it computed
                store.add(new_shas, np.stack(new_rows))
                stats["extracted"] += len(new_rows)
                new_shas, new_rows = [], []
    if new_rows:
        store.add(new_shas, np.stack(new_rows))
        stats["extracted"] += len(new_rows)
    stats["extract_s"] = time.perf_counter() - t1
    return feats, ok, stats
