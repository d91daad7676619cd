"""The OpenVINO runner (``pip install 'imgtag[openvino]'``, Apache-2.0): the model's ONNX graph compiled by
OpenVINO for the CPU.

* ``fp32``: the graph the ONNX runner exports (the same export cache), compiled with
  ``INFERENCE_PRECISION_HINT=f32``: OpenVINO's CPU default is bf16 where the CPU has it, which moved logits by up
  to 0.5. Checked against torch on a probe batch when built (max |Δlogit| ≤ :data:`PARITY` × max(1, max
  |logit|); measured 4.8e-6 against ONNX Runtime on VOC val); a mismatch raises, so ``--runtime auto`` goes on
  to the next runner.
* ``int8``: the model's shipped int8 QDQ graph (``NAME.int8.onnx`` beside the card); OpenVINO folds the QDQ pairs
  into its own int8 kernels, whose scores differ from ONNX Runtime's (up to ~0.9 logit on VOC val), so it runs
  only with thresholds calibrated on its own scores (``thresholds_by_precision["openvino:int8"]``).
* ``bf16``: ``INFERENCE_PRECISION_HINT=bf16``, only on a CPU OpenVINO runs bf16 on (AVX512-BF16 / AMX) and with
  ``bf16`` thresholds in the card; elsewhere OpenVINO silently runs f32 (measured on the AVX2 test box).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from imgtag.runtime.registry import register_runner

INSTALL_HINT = "OpenVINO is not installed: pip install openvino (or 'imgtag[openvino]')"
PARITY = 1e-4
HINT = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}  # int8: the layers left in float run f32


def _require():
    try:
        import openvino
    except ImportError as e:
        raise ImportError(INSTALL_HINT) from e
    return openvino


@register_runner("openvino")
class OpenVinoRunner:
    """``runner(uint8 N×3×S×S numpy or torch) -> float32 logits N×K`` with OpenVINO on the CPU.

    ``threads``: inference threads (default $IMGTAG_ORT_THREADS, else physical cores), one stream, no pinning
    (the CPU is shared with the decode workers)."""

    precisions = ("fp32", "int8", "bf16")
    auto_priority = 5  # after ONNX Runtime (a core dependency; the same fp32 speed within noise here)

    @classmethod
    def available(cls, device) -> str | None:
        if getattr(device, "type", str(device)) != "cpu":
            return "--runtime openvino runs on the CPU only"
        try:
            _require()
        except ImportError as e:
            return str(e)
        return None

    def __init__(self, net, card, device="cpu", precision: str | None = None, threads: int | None = None,
                 cache_dir: str | Path | None = None):
        ov = _require()
        from imgtag.runtime.onnx import cached_graph, physical_cores, precision_graph, weights_id

        self.ov, self.card = ov, card
        self.precision = precision or "fp32"
        if self.precision not in self.precisions:
            raise ValueError(f"--runtime openvino runs {', '.join(self.precisions)}, not {self.precision!r}")
        self.threads = threads or int(os.environ.get("IMGTAG_ORT_THREADS") or 0) or physical_cores()
        core = ov.Core()
        if self.precision == "bf16":
            if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                raise RuntimeError("this CPU has no bf16 OpenVINO uses (AVX512-BF16/AMX): it would run f32")
            if card.precision_key("bf16", self.name) is None:  # bf16 or openvino:bf16
                raise RuntimeError(f"model {card.name} has no thresholds calibrated for bf16")
        if self.precision == "int8":
            self.path = precision_graph(card, "int8", weights_id(net, card), f"{self.name}:int8")
        else:
            self.path = cached_graph(net, card, cache_dir)
        cfg = {"INFERENCE_NUM_THREADS": self.threads, "INFERENCE_PRECISION_HINT": HINT[self.precision],
               "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1, "ENABLE_CPU_PINNING": False}
        self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", cfg)
        self.request = self.compiled.create_infer_request()
        self.parity = self._check(net, card) if self.precision == "fp32" else None

    def _check(self, net, card) -> float:
        """fp32 parity with torch on a probe batch; RuntimeError when off."""
        import torch

        from imgtag.models.model import TaggingModel
        from imgtag.runtime.onnx import _probe

        x = _probe(2, int(card.input_size), int(card.input_size))
        with torch.inference_mode():
            ref = TaggingModel(net, card.mean, card.std).eval()(x).float().numpy()
        diff = float(np.abs(self(x.numpy()) - ref).max())
        if not diff <= PARITY * max(1.0, float(np.abs(ref).max())):
            raise RuntimeError(f"OpenVINO f32 does not match torch: max |Δlogit| = {diff:.3g}")
        return diff

    @property
    def description(self) -> str:
        return (f"openvino {self.ov.__version__.split('-')[0]} CPU, {self.threads} thread{'s' * (self.threads != 1)}, "
                f"{self.precision}")

    def __call__(self, images) -> np.ndarray:
        if not isinstance(images, np.ndarray):
            images = images.cpu().numpy()
        x = np.ascontiguousarray(images, dtype=np.uint8)
        return self.request.infer({0: x}, share_inputs=True)[0].copy()
