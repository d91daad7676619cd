"""``imgtag untag PATHS``: remove everything imgtag wrote into XMP sidecars, and nothing else.

For each image given or found in the folders given, its sidecar (``--sidecar-naming``, as ``tag`` found it) and,
in the folders, every ``*.xmp`` file too (sidecars of any naming, and of images since deleted): the keywords
imgtag recorded as its own (``imgtag:Added*``; for sidecars of earlier versions, their ``imgtag|...`` entries)
and every ``imgtag:`` property are removed; every other property stays as it was. A sidecar imgtag created is
deleted when nothing else is left in it. Sidecars without imgtag data are not touched. A sidecar that cannot be
read or written gets one line on stderr naming it and the reason; the run goes on (exit 1).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from imgtag.io.discover import iter_image_paths
from imgtag.io.xmp import SidecarNamer, XmpError, untag_sidecar


@dataclass
class UntagSummary:
    untagged: int = 0
    deleted: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def line(self) -> str:
        return (f"{self.untagged} sidecars cleaned, {self.deleted} deleted, {self.unchanged} without imgtag data, "
                f"{len(self.failed)} failed")


def _sidecars(inputs, namer: SidecarNamer, recursive: bool, on_error=None):
    """Each sidecar once: those of the images, and the *.xmp files found in the folders or given."""
    seen: set[str] = set()

    def once(p: Path):
        key = os.path.normpath(p)
        if key not in seen:
            seen.add(key)
            yield p

    for inp in map(Path, inputs):
        if inp.suffix.lower() == ".xmp" and not inp.is_dir():
            yield from once(inp)
            continue
        for image in iter_image_paths([inp], recursive=recursive, on_error=on_error):
            yield from once(namer(image))
        if inp.is_dir():
            walk = os.walk(inp) if recursive else [(str(inp), [], os.listdir(inp))]
            for root, dirs, files in walk:
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(files):
                    if name.lower().endswith(".xmp") and not name.startswith("."):
                        yield from once(Path(root) / name)


def run_untag(inputs: list[str], sidecar_naming: str = "auto", recursive: bool = True,
              quiet: bool = False) -> UntagSummary:
    """Untag the sidecars of ``inputs`` (images, folders, or .xmp files); see the module docstring."""
    namer = SidecarNamer(sidecar_naming)
    summary = UntagSummary()
    for p in inputs:  # a missing argument is a usage error; problems inside the folders are one line each
        if not os.path.lexists(p):
            raise FileNotFoundError(f"no such file or directory: {p}")

    def walk_problem(path: str, why: str) -> None:
        summary.failed.append(f"{path}: {why}")
        print(f"imgtag: {summary.failed[-1]}", file=sys.stderr, flush=True)
    for side in _sidecars(inputs, namer, recursive, walk_problem):
        try:
            status = untag_sidecar(side)
        except (XmpError, OSError) as e:
            msg = str(e) if isinstance(e, XmpError) else f"{side}: not untagged: {e.strerror or e}"
            summary.failed.append(msg)
            print(f"imgtag: {msg}", file=sys.stderr, flush=True)
            continue
        if status == "untagged":
            summary.untagged += 1
        elif status == "deleted":
            summary.deleted += 1
        elif status == "unchanged":
            summary.unchanged += 1
    if not quiet:
        print(f"imgtag: {summary.line()}", file=sys.stderr, flush=True)
    return summary
