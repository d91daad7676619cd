"""Which (runtime, precision) tags on the CPU: data from the model card, not code.

A model card's ``metrics["by_precision"]`` holds, per thresholds key (``fp32`` = ONNX Runtime fp32, the
reference; ``int8`` = ONNX Runtime int8; ``RUNTIME:PRECISION``, e.g. ``openvino:int8``), the VOC val mAP and
CF1 at that key's OWN thresholds and the model-only speed relative to fp32, per CPU class
(``speed_vs_fp32: {"avx2": 1.02}``: int8 pays off only with VNNI/AMX, so a speed measured on one class says
nothing about another), measured when the graph was shipped (tools/ship_precision.py). A key *qualifies* for
the CPU default when its mAP is within :data:`MAX_MAP_DROP` and its CF1 within :data:`MAX_CF1_DROP` of fp32;
the default is the fastest qualifying key, measured on this CPU's class at least :data:`MIN_SPEEDUP` × fp32,
whose runtime is installed; fp32 otherwise. :func:`plan` turns ``--runtime`` / ``--precision`` into the
ordered list of (runtime, precision) to try.
"""
from __future__ import annotations

from typing import Any

import functools
from pathlib import Path

MAX_MAP_DROP, MAX_CF1_DROP = 0.3, 0.5
MIN_SPEEDUP = 1.1  # a precision that costs accuracy must be this much faster than fp32 (beyond timing noise)
REFERENCE = "onnx"  # the runtime a bare key ("fp32", "int8") was measured on


@functools.lru_cache(maxsize=1)
def cpu_class() -> str:
    """``amx`` | ``vnni`` (AVX-512 VNNI or AVX-VNNI) | ``avx512`` | ``avx2`` | ``other``: what decides int8 and
    bf16 speed on x86 (from /proc/cpuinfo's flags; ``other`` where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "other"
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    for name, need in (("amx", "amx_int8"), ("vnni", "avx512_vnni"), ("vnni", "avx_vnni"), ("avx512", "avx512f"),
                       ("avx2", "avx2")):
        if need in flags:
            return name
    return "other"


def speed_of(m: dict[str, Any] | None, key: str, cpu: str | None = None) -> float:
    """A key's measured speed relative to fp32 on ``cpu`` (default: this CPU's class); 0 when not measured there."""
    if key == "fp32":
        return 1.0
    v = (m or {}).get("speed_vs_fp32")
    if isinstance(v, dict):
        v = v.get(cpu or cpu_class())
    return float(v or 0.0)


def split_key(key: str) -> tuple[str, str]:
    """``"openvino:int8"`` → ``("openvino", "int8")``; ``"int8"`` → ``("onnx", "int8")``."""
    rt, _, prec = key.rpartition(":")
    return rt or REFERENCE, prec


def qualifies(m: dict[str, Any], ref: dict[str, Any]) -> bool:
    try:
        return ref["mAP"] - m["mAP"] <= MAX_MAP_DROP and ref["CF1"] - m["CF1"] <= MAX_CF1_DROP
    except (KeyError, TypeError):
        return False


def ranked_keys(by_precision: dict[str, Any], qualified_only: bool = True, cpu: str | None = None) -> list[str]:
    """Thresholds keys, fastest on ``cpu`` first (fp32 counts 1.0, unmeasured ones 0); with ``qualified_only``
    just fp32 and the keys that keep mAP/CF1 and are at least :data:`MIN_SPEEDUP` × fp32 there."""
    ref = by_precision.get("fp32")
    keys = [k for k, m in by_precision.items() if not k.startswith("_") and isinstance(m, dict)
            and (k == "fp32" or not qualified_only
                 or (ref and qualifies(m, ref) and speed_of(m, k, cpu) >= MIN_SPEEDUP))]
    if "fp32" not in keys:
        keys.append("fp32")
    return sorted(keys, key=lambda k: -speed_of(by_precision.get(k), k, cpu))


def choose_cpu_key(by_precision: dict[str, Any], installed=None, cpu: str | None = None) -> str | None:
    """The fastest key within the mAP/CF1 bars on ``cpu`` whose runtime is in ``installed`` (None: any); None
    without metrics."""
    if "fp32" not in by_precision:
        return None
    for k in ranked_keys(by_precision, cpu=cpu):
        if installed is None or split_key(k)[0] in installed:
            return k
    return "fp32"


def plan(card, device, runtime: str = "auto", precision: str | None = None,
         auto_runners: list[str] | None = None) -> list[tuple[str, str | None]]:
    """(runtime, precision) pairs to try in order for ``--runtime runtime --precision precision``.

    CUDA: the named runtime (auto: the first of ``auto_runners``) at ``precision``. CPU: the card's measured keys
    that serve the request (no precision: those that qualify; else those at that precision), fastest first,
    then every ``auto_runners`` entry (or the named runtime) at ``precision`` (None = the runner's fp32)."""
    auto_runners = list(auto_runners or [])
    on_cuda = getattr(device, "type", str(device)) == "cuda"
    names = auto_runners if runtime == "auto" else [runtime]
    out: list[tuple[str, str | None]] = []
    if not on_cuda:
        by = (card.metrics or {}).get("by_precision") or {}
        ranked = ranked_keys(by, qualified_only=precision is None) if "fp32" in by else []
        for key in ranked:
            rt, prec = split_key(key)
            if precision and prec != precision:
                continue
            if key == "fp32" and runtime != "auto":
                rt = runtime  # fp32 thresholds serve every runtime that passes parity
            if rt in names and (rt, prec) not in out:
                out.append((rt, None if prec == "fp32" else prec))
        if precision is None and card.cpu_precision not in ("fp32", None):  # a card without measured speeds
            out += [(n, card.cpu_precision) for n in names if (n, card.cpu_precision) not in out]
    out += [(n, precision) for n in names if (n, precision) not in out]
    return out
