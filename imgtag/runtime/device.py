"""``pick_device``: the one place a ``--device`` string becomes a torch device (tagging, evaluation, training)."""
from __future__ import annotations

import torch


def pick_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None: CUDA when available, else the CPU; otherwise ``cpu``, ``cuda``, ``cuda:N``.
    ValueError (a usage error) for an unknown device or CUDA asked for where there is none."""
    if spec in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"--device must be auto, cpu, cuda or cuda:N, not {spec!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda asked for, but no CUDA GPU is available")
    return dev
