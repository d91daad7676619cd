"""The runtime layer: runners (one module each, registry.py), the Tagger (batching, decode workers,
selection), the decode loader, memory tuning and the Ray actor. Below the commands (engine/) and the public
API (api.py, ray.py, cli.py); above models/ and io/.

Importing this package is light (no torch): the runner registry lists names without importing runners.
"""
from imgtag.runtime.registry import RUNNERS, Runner, get_runner, register_runner, runner_names

__all__ = ["RUNNERS", "Runner", "get_runner", "register_runner", "runner_names"]
