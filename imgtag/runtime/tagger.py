"""The batched inference pipeline behind ``imgtag tag``, ``imgtag eval`` and the Python API.

files → decode workers (uint8 S×S, or raw JPEG bytes for GPU decode) → device → model → scores → labels.

* CPU: images decode and resize in parallel worker processes (PIL, JPEG draft mode), the model runs in
  channels_last fp32.
* CUDA: JPEGs are read as bytes by the workers and decoded in batches on the GPU (torchvision nvjpeg), rotated
  per EXIF and resized there; other formats, and JPEGs nvjpeg refuses, decode on the CPU workers. The model
  runs in bf16 autocast, channels_last; on out-of-memory the batch is split and the batch size backs off.
* Results stream in input order, one :class:`Prediction` per file; a file that fails yields a prediction
  with ``error`` set and the run goes on.
"""
from __future__ import annotations

import io as _io
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from imgtag.engine.memory import keep_freed_memory
from imgtag.engine.loader import default_workers, read_chw
from imgtag.io.decode import DecodeError
from imgtag.models.model import TaggingModel, load_model

JPEG_EXT = {".jpg", ".jpeg", ".jpe", ".jfif"}


@dataclass
class Prediction:
    path: str
    labels: list[tuple[str, float]] = field(default_factory=list)
    scores: np.ndarray | None = None  # all K scores (sigmoid), when the image decoded
    error: str | None = None

    def to_record(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "labels": [{"label": lab, "score": s} for lab, s in self.labels]}


def pick_device(spec: str | None = "auto") -> torch.device:
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda asked for, but no CUDA GPU is available")
    return dev


