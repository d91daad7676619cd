"""The OpenVINO runner (``pip install 'imgtag[openvino]'``, Apache-2.0): the model's ONNX graph compiled by
OpenVINO for the CPU.

* ``fp32``: the graph the ONNX runner exports (the same export cache), compiled with
  ``INFERENCE_PRECISION_HINT=f32``: OpenVINO's CPU default is bf16 where the CPU has it, which moved logits by up
  to 0.5. Checked against torch on a probe batch when built (max |Δlogit| ≤ :data:`PARITY` × max(1, max
  |logit|); measured 4.8e-6 against ONNX Runtime on VOC val); a mismatch raises, so ``--runtime auto`` goes on
  to the next runner.
* ``int8``: the model's shipped int8 OpenVINO IR (``NAME.openvino-int8.xml/.bin`` beside the card: NNCF
  post-training quantisation, tools/ship_precision.py), else its int8 QDQ ONNX graph (``NAME.int8.onnx``, which
  OpenVINO folds into its own int8 kernels). Either runs only with thresholds calibrated on OpenVINO's own int8
  scores (``thresholds_by_precision["openvino:int8"]``) and only when the graph was made from these weights.
* ``bf16``: ``INFERENCE_PRECISION_HINT=bf16``, only on a CPU OpenVINO runs bf16 on (AVX512-BF16 / AMX) and with
  ``bf16`` thresholds in the card; elsewhere OpenVINO silently runs f32 (measured on the AVX2 test box).
"""
from __future__ import annotations

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


def config(precision: str, threads: int, streams: int = 1) -> dict:
    """The compile settings every OpenVINO graph of imgtag runs with: ``threads`` inference threads in all, split
    over ``streams`` (1: one request uses every thread), no pinning (the CPU is shared with the decode workers),
    f32 unless bf16 is asked for."""
    return {"INFERENCE_NUM_THREADS": int(threads), "INFERENCE_PRECISION_HINT": HINT[precision],
            "PERFORMANCE_HINT": "LATENCY" if streams == 1 else "THROUGHPUT", "NUM_STREAMS": int(streams),
            "ENABLE_CPU_PINNING": False}


def compile_graph(path, precision: str = "fp32", threads: int = 1, streams: int = 1):
    """An ONNX file or OpenVINO IR (.xml) compiled for the CPU with :func:`config`."""
    ov = _require()
    core = ov.Core()
    return core.compile_model(core.read_model(str(path)), "CPU", config(precision, threads, streams))


def ir_weights_sha256(path) -> str | None:
    """The weights sha256 an imgtag IR was made from (rt_info ``imgtag/weights_sha256``), None if absent."""
    ov = _require()
    m = ov.Core().read_model(str(path))
    try:
        return str(m.get_rt_info(["imgtag", "weights_sha256"]).astype(str))
    except Exception:  # noqa: BLE001 - not an imgtag IR
        return None


def int8_graph(card, sha: str, key: str) -> Path:
    """The shipped int8 IR (``NAME.openvino-int8.xml``), else the QDQ ONNX graph, checked to be made from these
    weights and to come with OpenVINO-int8 thresholds (``key``); RuntimeError (one line) otherwise."""
    from imgtag.runtime.onnx import precision_graph

    xml = Path(card.source).with_suffix(".openvino-int8.xml") if card.source else None
    if xml is None or not xml.is_file():
        return precision_graph(card, "int8", sha, key)
    if ir_weights_sha256(xml) != sha:
        raise RuntimeError(f"{xml}: made from other weights than {card.name}'s")
    if key not in card.thresholds_by_precision:
        raise RuntimeError(f"model {card.name} has no thresholds calibrated for {key}")
    return xml


@register_runner("openvino")
class OpenVinoRunner:
    """``runner(uint8 N×3×S×S numpy or torch) -> float32 logits N×K`` with OpenVINO on the CPU.

    ``threads``: inference threads (default :func:`imgtag.runtime.onnx.default_threads`), no pinning (the CPU is
    shared with the decode workers). ``streams`` (default ``$IMGTAG_OV_STREAMS`` or 1): with more than one, a
    batch is split over that many parallel requests, each on threads/streams threads (no barrier across
    threads inside a layer)."""

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
                 cache_dir: str | Path | None = None, streams: int | None = None):
        ov = _require()
        from imgtag.runtime.onnx import cached_graph, default_threads, weights_id

        self.ov, self.card = ov, card
        self.precision = precision or "fp32"
        if self.precision not in self.precisions:
            raise ValueError(f"--runtime openvino runs {', '.join(self.precisions)}, not {self.precision!r}")
        self.threads = threads or default_threads()
        core = ov.Core()
        self.parity = None
        if self.precision == "bf16":
            if "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
                raise RuntimeError("this CPU has no bf16 OpenVINO uses (AVX512-BF16/AMX): it would run f32")
            if card.precision_key("bf16", self.name) is None:  # bf16 or openvino:bf16
                raise RuntimeError(f"model {card.name} has no thresholds calibrated for bf16")
        if self.precision == "int8":
            self.path = int8_graph(card, weights_id(net, card), f"{self.name}:int8")
        else:
            self.path = cached_graph(net, card, cache_dir)
        import os

        self.streams = max(1, min(int(streams or os.environ.get("IMGTAG_OV_STREAMS") or 1), self.threads))
        self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU",
                                           config(self.precision, self.threads, self.streams))
        self.requests = [self.compiled.create_infer_request() for _ in range(self.streams)]
        self.request = self.requests[0]
        if self.precision == "fp32":
            self.parity = self._check(net, card)

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
        streams = f" in {self.streams} streams" if self.streams > 1 else ""
        return (f"openvino {self.ov.__version__.split('-')[0]} CPU, {self.threads} thread{'s' * (self.threads != 1)}"
                f"{streams}, {self.precision}")

    def __call__(self, images) -> np.ndarray:
        if not isinstance(images, np.ndarray):
            images = images.cpu().numpy()
        x = np.ascontiguousarray(images, dtype=np.uint8)
        if self.streams == 1 or len(x) < 2:
            return self.request.infer({0: x}, share_inputs=True)[0].copy()
        parts = [p for p in np.array_split(x, self.streams) if len(p)]
        for req, p in zip(self.requests, parts):
            req.start_async({0: np.ascontiguousarray(p)}, share_inputs=True)
        out = []
        for req in self.requests[:len(parts)]:
            req.wait()
            out.append(req.get_output_tensor(0).data.copy())
        return np.concatenate(out)
