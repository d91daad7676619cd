"""``imgtag tag`` end to end, local engine: discover → (shard, resume) → Tagger → writer, with progress.

Results go to stdout (JSON Lines by default) or ``-o FILE`` (written atomically) or, with ``--format xmp``,
to one sidecar per image; the formats are io/writers.py's registry. Everything meant for people (device,
progress, one line per bad file, the summary) goes to stderr, so stdout stays machine-readable in pipelines.

``on_existing`` decides what happens to results already there (from an interrupted or earlier run):
``skip`` keeps them and tags only the rest (resume), ``merge`` re-tags and merges (sidecars keep all other
metadata; an output file keeps records of images not in this run), ``overwrite`` replaces them.
An interrupted run (Ctrl-C) still finishes its output file with every record completed so far.
The steps around tagging are engine/pipeline.py's, shared with the Ray engine (tag_ray.py).
"""
from __future__ import annotations

from imgtag.engine.pipeline import TagSummary, discover, open_output, plan_run, write_results
from imgtag.runtime.tagger import Tagger


def run_tag(inputs: list[str], tagger: Tagger, fmt: str = "jsonl", output: str = "-", on_existing: str = "merge",
            shard_spec: tuple[int, int] | None = None, recursive: bool = True, sidecar_naming: str = "auto",
            quiet: bool = False, console=None, corrections=None, collect: list | None = None) -> TagSummary:
    """Tag ``inputs`` (files and folders) with ``tagger``; ValueError / FileNotFoundError for bad arguments.

    ``corrections``: an :class:`imgtag.io.corrections.CorrectionSet` applied to every record before it is written;
    ``collect``: a list that receives every record written (``--review``)."""
    writer = open_output(fmt, output, on_existing, model_name=tagger.card.name, sidecar_naming=sidecar_naming)
    paths, walk_failed = discover(inputs, recursive, shard_spec)
    plan = plan_run(paths, writer, on_existing, None)
    plan.summary.failed += walk_failed
    plan.summary.total += len(walk_failed)
    records = (pred.to_record() for pred in tagger.tag_paths(plan.todo))
    if corrections is not None:
        records = map(corrections.apply, records)
    if collect is not None:
        records = _kept(records, collect)
    return write_results(records, writer, plan, tagger.description, quiet, console)


def _kept(records, into: list):
    for r in records:
        into.append(r)
        yield r