def _exif_orientation(data: bytes) -> int:
    from PIL import Image

    try:
        with Image.open(_io.BytesIO(data)) as im:
            return int(im.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - the CPU fallback will report real problems
        return 1


class _Files(Dataset):
    """Per path: ("px", uint8 3×S×S) decoded here, ("jpeg", bytes, orientation) for GPU decode, or ("err", msg)."""

    def __init__(self, paths: Sequence, size: int, gpu_jpeg: bool):
        self.paths, self.size, self.gpu_jpeg = list(paths), size, gpu_jpeg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        p = self.paths[i]
        try:
            if self.gpu_jpeg and Path(p).suffix.lower() in JPEG_EXT:
                data = Path(p).read_bytes()
                if data[:3] == b"\xff\xd8\xff":
                    return i, "jpeg", torch.frombuffer(bytearray(data), dtype=torch.uint8), _exif_orientation(data)
            return i, "px", read_chw(p, self.size), 1
        except DecodeError as e:
            return i, "err", str(e), 0
        except Exception as e:  # noqa: BLE001 - a worker must never die on one file
            return i, "err", f"{p}: {type(e).__name__}: {e}", 0


def _orient(img: torch.Tensor, o: int) -> torch.Tensor:
    """Apply EXIF orientation ``o`` (1..8) to a C×H×W tensor, as PIL's ``ImageOps.exif_transpose`` does."""
    ops = {2: lambda t: t.flip(-1), 3: lambda t: t.flip(-1).flip(-2), 4: lambda t: t.flip(-2),
           5: lambda t: t.transpose(-1, -2), 6: lambda t: torch.rot90(t, -1, (-2, -1)),
           7: lambda t: t.transpose(-1, -2).flip(-1).flip(-2), 8: lambda t: torch.rot90(t, 1, (-2, -1))}
    return ops[o](img) if o in ops else img


class Tagger:
    """Load a model once, then tag paths or PIL images in batches.

    >>> t = Tagger()                                  # shipped default model
    >>> for p in t.tag_paths(["a.jpg", "b.png"]): print(p.path, p.labels)
    """

    def __init__(self, model: str | None = None, device: str | None = "auto", batch_size: int | None = None,
                 workers: int | None = None, threshold: float | None = None, top_k: int | None = None,
                 exclude: Iterable[str] = (), gpu_decode: bool = True, runtime: str = "torch"):
        keep_freed_memory()
        self.device = pick_device(device)
        self.net, self.card = load_model(model, "cpu")
        self.labels = list(self.card.labels)
        unknown = sorted(set(exclude) - set(self.labels))
        if unknown:
            raise ValueError(f"--exclude: unknown label(s) {', '.join(unknown)}; the model knows {', '.join(self.labels)}")
        self.exclude = set(exclude)
        self.thresholds = np.full(len(self.labels), threshold, np.float32) if threshold is not None else np.asarray(self.card.class_thresholds(), np.float32)
        self.top_k = top_k
        self.size = int(self.card.input_size)
        self.cuda = self.device.type == "cuda"
        self.batch_size = batch_size or (64 if self.cuda else 16)
        self.workers = default_workers() if workers is None else workers
        self.gpu_decode = gpu_decode and self.cuda
        self.runtime, self.runtime_reason = self._pick_runtime(runtime)
        self.module = TaggingModel(self.net, self.card.mean, self.card.std).eval().to(self.device)
        if self.cuda:
            self.module = self.module.to(memory_format=torch.channels_last)
        elif self.runtime == "torch":
            self.module = self.module.to(memory_format=torch.channels_last)

    def _pick_runtime(self, runtime: str) -> tuple[str, str]:
        if runtime not in ("auto", "torch", "onnx"):
            raise ValueError(f"--runtime must be auto, torch or onnx, not {runtime!r}")
        if runtime == "torch" or (runtime == "auto" and self.cuda):
            return "torch", "asked for" if runtime == "torch" else "CUDA device"
        if self.cuda:
            raise ValueError("--runtime onnx runs on the CPU only; use --device cpu (or --runtime torch on CUDA)")
        try:  # first use exports the graph into the user cache (seconds); later runs load it
            from imgtag.engine.onnx import OnnxRunner

            self._onnx = OnnxRunner(self.net, self.card)
        except ImportError as e:  # str(e) is the one-line install hint
            if runtime == "onnx":
                raise RuntimeError(str(e)) from e
            return "torch", str(e)
        except Exception as e:  # noqa: BLE001 - a model ONNX cannot express still runs on torch
            if runtime == "onnx":
                raise RuntimeError(f"ONNX export failed: {e}") from e
            return "torch", f"ONNX export failed ({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})"
        return "onnx", "ONNX Runtime is the fastest CPU path"

    @property
    def description(self) -> str:
        dev = torch.cuda.get_device_name(self.device) if self.cuda else f"cpu ({torch.get_num_threads()} threads)"
        rt = f"onnx ({self._onnx.description})" if self.runtime == "onnx" else self.runtime
        return f"device {self.device.type}: {dev}; runtime {rt}; model {self.card.name}"

    # ---- scoring ------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _logits(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 N×3×S×S on self.device → float logits on CPU, splitting the batch on CUDA out-of-memory."""
        if self.runtime == "onnx":
            return torch.from_numpy(self._onnx(images.numpy()))
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.cuda):
                x = images.contiguous(memory_format=torch.channels_last)
                return self.module(x).float().cpu()
        except torch.cuda.OutOfMemoryError:
            if len(images) == 1:
                raise
            torch.cuda.empty_cache()
            self.batch_size = max(1, len(images) // 2)
            print(f"imgtag: CUDA out of memory; batch size backs off to {self.batch_size}", file=os.sys.stderr)
            h = len(images) // 2
            return torch.cat([self._logits(images[:h]), self._logits(images[h:])])

    def _gpu_jpegs(self, items) -> list[torch.Tensor | str]:
        """Decode raw JPEGs on the GPU; returns per item an S×S uint8 tensor, or an error marker for CPU fallback."""
        import torchvision.io as tio

        try:
            decoded = tio.decode_jpeg([d for _, d, _ in items], mode=tio.ImageReadMode.RGB, device=self.device)
        except Exception:  # noqa: BLE001 - nvjpeg refuses some files (CMYK, odd sampling): CPU fallback
            return ["cpu"] * len(items)
        out = []
        for img, (_, _, o) in zip(decoded, items):
            img = _orient(img, o).unsqueeze(0).float()
            img = F.interpolate(img, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
            out.append(img.round_().clamp_(0, 255).to(torch.uint8)[0])
        return out

    def tag_paths(self, paths: Sequence[str | Path]) -> Iterator[Prediction]:
        """Predictions for ``paths`` in order, streamed batch by batch."""
        paths = [str(p) for p in paths]
        ds = _Files(paths, self.size, self.gpu_decode)
        kw = dict(num_workers=self.workers, prefetch_factor=4) if self.workers > 0 else {}
        loader = DataLoader(ds, batch_size=self.batch_size, shuffle=False, collate_fn=list, pin_memory=self.cuda, **kw)
        for items in loader:
            ready: dict[int, torch.Tensor] = {}
            errors: dict[int, str] = {}
            jpegs = [(i, d, o) for i, kind, d, o in items if kind == "jpeg"]
            if jpegs:
                for (i, _, _), img in zip(jpegs, self._gpu_jpegs(jpegs)):
                    if isinstance(img, str):
                        try:
                            ready[i] = read_chw(paths[i], self.size)
                        except DecodeError as e:
                            errors[i] = str(e)
                    else:
                        ready[i] = img
            for i, kind, d, _ in items:
                if kind == "px":
                    ready[i] = d
                elif kind == "err":
                    errors[i] = d
            order = [i for i, *_ in items if i in ready]
            scores = None
            if order:
                batch = torch.stack([ready[i].to(self.device, non_blocking=True) for i in order])
                scores = torch.sigmoid(self._logits(batch)).numpy()
            row = {i: r for r, i in enumerate(order)}
            for i, *_ in items:
                if i in errors:
                    yield Prediction(paths[i], error=errors[i])
                else:
                    s = scores[row[i]]
                    yield Prediction(paths[i], self.select(s), s)

    def tag_images(self, images: Sequence, names: Sequence[str] | None = None) -> list[Prediction]:
        """Tag decoded PIL images (e.g. in a notebook); resized as files are (transparency on white, bilinear)."""
        from imgtag.io.decode import resize_image

        names = list(names) if names is not None else [f"image{i}" for i in range(len(images))]
        out: list[Prediction] = []
        for k in range(0, len(images), self.batch_size):
            chunk = images[k:k + self.batch_size]
            batch = torch.stack([torch.from_numpy(resize_image(im, self.size)).permute(2, 0, 1) for im in chunk]).to(self.device)
            scores = torch.sigmoid(self._logits(batch)).numpy()
            out += [Prediction(n, self.select(s), s) for n, s in zip(names[k:k + self.batch_size], scores)]
        return out

    def score_paths(self, paths: Sequence) -> tuple[np.ndarray, list[str]]:
        """All scores (N×K; NaN rows for files that failed) and the error lines; used by evaluation."""
        scores = np.full((len(paths), len(self.labels)), np.nan, np.float32)
        errors = []
        for i, p in enumerate(self.tag_paths(paths)):
            if p.error:
                errors.append(p.error)
            else:
                scores[i] = p.scores
        return scores, errors

    def select(self, scores: np.ndarray) -> list[tuple[str, float]]:
        """Labels above their threshold, best first; ``top_k`` caps the count; excluded labels dropped."""
        idx = [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] >= self.thresholds[i] and self.labels[i] not in self.exclude]
        if self.top_k:
            idx = idx[: self.top_k]
        return [(self.labels[i], float(scores[i])) for i in idx]
