"""Which (runtime, precision) tags on the CPU: data from the model card, not code.

A model card's ``metrics["by_precision"]`` holds, per thresholds key (``fp32`` = ONNX Runtime fp32, the
reference; ``int8`` = ONNX Runtime int8; ``RUNTIME:PRECISION``, e.g. ``openvino:int8``), the VOC val mAP and
CF1 at that key's OWN thresholds and the model-only speed relative to fp32 measured when the graph was shipped
(tools/ship_precision.py). A key *qualifies* for the CPU default when its mAP is within :data:`MAX_MAP_DROP` and
its CF1 within :data:`MAX_CF1_DROP` of fp32; the default is the fastest qualifying key whose runtime is installed.
:func:`plan` turns ``--runtime`` / ``--precision`` into the ordered list of (runtime, precision) to try.
"""
from __future__ import annotations

from typing import Any

MAX_MAP_DROP, MAX_CF1_DROP = 0.3, 0.5
REFERENCE = "onnx"  # the runtime a bare key ("fp32", "int8") was measured on


def split_key(key: str) -> tuple[str, str]:
    """``"openvino:int8"`` → ``("openvino", "int8")``; ``"int8"`` → ``("onnx", "int8")``."""
    rt, _, prec = key.rpartition(":")
    return rt or REFERENCE, prec


def qualifies(m: dict[str, Any], ref: dict[str, Any]) -> bool:
    try:
        return ref["mAP"] - m["mAP"] <= MAX_MAP_DROP and ref["CF1"] - m["CF1"] <= MAX_CF1_DROP
    except (KeyError, TypeError):
        return False


def ranked_keys(by_precision: dict[str, Any], qualified_only: bool = True) -> list[str]:
    """Thresholds keys, fastest first (``speed_vs_fp32``; unmeasured ones after, fp32 counting 1.0); with
    ``qualified_only`` just the keys that keep mAP/CF1 (fp32 always does)."""
    ref = by_precision.get("fp32")
    keys = [k for k, m in by_precision.items() if not k.startswith("_") and isinstance(m, dict)
            and (k == "fp32" or not qualified_only or (ref and qualifies(m, ref)))]
    if "fp32" not in keys:
        keys.append("fp32")
    speed = {k: float((by_precision.get(k) or {}).get("speed_vs_fp32") or (1.0 if k == "fp32" else 0.0)) for k in keys}
    return sorted(keys, key=lambda k: -speed[k])


def choose_cpu_key(by_precision: dict[str, Any], installed=None) -> str | None:
    """The fastest key within the mAP/CF1 bars whose runtime is in ``installed`` (None: any); None without metrics."""
    if "fp32" not in by_precision:
        return None
    for k in ranked_keys(by_precision):
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
