"""The one result pipeline of ``imgtag tag``, shared by the local engine (tag.py) and the Ray engine (tag_ray.py).

An engine turns paths into result records (io/records.py); this module does everything around that:

* :func:`open_output`: the writer for ``--format``/``-o`` (io/writers.py registry), options checked up front;
* :func:`plan_run`: ``--shard``, the earlier results at the destination (``writer.previous()``), and with
  ``--on-existing skip`` the paths that still need tagging (``writer.done``);
* :func:`write_results`: writes the earlier records this run does not redo (``merge``/``skip`` keep them),
  then every new record, counts the tagged and failed files (one line on stderr per failure), shows the
  progress bar, and on Ctrl-C still finishes the output with every record completed so far;
* :class:`TagSummary`: the counts, the summary line and the exit code.
"""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from imgtag.io.discover import iter_image_paths, shard
from imgtag.io.writers import OutputError, WriteFailed, Writer, make_writer

ON_EXISTING = ("skip", "merge", "overwrite")


def report_error(msg: str) -> None:
    """One line for people on stderr (stdout stays machine-readable)."""
    print(f"imgtag: {msg}", file=sys.stderr, flush=True)


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


class Progress:
    """A rich progress bar on stderr (plain when stderr is not a terminal; rich honours NO_COLOR), after one
    line naming what tags (device, runtime, model)."""

    def __init__(self, console, total: int | None, description: str):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        console = console or Console(stderr=True)
        console.print(f"imgtag: {description}", highlight=False)
        self.p = Bar(TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                     transient=True, disable=not console.is_terminal)
        self.task = self.p.add_task("tag", total=total)
        self.p.start()

    def advance(self, n: int) -> None:
        self.p.advance(self.task, n)

    def stop(self) -> None:
        self.p.stop()


def discover(inputs: list[str], recursive: bool, shard_spec: tuple[int, int] | None) -> tuple[list[str], list[str]]:
    """The image paths of this run (sharded by a spelling-independent key) and the walk's problems, each
    already reported on stderr as one line "path: reason" (missing listed files, FIFOs, unreadable
    directories, symlink loops); they count as failed files."""
    failed: list[str] = []

    def on_error(path: str, reason: str) -> None:
        failed.append(f"{path}: {reason}")
        report_error(failed[-1])
    paths = [str(p) for p in iter_image_paths(inputs, recursive=recursive, on_error=on_error, shard_spec=shard_spec)]
    return paths, failed


def check_output(fmt: str, output: str, on_existing: str, **options) -> Writer:
    """Everything about ``--format``/``-o`` that can fail, checked before the model loads: the format fits the
    destination (ValueError), the destination can be written (:class:`OutputError`: a missing or read-only
    directory, a closed stdout), and an earlier output to resume or merge from is this format's (ValueError,
    one line naming the file). Returns the (not yet opened) writer."""
    from imgtag.io.writers import check_output as writable

    writer = open_output(fmt, output, on_existing, **options)
    if not writer.beside_images:
        writable(output)
        if on_existing != "overwrite":
            writer.previous()  # read again by plan_run, which reports what it tolerates
    return writer


def open_output(fmt: str, output: str, on_existing: str, **options) -> Writer:
    """The (not yet opened) writer for ``--format``/``-o``; ValueError for options that do not fit."""
    if on_existing not in ON_EXISTING:
        raise ValueError(f"--on-existing must be {', '.join(ON_EXISTING[:-1])} or {ON_EXISTING[-1]}")
    return make_writer(fmt, output, on_existing=on_existing, **options)


class _NoOutput(Writer):
    """Records already written where they were made: nothing to write, nothing to replay."""

    def open(self):
        self.f = sys.stderr
        return self

    def write(self, record):
        pass

    def close(self):
        self.f = None


@dataclass
class Plan:
    paths: list[str]  # this run's share of the inputs (after --shard)
    previous: dict[str, dict]  # earlier records at the destination, by path
    todo: list[str]  # the paths to tag
    summary: TagSummary


def plan_run(paths: list[str], writer: Writer, on_existing: str, shard_spec: tuple[int, int] | None = None) -> Plan:
    """Shard the discovered paths, read earlier results and pick what to tag (see the module docstring)."""
    if shard_spec:
        paths = [str(p) for p in shard(paths, *shard_spec)]
    previous = {} if on_existing == "overwrite" else writer.previous(warn=report_error)
    todo = [p for p in paths if not writer.done(p, previous)] if on_existing == "skip" else list(paths)
    return Plan(paths, previous, todo, TagSummary(total=len(paths), skipped=len(paths) - len(todo)))


def write_results(records: Iterable[dict], writer: Writer | None, plan: Plan, description: str, quiet: bool = False,
                  console=None, known_paths: bool = True) -> TagSummary:
    """Write ``records`` (one per image, as the engine yields them) through ``writer``; returns the summary.

    ``writer=None``: the records were written where they were made (the Ray actors' sidecars); only counted.
    ``known_paths=False`` (inputs listed by the engine as it goes, e.g. a bucket): the total grows with the
    results, and earlier records of paths this run did not see are kept, written after the new ones.
    On Ctrl-C (and SIGTERM/SIGHUP, see cli.main) the output is finished with every record completed so far.
    :class:`OutputError` (the output itself cannot be written: full disk, closed stdout) propagates after the
    writer is aborted (no temp file left, an existing output untouched); other exceptions propagate after the
    output is closed with the records completed so far.
    """
    summary = plan.summary
    redo = set(plan.todo)
    seen: set[str] = set()
    writer = writer or _NoOutput()
    writer.open()
    t0 = time.time()
    progress = None
    try:
        if known_paths:
            for p, r in plan.previous.items():  # keep earlier results of images this run does not re-tag
                if p not in redo:
                    writer.write(r)
        progress = None if quiet else Progress(console, len(plan.todo) if known_paths else None, description)
        for rec in records:
            seen.add(rec["path"])
            if "error" in rec:
                summary.failed.append(rec["error"])
                report_error(rec["error"])
            try:
                writer.write(rec)
                summary.tagged += "error" not in rec
            except WriteFailed as e:
                summary.failed.append(str(e))
                report_error(str(e))
            if not known_paths:
                summary.total = summary.tagged + len(summary.failed) + summary.skipped
            if progress:
                progress.advance(1)
    except KeyboardInterrupt:  # Ctrl-C, and SIGTERM/SIGHUP (cli.main turns them into this)
        summary.interrupted = True
        report_error(f"interrupted: {summary.tagged} images done; rerun with --on-existing skip to resume")
    except OutputError:  # the output itself failed (full disk): the writer is aborted, no temp file left
        writer.abort()
        raise
    except BaseException:  # e.g. the Ray job failed: keep what was completed, then tell
        _finish(writer, plan, seen, known_paths)
        raise
    finally:
        if progress:
            progress.stop()
        close = getattr(records, "close", None)
        if close is not None:  # a generator: stop the engine now (decode workers end with the run, not after it)
            with contextlib.suppress(Exception):
                close()
    _finish(writer, plan, seen, known_paths)
    return summary.finish(t0, quiet)


def _finish(writer: Writer, plan: Plan, seen: set[str], known_paths: bool) -> None:
    if not known_paths:  # earlier results not re-tagged, kept last
        for p in [p for p in plan.previous if p not in seen]:
            writer.write(plan.previous[p])
    writer.close()  # complete records only: safe to resume from
