"""The runner registry: which engines can run a model's forward pass (``imgtag tag --runtime``).

A runner turns uint8 RGB images N×3×S×S (numpy or torch) into float32 logits N×K (numpy). It is a class
registered with :func:`register_runner`::

    @register_runner("mine")
    class MyRunner:
        precisions = ("fp32",)          # what ``precision=`` may be
        auto_priority = 5               # --runtime auto on the CPU takes the available runner with the highest
        @classmethod
        def available(cls, device) -> str | None:   # None, or the one-line reason it cannot run there
            ...
        def __init__(self, net, card, device, precision="fp32", **kw): ...
        description: str                # one line, e.g. "onnxruntime 1.31 CPU, 2 threads, fp32"
        def __call__(self, images) -> np.ndarray: ...   # uint8 N×3×S×S → float32 logits N×K

Adding a runtime is one new module holding such a class plus one line in :data:`BUILTIN` (name → module,
imported on first use so that listing the names, e.g. for ``imgtag --help``, imports neither torch nor the
runtime). Runners registered at run time (a plug-in, a test) need no line there.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

#: built-in runners: name → module that registers it (imported lazily). One line per runtime.
BUILTIN: dict[str, str] = {
    "torch": "imgtag.runtime.torch_runner",
    "onnx": "imgtag.runtime.onnx",
    "openvino": "imgtag.runtime.openvino",
}
RUNNERS: dict[str, type] = {}  # name → runner class, filled as modules register


@runtime_checkable
class Runner(Protocol):
    name: ClassVar[str]
    precisions: ClassVar[tuple[str, ...]]
    auto_priority: ClassVar[int]
    description: str

    @classmethod
    def available(cls, device: Any) -> str | None: ...

    def __call__(self, images: Any) -> Any: ...


def register_runner(name: str) -> Callable[[type], type]:
    """Class decorator: register a runner under ``name`` (sets ``cls.name``)."""

    def deco(cls: type) -> type:
        if RUNNERS.get(name, cls) is not cls:
            raise ValueError(f"runner {name!r} is already registered ({RUNNERS[name].__module__})")
        cls.name = name
        cls.precisions = tuple(getattr(cls, "precisions", ("fp32",)))
        cls.auto_priority = int(getattr(cls, "auto_priority", 0))
        RUNNERS[name] = cls
        return cls

    return deco


def runner_names() -> list[str]:
    """Every runner name (built-in and registered), without importing any runner."""
    return list(dict.fromkeys([*BUILTIN, *RUNNERS]))


def get_runner(name: str) -> type:
    """The runner class for ``name``; ValueError for an unknown name."""
    if name not in RUNNERS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in RUNNERS:
        raise ValueError(f"--runtime must be auto or one of {', '.join(runner_names())}, not {name!r}")
    return RUNNERS[name]


def auto_order(device) -> list[str]:
    """Runner names to try for ``--runtime auto`` on ``device``: torch on CUDA; on the CPU the highest
    ``auto_priority`` first (ONNX Runtime before torch today)."""
    if getattr(device, "type", str(device)) == "cuda":
        return ["torch"]
    classes = []
    for name in runner_names():
        try:
            classes.append(get_runner(name))
        except ImportError:  # a built-in whose module cannot be imported here
            continue
    return [c.name for c in sorted(classes, key=lambda c: -c.auto_priority)]
