"""The Tagger: batched inference behind ``imgtag tag``, ``imgtag eval``, the Python API and the Ray actors.

files → decode workers (:class:`~imgtag.runtime.loader.ImageFiles`: uint8 S×S, or raw JPEG bytes for GPU
decode) → runner (registry.py: torch, onnx, ...) → logits → labels (runtime/selection.py: the card's labels, or
its keyword vocabulary with hierarchy paths when it has one).

* CPU: images decode and resize in parallel worker processes (PIL, JPEG draft mode); ``runtime="auto"`` takes
  the fastest available runner (ONNX Runtime, else torch with the reason in ``runtime_reason``).
* CUDA: JPEGs are read as bytes by the workers and decoded in batches on the GPU (torchvision nvjpeg), rotated
  per EXIF and resized there; other formats, and JPEGs nvjpeg refuses, decode on the CPU workers. The torch
  runner runs bf16 autocast, channels_last, and backs the batch size off on out-of-memory.
* Results stream in input order, one :class:`Prediction` per file; a file that fails yields a prediction
  with ``error`` set and the run goes on.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from imgtag.io.decode import DecodeError
from imgtag.io.records import Label, make_record
from imgtag.models.model import load_model
from imgtag.runtime.device import pick_device
from imgtag.runtime.loader import ImageFiles, decode_jpegs, default_workers, loader, read_chw
from imgtag.runtime.memory import keep_freed_memory
from imgtag.runtime.precision import plan
from imgtag.runtime.registry import auto_order, get_runner
from imgtag.runtime.selection import make_selector, sigmoid


@dataclass
class Prediction:
    path: str
    labels: list[Label] = field(default_factory=list)  # best first
    scores: np.ndarray | None = None  # the K scores of the first head (sigmoid), when the image decoded
    error: str | None = None
    logits: np.ndarray | None = None  # the raw logits row (all heads: ``card.num_outputs``), when it decoded

    def to_record(self) -> dict:
        return make_record(self.path, self.labels, self.error)


def make_runner(runtime: str, net, card, device: torch.device, precision: str | None = None, **kw):
    """``(runner, reason, first)``: the runner for ``runtime`` (a name or ``auto``) and ``precision`` (None: on the
    CPU the card's measured default, :func:`~imgtag.runtime.precision.plan`), why it was taken (for a fallback:
    why the preferred one was not) and whether it was the first choice. ``auto`` tries the plan in order (a runtime
    that is not installed, cannot express the model, fails parity or lacks the precision's graph/thresholds is
    passed over); a named runtime with a named precision must work: RuntimeError/ValueError (one line)."""
    if runtime != "auto":
        cls = get_runner(runtime)
        reason = cls.available(device)
        if reason:
            raise RuntimeError(reason)
        if precision and precision not in cls.precisions:
            raise ValueError(f"--runtime {runtime} runs {', '.join(cls.precisions)}, not {precision!r}")
    tries = plan(card, device, runtime, precision, auto_order(device) if runtime == "auto" else None)
    first_reason = error = None
    for k, (name, prec) in enumerate(tries):
        cls = get_runner(name)
        reason = cls.available(device) or (f"{name} has no {prec}" if prec and prec not in cls.precisions else None)
        if reason is None:
            try:
                runner = cls(net, card, device, precision=prec, **kw)
                if k == 0:
                    why = ("asked for" if runtime != "auto" else "CUDA device" if device.type == "cuda" else
                           f"{name} is the fastest CPU runtime here" if not prec else
                           f"{name} {prec}: the fastest here that keeps this model's accuracy (its card's measurements)")
                    return runner, why, True
                return runner, first_reason, False
            except ImportError as e:
                reason, error = str(e), e
            except Exception as e:  # noqa: BLE001 - a model a runtime cannot express still runs on the next
                reason, error = f"{name} failed ({type(e).__name__}: {_first_line(e)[:200]})", e
        first_reason = first_reason or reason
    if runtime != "auto" and error is not None:
        if isinstance(error, ImportError):
            raise RuntimeError(str(error)) from error
        raise RuntimeError(f"--runtime {runtime}: {type(error).__name__}: {_first_line(error)}") from error
    raise RuntimeError(f"no runtime can run this model on {device}: {first_reason}")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else ""


class Tagger:
    """Load a model once, then tag paths or PIL images in batches.

    >>> t = Tagger()                                  # shipped default model
    >>> for p in t.tag_paths(["a.jpg", "b.png"]): print(p.path, [(lab.label, lab.score) for lab in p.labels])

    ``runtime``: a runner name (:func:`~imgtag.runtime.registry.runner_names`) or ``auto``; ``precision``: one
    the runner offers (None: on the CPU the fastest (runtime, precision) the card measured within 0.3 mAP and
    0.5 CF1 of fp32, :mod:`imgtag.runtime.precision`, else fp32). The thresholds are the card's for that precision and runtime. Selection (``threshold``/``top_k``/``exclude``) is :attr:`selector`.
    """

    def __init__(self, model: str | Path | None = None, device: str | None = "auto", batch_size: int | None = None,
                 workers: int | None = None, threshold: float | None = None, top_k: int | None = None,
                 exclude: Iterable[str] = (), gpu_decode: bool = True, runtime: str = "torch",
                 precision: str | None = None, **runner_kw):
        keep_freed_memory()
        self.device = pick_device(device)
        self.net, self.card = load_model(model, "cpu")
        self.labels = list(self.card.labels)
        self.size = int(self.card.input_size)
        self.cuda = self.device.type == "cuda"
        self.batch_size = batch_size or (64 if self.cuda else 16)
        self.workers = default_workers() if workers is None else workers
        self.gpu_decode = gpu_decode and self.cuda
        # no precision asked for: on the CPU the card's measured choice (runtime/precision.py), else fp32
        self.runner, self.runtime_reason, first = make_runner(runtime, self.net, self.card, self.device, precision,
                                                              **runner_kw)
        self.runtime = self.runner.name
        self.precision = getattr(self.runner, "precision", "fp32")
        if threshold is None:  # thresholds calibrated on this precision's scores (fp32: the card's own)
            fp32_like = self.precision in getattr(self.runner, "fp32_thresholds", ("fp32",))
            threshold = self.card.class_thresholds(precision=None if fp32_like else self.precision, runtime=self.runtime)
        self.selector = make_selector(self.card, threshold, top_k, exclude)
        self.input_device = torch.device(getattr(self.runner, "device", "cpu"))  # where the runner wants its input
        #: why ``auto`` did not get its first choice (None when it did, or a runtime was named)
        self.fallback = None if runtime != "auto" or first else self.runtime_reason

    @property
    def thresholds(self) -> np.ndarray:
        return self.selector.thresholds

    @property
    def description(self) -> str:
        dev = torch.cuda.get_device_name(self.device) if self.cuda else f"cpu ({torch.get_num_threads()} threads)"
        return f"device {self.device.type}: {dev}; runtime {self.runtime} ({self.runner.description}); model {self.card.name}"

    # ---- scoring ------------------------------------------------------------------------------------------
    def logits_batch(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """uint8 N×3×S×S → float32 logits N×W (every head, ``card.num_outputs`` columns)."""
        logits = np.asarray(self.runner(images), dtype=np.float32)
        max_batch = getattr(self.runner, "max_batch", None)  # the runner backed off (CUDA out of memory)
        if max_batch:
            self.batch_size = min(self.batch_size, max_batch)
        return logits

    def scores_of(self, logits: np.ndarray) -> np.ndarray:
        """The first head's K scores (sigmoid) of logits rows: what evaluation (mAP) measures."""
        return sigmoid(np.asarray(logits)[..., : len(self.labels)])

    def score_batch(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """uint8 N×3×S×S → float32 scores N×K (sigmoid of the first head's logits)."""
        return self.scores_of(self.logits_batch(images))

    def select(self, logits: np.ndarray) -> list[Label]:
        """One image's labels from its logits row: above their thresholds, best (most specific) first, with their
        hierarchy path when the model has a vocabulary; ``top_k`` caps the count; excluded labels (subtrees) dropped."""
        return self.selector.from_logits(np.asarray(logits)[None])[0]

    def _predictions(self, names: Sequence[str], logits: np.ndarray) -> list[Prediction]:
        scores = self.scores_of(logits)
        return [Prediction(n, labs, s, logits=row)
                for n, labs, s, row in zip(names, self.selector.from_logits(logits), scores, logits)]

    def tag_paths(self, paths: Sequence[str | Path]) -> Iterator[Prediction]:
        """Predictions for ``paths`` in order, streamed batch by batch."""
        paths = [str(p) for p in paths]
        ds = ImageFiles(paths, self.size, jpeg_bytes=self.gpu_decode)
        for items in loader(ds, self.batch_size, self.workers, collate_fn=list, pin_memory=self.cuda):
            ready: dict[int, torch.Tensor] = {it.index: it.pixels for it in items if it.pixels is not None}
            errors: dict[int, str] = {it.index: it.error for it in items if it.error}
            jpegs = [it for it in items if it.jpeg is not None]
            for it, img in zip(jpegs, decode_jpegs(jpegs, self.size, self.device) if jpegs else ()):
                if img is not None:
                    ready[it.index] = img
                    continue
                try:  # nvjpeg refused: decode on the CPU
                    ready[it.index] = read_chw(paths[it.index], self.size)
                except DecodeError as e:
                    errors[it.index] = str(e)
            order = [it.index for it in items if it.index in ready]
            done = {}
            if order:
                logits = self.logits_batch(torch.stack([ready[i].to(self.input_device, non_blocking=True) for i in order]))
                done = dict(zip(order, self._predictions([paths[i] for i in order], logits)))
            for it in items:
                i = it.index
                yield Prediction(paths[i], error=errors[i]) if i in errors else done[i]

    def tag_pixels(self, pixels: Sequence[np.ndarray], names: Sequence[str]) -> list[Prediction]:
        """Tag decoded images: uint8 H×W×3 arrays already resized to the model's S×S (``io.decode.load_resized``)."""
        out: list[Prediction] = []
        for k in range(0, len(pixels), self.batch_size):
            chunk = pixels[k:k + self.batch_size]
            batch = np.ascontiguousarray(np.stack(chunk).transpose(0, 3, 1, 2))
            logits = self.logits_batch(torch.from_numpy(batch).to(self.input_device))
            out += self._predictions(names[k:k + self.batch_size], logits)
        return out

    def tag_images(self, images: Sequence, names: Sequence[str] | None = None) -> list[Prediction]:
        """Tag decoded PIL images (e.g. in a notebook); resized as files are (transparency on white, bilinear)."""
        from imgtag.io.decode import resize_image

        names = list(names) if names is not None else [f"image{i}" for i in range(len(images))]
        return self.tag_pixels([resize_image(im, self.size) for im in images], names)

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
