"""``imgtag tag`` end to end: discover → (shard, resume) → Tagger → writers / XMP sidecars, with progress.

Results go to stdout (JSON Lines by default) or ``-o FILE`` (written atomically) or, with ``--format xmp``,
to one sidecar per image. Everything meant for people (device, progress, one line per bad file, the summary)
goes to stderr, so stdout stays machine-readable in pipelines.

``on_existing`` decides what happens to results already there (from an interrupted or earlier run):
``skip`` keeps them and tags only the rest (resume), ``merge`` re-tags and merges (sidecars keep all other
metadata; an output file keeps records of images not in this run), ``overwrite`` replaces them.
An interrupted run (Ctrl-C) still finishes its output file with every record completed so far.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from imgtag.engine.predict import Tagger
from imgtag.io.discover import iter_image_paths, shard
from imgtag.io.writers import make_writer
from imgtag.io.xmp import XmpError, read_sidecar_labels, sidecar_path, write_sidecar

FORMATS = ("jsonl", "json", "csv", "txt", "xmp")


@dataclass
class TagSummary:
    total: int = 0
    tagged: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def finish(self, t0: float, quiet: bool = False) -> "TagSummary":
        """Record the elapsed time since ``t0`` and, unless quiet, print the summary line on stderr."""
        self.seconds = time.time() - t0
        if not quiet:
            rate = self.tagged / self.seconds if self.seconds > 0 else 0.0
            report_error(f"{self.tagged} tagged, {self.skipped} skipped, {len(self.failed)} failed "
                         f"of {self.total} in {self.seconds:.1f}s ({rate:.1f} images/s)")
        return self

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (1 if self.failed else 0)


def _existing_records(dest: str, fmt: str) -> dict[str, dict]:
    """Records of an earlier run in ``dest`` (jsonl/json only; other formats cannot be resumed from)."""
    p = Path(dest)
    if dest == "-" or not p.exists() or fmt not in ("jsonl", "json"):
        return {}
    text = p.read_text(encoding="utf-8")
    recs = [json.loads(line) for line in text.splitlines() if line.strip()] if fmt == "jsonl" else json.loads(text or "[]")
    return {r["path"]: r for r in recs if "labels" in r}


def select_todo(paths: list[str], fmt: str, on_existing: str, old: dict, sidecar_naming: str = "auto") -> list[str]:
    """The paths to tag: all, or with ``skip`` those without earlier results (a sidecar with imgtag labels,
    or a record in the existing output file)."""
    if on_existing != "skip":
        return paths
    if fmt == "xmp":
        return [p for p in paths if not read_sidecar_labels(sidecar_path(p, sidecar_naming))]
    return [p for p in paths if p not in old]


def report_error(msg: str) -> None:
    print(f"imgtag: {msg}", file=sys.stderr, flush=True)


def plan_run(paths: list[str], fmt: str, output: str, on_existing: str, sidecar_naming: str,
             shard_spec: tuple[int, int] | None, existing=None) -> tuple[list[str], dict, list[str], TagSummary]:
    """Shard the discovered paths, read earlier results and pick what to tag; shared by both engines.

    Returns ``(paths, earlier records by path, paths to tag, summary with total and skipped counts)``.
    """
    if shard_spec:
        paths = [str(p) for p in shard(paths, *shard_spec)]
    summary = TagSummary(total=len(paths))
    old = {} if on_existing == "overwrite" or fmt == "xmp" else (existing or _existing_records)(output, fmt)
    todo = select_todo(paths, fmt, on_existing, old, sidecar_naming)
    summary.skipped = len(paths) - len(todo)
    return paths, old, todo, summary


def run_tag(inputs: list[str], tagger: Tagger, fmt: str = "jsonl", output: str = "-", on_existing: str = "merge",
            shard_spec: tuple[int, int] | None = None, recursive: bool = True, sidecar_naming: str = "auto",
            quiet: bool = False, console=None) -> TagSummary:
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}")
    if on_existing not in ("skip", "merge", "overwrite"):
        raise ValueError("--on-existing must be skip, merge or overwrite")
    paths = [str(p) for p in iter_image_paths(inputs, recursive=recursive)]
    paths, old, todo, summary = plan_run(paths, fmt, output, on_existing, sidecar_naming, shard_spec)
    err = report_error
    writer = make_writer(fmt, output) if fmt != "xmp" else None
    if writer:
        writer.open()
        redo = set(todo)
        for p, r in old.items():  # keep earlier results of images this run does not re-tag
            if p not in redo:
                writer.write(r)
    t0 = time.time()
    progress = None if quiet else _progress(console, len(todo), tagger.description)
    try:
        for pred in tagger.tag_paths(todo):
            if pred.error:
                summary.failed.append(pred.error)
                err(pred.error)
            elif fmt == "xmp":
                try:
                    write_sidecar(pred.path, pred.labels, mode="overwrite" if on_existing == "overwrite" else "merge",
                                  model_name=tagger.card.name, naming=sidecar_naming)
                    summary.tagged += 1
                except (XmpError, OSError) as e:
                    summary.failed.append(f"{pred.path}: sidecar not written: {e}")
                    err(summary.failed[-1])
            else:
                summary.tagged += 1
            if writer:
                writer.write(pred.to_record())
            if progress:
                progress.advance(1)
    except KeyboardInterrupt:
        summary.interrupted = True
        err(f"interrupted: {summary.tagged} images done; rerun with --on-existing skip to resume")
    finally:
        if progress:
            progress.stop()
        if writer:
            writer.close()  # complete records only: safe to resume from
    return summary.finish(t0, quiet)


class _progress:
    """A rich progress bar on stderr (plain when stderr is not a terminal; rich honours NO_COLOR)."""

    def __init__(self, console, total: int, description: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = console or Console(stderr=True)
        console.print(f"imgtag: {description}", highlight=False)
        self.p = Progress(TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.speed} img/s" if False else ""),
                          TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)
        self.task = self.p.add_task("tag", total=total)
        self.p.start()

    def advance(self, n: int) -> None:
        self.p.advance(self.task, n)

    def stop(self) -> None:
        self.p.stop()
