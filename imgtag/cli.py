"""The ``imgtag`` command line: thin Typer wrappers that parse options and call the core.

Choices come from the registries (``--format``: io/writers.py, ``--runtime``: runtime/registry.py, heads,
losses and datasets: models/ and data/), ``imgtag train``'s options from :class:`imgtag.engine.config.TrainConfig`
(one place for every default). Nothing heavy is imported before a command runs: ``imgtag --help`` is fast.

Exit codes: 0 all fine, 1 some files failed (or the command failed), 2 usage error, 130 interrupted (Ctrl-C),
143 SIGTERM, 129 SIGHUP (both handled like Ctrl-C: results so far kept). Every failure ends in one line on
stderr; no traceback reaches the user unless IMGTAG_DEBUG=1 (see main()).
"""
from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import os
import shlex
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperCommand

from imgtag.engine.config import TrainConfig
from imgtag.io.writers import WRITERS
from imgtag.runtime.registry import runner_names

ON_EXISTING = ("skip", "merge", "overwrite")
SIDECAR_NAMING = ("auto", "ext", "stem")
ENGINES = ("local", "ray")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Tag images with many labels at once (multi-label image classification).")


def _fail(msg: str, code: int = 1) -> None:
    print(f"imgtag: error: {msg}", file=sys.stderr)
    raise typer.Exit(code)


def _registry(source: str) -> list[str]:
    """The names in a registry given as ``"module:NAME"`` (a dict or a sequence), imported now."""
    module, _, name = source.partition(":")
    return list(getattr(importlib.import_module(module), name))


def _one_of(choices, what: str):
    """A Typer callback: the value must be one of ``choices`` (a list, or a callable giving it) → BadParameter."""
    def check(value):
        names = choices() if callable(choices) else choices
        if value is not None and value not in names:
            raise typer.BadParameter(f"{value!r} is not one of {', '.join(names)}")
        return value
    check.__doc__ = what
    return check


def _probability(value):
    """A Typer callback: None or a number in [0, 1] (NaN refused) → else a usage error (exit 2, one line)."""
    if value is not None and not 0.0 <= value <= 1.0:  # NaN fails both comparisons
        raise typer.BadParameter(f"must be a number from 0 to 1, not {value}")
    return value


def _kv(items: list[str] | None, what: str) -> dict:
    """``key=value`` options (values parsed as JSON when they parse: numbers, true, lists)."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise typer.BadParameter(f"takes key=value, not {it!r}", param_hint=what)
        k, v = it.split("=", 1)
        try:
            out[k.replace("-", "_")] = json.loads(v)
        except ValueError:
            out[k.replace("-", "_")] = v
    return out


def _shard(value: Optional[str]):
    if value is None:
        return None
    from imgtag.io.discover import parse_shard

    try:
        return parse_shard(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


FORMAT_HELP = "; ".join(f"{f}: {w.help}" for f, w in WRITERS.items()) + "."
RUNTIME_HELP = ("auto | " + " | ".join(runner_names())
                + " (auto: torch on CUDA; on the CPU the fastest available, ONNX Runtime when installed).")
Runtime = Annotated[str, typer.Option("--runtime", help=RUNTIME_HELP,
                                      callback=_one_of(lambda: ["auto", *runner_names()], "runtime"))]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N.")]
Precision = Annotated[Optional[str], typer.Option("--precision", help=(
    "fp32 | int8 | bf16: the graph to run, with the card's thresholds for it (default: on the CPU the model's "
    "measured choice, fp32 unless its int8 graph kept mAP/CF1; bf16 autocast on CUDA)."))]
BatchSize = Annotated[Optional[int], typer.Option("--batch-size", "-b", min=1)]
Workers = Annotated[Optional[int], typer.Option("--workers", "-j", min=0, help="Decode worker processes (default: CPU count, max 8).")]
Model = Annotated[Optional[str], typer.Option("--model", "-m", help="Model name or path (default: the shipped default).")]


def _tagger(model, device, batch_size, workers, threshold=None, top_k=None, exclude=(), runtime="torch", precision=None):
    from imgtag.card import ModelFileError
    from imgtag.runtime.tagger import Tagger

    try:
        t = Tagger(model, device=device, batch_size=batch_size, workers=workers, threshold=threshold,
                   top_k=top_k, exclude=exclude, runtime=runtime, precision=precision)
    except (ModelFileError, ValueError, RuntimeError, KeyError) as e:
        _fail(e.args[0] if isinstance(e, KeyError) else str(e), 2)
    if t.fallback:  # auto did not get the fastest runtime for this device
        print(f"imgtag: {t.fallback}; tagging with {t.runtime} instead (slower on CPU)", file=sys.stderr)
    return t


@app.command()
def tag(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Image files and/or directories (walked recursively).")] = None,
    files_from: Annotated[Optional[str], typer.Option("--files-from", "-T", help="Read paths from FILE ('-' = stdin), one per line.")] = None,
    null: Annotated[bool, typer.Option("-0", "--null", help="--files-from is NUL-separated (find -print0).")] = False,
    fmt: Annotated[str, typer.Option("--format", "-f", help=FORMAT_HELP, callback=_one_of(lambda: list(WRITERS), "format"))] = "jsonl",
    output: Annotated[str, typer.Option("--output", "-o", help="Output file, '-' = stdout (not for xmp).")] = "-",
    model: Model = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", "-t", callback=_probability, help="One threshold for all labels, 0..1 (default: the card's per-class thresholds).")] = None,
    top_k: Annotated[Optional[int], typer.Option("--top-k", "-k", min=1, help="At most K labels per image (a keyword vocabulary: the K most specific keywords, each with its path's parents).")] = None,
    exclude: Annotated[list[str], typer.Option("--exclude", "-x", help="Never output this label; a keyword drops its whole subtree (repeatable).")] = [],  # noqa: B006 - Typer's idiom
    on_existing: Annotated[str, typer.Option("--on-existing", help="skip (resume) | merge | overwrite existing results.",
                                             callback=_one_of(ON_EXISTING, "on_existing"))] = "merge",
    shard: Annotated[Optional[str], typer.Option("--shard", help="K/N: tag only the K-th of N parts (split across machines).", callback=_shard)] = None,
    recursive: Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk directories recursively.")] = True,
    sidecar_naming: Annotated[str, typer.Option("--sidecar-naming", help="auto | ext (photo.jpg.xmp) | stem (photo.xmp).",
                                                callback=_one_of(SIDECAR_NAMING, "sidecar_naming"))] = "auto",
    device: Device = "auto",
    runtime: Runtime = "auto",
    precision: Precision = None,
    batch_size: BatchSize = None,
    workers: Workers = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr (errors still).")] = False,
    engine: Annotated[str, typer.Option("--engine", help="local | ray (distributed on a Ray cluster; pip install 'imgtag[ray]').",
                                        callback=_one_of(ENGINES, "engine"))] = "local",
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join ('auto', HOST:PORT); default: a local Ray.")] = None,
    actors: Annotated[Optional[int], typer.Option("--actors", min=1, help="Ray: model replicas (default: one per GPU, else per CPU, of the cluster).")] = None,
    review: Annotated[Optional[str], typer.Option("--review", help="Also write a contact sheet of the results into DIR, to check them by eye (see imgtag review).")] = None,
    corrections: Annotated[Optional[str], typer.Option("--corrections", help="Apply a corrections JSONL from the review sheet: keywords marked wrong are removed for good, missing ones added.")] = None,
):
    """Tag images; JSON Lines on stdout by default, one record per image as it completes."""
    from imgtag.io.discover import read_file_list
    from imgtag.io.writers import is_uri

    paths = list(inputs or [])
    for p in paths:  # arguments are checked now (a typo is a usage error); listed paths fail one by one
        if not os.path.lexists(p) and not (engine == "ray" and is_uri(p)):  # Ray reads URIs itself
            _fail(f"no such file or directory: {p}", 2)
    if files_from:
        try:
            if files_from == "-":
                stream = sys.stdin.buffer if sys.stdin is not None else None
                if stream is None:
                    raise OSError("standard input is closed")
                paths += read_file_list(stream, nul_separated=null)
            else:
                with open(files_from, "rb") as stream:
                    paths += read_file_list(stream, nul_separated=null)
        except OSError as e:
            _fail(f"--files-from {files_from}: cannot read: {(e.strerror or str(e))[:1].lower()}{(e.strerror or str(e))[1:]}", 2)
    if not paths:
        raise typer.BadParameter("no input: give image files or directories, or --files-from", param_hint="INPUTS")
    opts = dict(fmt=fmt, output=output, on_existing=on_existing, shard_spec=shard, recursive=recursive,
                sidecar_naming=sidecar_naming, quiet=quiet)
    fixes = None
    if corrections:
        from imgtag.io.corrections import CorrectionSet, CorrectionsError, read_corrections

        try:
            fixes = CorrectionSet(read_corrections(corrections))
        except (OSError, CorrectionsError) as e:
            _fail(f"--corrections: {e}", 2)
    if engine == "ray" and (review or corrections):
        _fail("--review and --corrections work with the local engine only", 2)
    from imgtag.io.writers import OutputError

    _check_output(fmt, output, on_existing)  # before Ray starts or the model loads: a bad -o fails at once
    if engine == "ray":  # imgtag/engine/tag_ray.py: same inputs, outputs and sidecars, tagged by Ray actors
        from imgtag.engine.tag_ray import RayMissing, run_tag_ray

        with _locked(fmt, output):
            try:
                summary = run_tag_ray(paths, model, address=ray_address, actors=actors, device=device, batch_size=batch_size,
                                      threshold=threshold, top_k=top_k, exclude=exclude, runtime=runtime, **opts)
            except (RayMissing, FileNotFoundError, ValueError) as e:
                _fail(str(e), 2)
            except OutputError as e:
                _output_failed(e)
            except RuntimeError as e:
                _fail(str(e), 1)
        raise typer.Exit(summary.exit_code)
    from imgtag.engine.tag import run_tag

    with _locked(fmt, output):  # one run per -o file, from before the model loads until the output is in place
        tagger = _tagger(model, device, batch_size, workers, threshold, top_k, exclude, runtime, precision)
        records: list[dict] | None = [] if review else None
        try:
            summary = run_tag(paths, tagger, corrections=fixes, collect=records, **opts)
        except (FileNotFoundError, ValueError) as e:
            _fail(str(e), 2)
        except OutputError as e:
            _output_failed(e)
    if review:
        from imgtag.engine.review import card_hints, write_review

        keywords, thresholds = (card_hints(tagger.card) if tagger.card.vocabulary is not None
                                else (tagger.labels, dict(zip(tagger.labels, map(float, tagger.thresholds)))))
        sheet = write_review(records, review, keywords=keywords, thresholds=thresholds)
        print(f"imgtag: review sheet written to {sheet.index} ({sheet.photos} photos, {sheet.pages} pages)", file=sys.stderr)
    raise typer.Exit(summary.exit_code)


def _output_failed(e) -> None:
    """The output failed (io/writers.py OutputError): one line, exit 1; a closed pipe (``| head``) is silent."""
    if e.dest == "-" and e.reason == "broken pipe":
        raise typer.Exit(1)
    _fail(str(e), 1)


def _check_output(fmt: str, output: str, on_existing: str) -> None:
    """Before slow work: the format fits -o, -o can be written, an earlier output there reads (io/writers.py)."""
    from imgtag.engine.pipeline import check_output
    from imgtag.io.writers import OutputError

    try:
        check_output(fmt, output, on_existing)
    except OutputError as e:
        _fail(str(e), 1)
    except ValueError as e:
        _fail(str(e), 2)


def _locked(fmt: str, output: str):
    """Hold -o's lock for the block (io/lock.py): a second run writing the same file is refused (exit 1)."""
    import contextlib

    from imgtag.io.lock import OutputLocked, output_lock
    from imgtag.io.writers import WRITERS, is_special, is_uri

    stack = contextlib.ExitStack()
    if fmt in WRITERS and WRITERS[fmt].beside_images or output == "-" or is_uri(output) or is_special(output):
        return stack
    try:
        stack.enter_context(output_lock(output))
    except OutputLocked as e:
        _fail(str(e), 1)
    except OSError as e:
        _fail(f"cannot lock {output}: {e.strerror or e}", 1)
    return stack


@app.command("untag")
def untag(
    inputs: list[str] = typer.Argument(..., help="Images, folders or .xmp sidecars."),
    sidecar_naming: str = typer.Option("auto", "--sidecar-naming", help="auto | ext | stem, as given to tag."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line."),
):
    """Remove everything imgtag wrote into XMP sidecars (its keywords and imgtag: properties), nothing else."""
    from imgtag.engine.untag import run_untag

    try:
        summary = run_untag(inputs, sidecar_naming=sidecar_naming, recursive=recursive, quiet=quiet)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e), 2)
    raise typer.Exit(summary.exit_code)


@app.command("eval")
def eval_(
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="voc | coco | csv | jsonl | library (your keyworded photos; --split test|train|all).",
                                         callback=_one_of(lambda: _registry("imgtag.data:DATASET_KINDS"), "dataset"))] = "voc",
    root: Annotated[Optional[str], typer.Option("--root", help="Dataset root (VOC year dir, COCO dir, or the csv/jsonl file). Default for voc: ../shared/data/VOCdevkit/VOC2007 or $IMGTAG_VOC_ROOT.")] = None,
    split: Annotated[Optional[str], typer.Option("--split", help="voc/coco: default val. library: default test (the photos `learn --hold-out` leaves out: sha1 of the file name mod 100 < 20), train or all.")] = None,
    model: Model = None,
    ap: Annotated[str, typer.Option("--ap", help="nonint (default) | 11point (VOC07 devkit) | interp (all-point).",
                                    callback=_one_of(("nonint", "11point", "interp"), "ap"))] = "nonint",
    threshold: Annotated[Optional[float], typer.Option("--threshold", "-t", callback=_probability, help="Threshold for CP/CR/F1, 0..1 (default: the card's per-class).")] = None,
    difficult: Annotated[str, typer.Option("--difficult", help="VOC difficult: ignore | positive | negative.",
                                           callback=_one_of(("ignore", "positive", "negative"), "difficult"))] = "ignore",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
    device: Device = "auto",
    runtime: Runtime = "auto",
    precision: Precision = None,
    batch_size: BatchSize = None,
    workers: Workers = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Evaluate only the first N images.")] = 0,
    report: Annotated[Optional[str], typer.Option("--report", help="Also write an HTML report into DIR: PR curves, AP per class, false co-firing, threshold sweep, worst examples (needs matplotlib).")] = None,
    save_scores: Annotated[Optional[str], typer.Option("--save-scores", help="Also save the scores and labels as FILE.npz (no pickle).")] = None,
):
    """Measure a model on a labelled dataset: mAP, CP/CR/CF1, OP/OR/OF1 and per-class AP."""
    from imgtag.engine.evaluate import evaluate

    if report:
        try:
            import matplotlib  # noqa: F401 - checked before the (long) eval, imported for real by the report
        except ImportError:
            _fail("--report needs matplotlib: pip install 'imgtag[report]'", 2)
    root = root or _default_root(dataset)
    split = split or ("test" if dataset == "library" else "val")
    tagger = _tagger(model, device, batch_size, workers, runtime=runtime, precision=precision)
    print(f"imgtag: {tagger.description}", file=sys.stderr)
    kw = {"difficult": difficult} if dataset == "voc" else {}
    try:
        r, arrays = evaluate(tagger, dataset, root, split, ap_mode=ap, threshold=threshold, limit=limit,
                             return_arrays=True, **kw)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e), 2)
    for e in r["failed"]:
        print(f"imgtag: {e}", file=sys.stderr)
    if r.get("warning"):
        print(f"imgtag: warning: {r['warning']}", file=sys.stderr)
    if as_json:
        print(json.dumps(r, indent=2))
    else:
        _print_metrics(r)
    if save_scores:
        print(f"imgtag: scores saved to {arrays.save(save_scores)}", file=sys.stderr)
    if report:  # after the metrics are printed: the report reads them, never changes them
        from imgtag.engine.report import write_report

        problems: list[str] = []
        index = write_report(report, r, arrays, errors=problems)
        for e in problems:
            print(f"imgtag: report: {e}", file=sys.stderr)
        print(f"imgtag: report written to {index}", file=sys.stderr)
    raise typer.Exit(1 if r["failed"] else 0)


def _default_root(dataset: str) -> str:
    if dataset == "voc":
        env = os.environ.get("IMGTAG_VOC_ROOT")
        if env:
            return env
        for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
            cand = base.parent / "shared" / "data" / "VOCdevkit" / "VOC2007"
            if cand.is_dir():
                return str(cand)
    raise typer.BadParameter(f"required for --dataset {dataset}", param_hint="--root")


def _print_metrics(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"{r['model']} on {r['dataset']}:{r['split']} ({r['images']} images, AP {r['ap_mode']})")
    t.add_column("class")
    t.add_column("AP", justify="right")
    for k, v in r["per_class_ap"].items():
        t.add_row(k, f"{v:.2f}")
    con.print(t)
    con.print(f"mAP {r['mAP']:.2f}   CP {r['CP']:.2f}  CR {r['CR']:.2f}  CF1 {r['CF1']:.2f}   "
              f"OP {r['OP']:.2f}  OR {r['OR']:.2f}  OF1 {r['OF1']:.2f}   (threshold: {r['threshold']})", highlight=False)


# ---- imgtag train: one option per TrainConfig field ------------------------------------------------------------
class _RegistryHelpCommand(TyperCommand):
    """Adds the registry names to the help of options with ``choices`` metadata, only when the help is shown
    (the registries import torch; ``imgtag --help`` must not)."""

    lazy_choices: dict[str, str] = {}

    def format_help(self, ctx, formatter):
        for p in self.params:
            source = self.lazy_choices.get(p.name)
            if source and p.help and "[" not in p.help:
                p.help += f" [{' | '.join(_registry(source))}]"
        return super().format_help(ctx, formatter)


def _train_params() -> list[inspect.Parameter]:
    hints = typing.get_type_hints(TrainConfig)
    params = []
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if meta.get("cli") is False:
            continue
        kind, default = hints[f.name], f.default
        flag = meta.get("flag") or "--" + f.name.replace("_", "-")
        decls = [flag] + ([meta["short"]] if meta.get("short") else [])
        callback = _one_of(lambda s=meta["choices"]: _registry(s), f.name) if meta.get("choices") else None
        if f.default_factory is dict:  # key=value options → a dict
            kind, default = list[str], []
        elif kind is bool:
            decls = [f"{flag}/--no-{flag[2:]}"] if default else [flag]
        elif f.name == "root":
            kind, default = Optional[str], None
        elif typing.get_origin(kind) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
            kind = Optional[next(a for a in typing.get_args(kind) if a is not type(None))]
        option = typer.Option(*decls, help=meta.get("help") or None, callback=callback, show_default=True)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                                        annotation=Annotated[kind, option]))
    return params


def train(**options: Any) -> None:
    """Train or fine-tune a model; writes OUT/NAME.safetensors + OUT/NAME.json (the model card)."""
    from imgtag.engine.train import train as run

    for f in dataclasses.fields(TrainConfig):
        if f.default_factory is dict:
            options[f.name] = _kv(options[f.name], f.metadata.get("flag") or "--" + f.name.replace("_", "-"))
    options["root"] = options["root"] or _default_root(options["dataset"])
    if options["pretrained"] == "none":
        options["pretrained"] = None
    cfg = TrainConfig(**options, command="imgtag train " + shlex.join(a for a in sys.argv[2:] if a))
    try:
        run(cfg)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e), 2)


train.__signature__ = inspect.Signature(_train_params())
_RegistryHelpCommand.lazy_choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(TrainConfig)
                                     if f.metadata.get("choices")}
app.command(cls=_RegistryHelpCommand)(train)


@app.command()
def learn(
    inputs: list[str] = typer.Argument(..., help="Photo files and/or directories with your keywords (sidecars, embedded XMP, IPTC)."),
    out: str = typer.Option(..., "--out", "-o", help="Model NAME (saved in imgtag's models folder) or a path."),
    precision: float = typer.Option(0.9, "--precision", help="Precision target for each keyword's threshold."),
    min_examples: int = typer.Option(8, "--min-examples", help="Photos a keyword needs to be learned."),
    keywords: Optional[list[str]] = typer.Option(None, "--keywords", "-k", help="Learn only these keywords (path, leaf or parent; repeatable)."),
    exclude_keywords: Optional[list[str]] = typer.Option(None, "--exclude-keywords", "-x", help="Do not learn these (a parent excludes its subtree)."),
    corrections: Optional[str] = typer.Option(None, "--corrections", help="Review-page corrections (JSON Lines) to use as labels."),
    negative_weight: float = typer.Option(0.3, "--negative-weight", help="Weight of a keyword missing from a keyworded photo (a weak negative)."),
    with_default: bool = typer.Option(False, "--with-default/--only-mine", help="--only-mine (default): the model suggests your keywords only. --with-default: also the base model's own keywords/labels, in the same backbone pass."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Model whose backbone gives the features (default: the shipped default)."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds for the thresholds and the table."),
    hold_out: bool = typer.Option(False, "--hold-out", help="Leave the library's test split (20 % of photos, by file name) out, for `imgtag eval --dataset library --split test`."),
    no_embedded: bool = typer.Option(False, "--no-embedded", help="Read sidecars only (not XMP/IPTC inside the photos)."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive"),
    runtime: str = typer.Option("auto", "--runtime", help="Feature extraction: auto (ONNX Runtime on a CPU) | onnx | torch."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=0, help="Decode processes (0 = in this process)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Learn your own keywords from the photos you have already keyworded; `imgtag tag --model NAME` uses them."""
    from imgtag.card import ModelFileError
    from imgtag.engine.learn import LearnConfig, run_learn
    from imgtag.io.writers import OutputError

    if not 0 < precision <= 1:
        _fail("--precision must be in (0, 1]", 2)
    if min_examples < 2 or folds < 2:
        _fail("--min-examples and --folds must be at least 2", 2)
    cfg = LearnConfig(out=out, min_examples=min_examples, precision=precision, keywords=keywords or [],
                      exclude_keywords=exclude_keywords or [], negative_weight=negative_weight,
                      corrections=corrections, folds=folds, base_model=base_model, with_default=with_default,
                      embedded=not no_embedded, hold_out=hold_out,
                      runtime=runtime, workers=workers)
    try:
        r = run_learn(inputs, cfg, recursive=recursive, progress=not quiet and sys.stderr.isatty(),
                      log=lambda s: print(f"imgtag: {s}", file=sys.stderr))
    except (FileNotFoundError, ValueError, ModelFileError) as e:
        _fail(str(e), 2)
    except OutputError as e:  # --out cannot be written: found before any photo is read
        _fail(str(e), 2)
    if as_json:
        print(json.dumps(r, indent=2, ensure_ascii=False))
    elif not quiet:
        _print_learned(r, precision)
    if "error" in r:
        _fail(r["error"], 1)


def _print_learned(r: dict, precision: float) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console(stderr=True, highlight=False)
    con.print(f"{r['photos_labelled']} keyworded photos, {r['photos_unlabelled']} without keywords (not used), "
              f"{r['problems']} problem(s) reported")
    if r.get("table"):
        t = Table(title=f"learned keywords (thresholds for precision {precision:.2f}, by {r['folds']}-fold cross-validation)")
        for c, j in (("keyword", "left"), ("photos", "right"), ("AP", "right"), ("threshold", "right"),
                     ("precision", "right"), ("recall", "right")):
            t.add_column(c, justify=j)
        for row in r["table"]:
            t.add_row(row["keyword"], str(row["photos"]), f"{row['ap']:.1f}",
                      f"{row['threshold']:.3f}" if row["reached"] else "never",
                      f"{row['precision']:.2f}", f"{row['recall']:.2f}" if row["reached"] else "-")
        con.print(t)
        low = [row["keyword"] for row in r["table"] if not row["reached"]]
        if low:
            con.print(f"cannot reach precision {precision:.2f} (not suggested; add examples or lower --precision): "
                      + ", ".join(low))
    if r["not_learnable"]:
        con.print("not learnable yet (too few photos): "
                  + ", ".join(f"{k} ({n})" for k, n in sorted(r["not_learnable"].items())))
    if r.get("model"):
        f = r["features"]
        con.print(f"features: {f['extracted']} extracted, {f['cached']} from cache, {f['failed']} failed "
                  f"({r['runtime']}); head fitted in {r['fit_s']:.1f} s; total {r['total_s']:.1f} s")
        con.print(f"saved {r['model']}  ->  imgtag tag PHOTOS --model {Path(r['model']).name}")


@app.command()
def models():
    """List the shipped (and $IMGTAG_MODELS) models."""
    from rich.console import Console
    from rich.table import Table

    from imgtag.card import default_model_name, list_models

    t = Table()
    for c in ("name", "architecture", "labels", "input", "mAP", "path"):
        t.add_column(c)
    default = default_model_name()
    for path, card in list_models():
        a = card.architecture
        m = card.metrics.get("mAP")
        t.add_row(card.name + (" (default)" if path.stem == default else ""), f"{a['backbone']} + {a.get('neck', 'none')} + {a['head']}",
                  str(card.num_classes) + (f" + {len(card.vocabulary.get('keywords', []))} keywords" if card.vocabulary else ""),
                  str(card.input_size), f"{m:.2f}" if isinstance(m, (int, float)) else "-", str(path.with_suffix("")))
    Console().print(t)


@app.command()
def info(model: Annotated[str, typer.Argument(help="Model name or path.")] = "default",
         as_json: Annotated[bool, typer.Option("--json", help="Print the whole card as JSON.")] = False):
    """Show a model's card: architecture, labels, thresholds, recipe and metrics."""
    from imgtag.card import ModelFileError, read_card, resolve_model

    try:
        w, c = resolve_model(model)
        card = read_card(c)
    except ModelFileError as e:
        _fail(str(e), 2)
    if as_json:
        print(json.dumps(card.to_dict(), indent=2, ensure_ascii=False))
        return
    print(f"{card.name}: {card.description}\n  files: {w} ({w.stat().st_size / 2**20:.1f} MiB, {card.weights_dtype}), {c}")
    print(f"  architecture: {json.dumps(card.architecture)}")
    print(f"  input: {card.input_size}×{card.input_size}, mean {card.mean}, std {card.std}")
    th = card.class_thresholds()
    print("  labels (threshold): " + ", ".join(f"{lab} ({t:.2f})" for lab, t in zip(card.labels, th)))
    if card.metrics:
        m = card.metrics
        extra = m.get("at_calibrated", {})
        print(f"  metrics on {m.get('dataset', '?')}: mAP {m.get('mAP', float('nan')):.2f}"
              + (f", CF1 {extra['CF1']:.2f}, OF1 {extra['OF1']:.2f} (calibrated thresholds)" if extra else ""))
    if card.recipe.get("command"):
        print(f"  trained with: {card.recipe['command']}")
    if card.vocabulary is not None:
        kws = card.vocabulary.get("keywords", [])
        tops = [k["name"] for k in kws if "|" not in k["path"]]
        print(f"  vocabulary: {len(kws)} keywords under {', '.join(tops)} (heads "
              + ", ".join(f"{h['name']} {h['size']}" for h in card.heads) + f"); `imgtag vocab {card.name}` lists them")


@app.command("vocab")
def vocab(model: Annotated[str, typer.Argument(help="Model name or path.")] = "default",
          as_json: Annotated[bool, typer.Option("--json", help="Print the same data as JSON.")] = False,
          depth: Annotated[Optional[int], typer.Option("--depth", min=1, help="Show only the top N levels.")] = None):
    """List a model's keywords as a tree, with each keyword's threshold per head."""
    from imgtag.runtime.vocabulary import ModelFileError, to_json, tree, vocabulary

    try:
        data = vocabulary(model)
    except ModelFileError as e:
        _fail(str(e), 2)
    if depth:
        data["keywords_total"] = len(data["keywords"])
        data["keywords"] = [r for r in data["keywords"] if r["depth"] < depth]
    if as_json:
        print(to_json(data))
        return
    from rich.console import Console

    Console(highlight=False).print(tree(data))


@app.command()
def review(
    results: str = typer.Argument(..., help="Tag results: the JSONL (or JSON) file `imgtag tag -o` wrote."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Folder for the sheet (default: RESULTS without its extension + '-review')."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="The model that tagged: its labels are offered as 'missing' keywords, its thresholds order the photos (default: the shipped default)."),
    per_page: int = typer.Option(200, "--per-page", help="Photos per page."),
    thumb_size: int = typer.Option(200, "--thumb-size", help="Thumbnail size in pixels (longest side)."),
    serve: bool = typer.Option(False, "--serve", help="Serve the sheet on 127.0.0.1 so 'Save to imgtag' writes the corrections file."),
    port: int = typer.Option(0, "--port", help="--serve: the port (default: a free one)."),
    corrections: Optional[str] = typer.Option(None, "--corrections", help="--serve: the corrections file to write (default: SHEET/corrections.jsonl)."),
):
    """Write a contact sheet of tag results to check by eye; decisions come back as a corrections JSONL."""
    from imgtag.card import ModelFileError
    from imgtag.engine.review import model_hints, read_records, serve_sheet, write_review

    src = Path(results)
    if not src.is_file():
        _fail(f"{results}: no such file", 2)
    try:
        records = read_records(src)
    except (ValueError, UnicodeDecodeError) as e:
        _fail(str(e), 2)
    try:
        labels, thresholds = model_hints(model)
    except ModelFileError as e:
        if model:
            _fail(str(e), 2)
        labels, thresholds = [], {}
    out = Path(output) if output else src.with_name(src.stem + "-review")
    sheet = write_review(records, out, per_page=per_page, thumb_size=thumb_size, keywords=labels,
                         thresholds=thresholds, base=src.parent, title=f"imgtag review: {src.name}")
    for e in sheet.failed:
        print(f"imgtag: {e}", file=sys.stderr)
    print(f"imgtag: review sheet: {sheet.photos} photos, {sheet.keywords} keywords, {sheet.pages} pages", file=sys.stderr)
    print(sheet.index)
    if serve:
        serve_sheet(out, corrections or out / "corrections.jsonl", port,
                    announce=lambda msg: print(f"imgtag: {msg}", file=sys.stderr, flush=True))


@app.command("export")
def export_(
    model: Annotated[str, typer.Argument(help="Model name or path.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx (the only format so far).",
                                     callback=_one_of(("onnx",), "format"))] = "onnx",
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="Output file (default: NAME.onnx, or NAME-int8.onnx, in the current directory).")] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset.")] = 17,
    fixed_size: Annotated[bool, typer.Option("--fixed-size", help="Fix H×W to the card's input size (default: dynamic H×W when verified).")] = False,
    int8: Annotated[bool, typer.Option("--int8", help="Static int8 quantisation (needs --calib; fixed H×W): ~1.6× faster on CPU, scores shift a little.")] = False,
    calib: Annotated[Optional[str], typer.Option("--calib", help="--int8: training images to calibrate on (folder, or a file listing paths).")] = None,
    calib_count: Annotated[int, typer.Option("--calib-count", min=1, help="--int8: number of calibration images drawn.")] = 128,
):
    """Export a model for deployment: ONNX, input 'images' uint8 RGB N×3×H×W, output 'logits' N×K, the card in its metadata."""
    from imgtag.card import ModelFileError
    from imgtag.models.model import load_model

    if int8 != bool(calib):
        raise typer.BadParameter("--int8 and --calib go together (int8 is calibrated on training images)", param_hint="--calib")
    try:
        from imgtag.runtime.onnx import export_onnx, quantize_int8

        net, card = load_model(model)
        out = output or f"{Path(card.name).name}{'-int8' if int8 else ''}.onnx"
        dyn = False if fixed_size else None
        if int8:
            from imgtag.io.discover import iter_image_paths

            src = Path(calib)
            files = ([ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip()] if src.is_file()
                     else list(iter_image_paths([src])))
            path = quantize_int8(net, card, out, files, n=calib_count, opset=opset)  # fixed H×W
        else:
            path = export_onnx(net, card, out, opset=opset, dynamic_hw=dyn)
    except ModelFileError as e:
        _fail(str(e), 2)
    except (ImportError, RuntimeError, OSError, ValueError) as e:
        _fail(str(e))
    print(f"imgtag: wrote {path} ({path.stat().st_size / 2**20:.1f} MiB{', int8' if int8 else ''}): images uint8 N×3×H×W "
          f"(trained at {card.input_size}) → logits N×{card.num_outputs}, "
          + ("heads " + " + ".join(f"{h['name']} {h['size']} ({h.get('activation', 'sigmoid')})" for h in card.heads)
             if card.heads else "score = sigmoid(logit)"), file=sys.stderr)


def _std_streams() -> None:
    """Started with a standard stream closed (``2>&-``, ``>&-``, ``<&-``): put /dev/null on its descriptor, so a
    file opened later cannot take descriptor 0-2 and receive stray output. A closed stderr then discards messages
    instead of Python sending them to stdout (which corrupted the JSONL); a closed stdout stays ``None`` for
    Python, so results meant for it fail with one line; a closed stdin reads as closed (``-T -``: one line)."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
            if fd == 2:
                sys.stderr = open(fd, "w", closefd=False)  # noqa: SIM115 - lives as long as the process


def _quiet_stdout() -> None:
    """After stdout failed (full disk, closed pipe), let the interpreter's last flush succeed silently."""
    try:
        if sys.stdout is not None:
            sys.stdout.flush()
    except (OSError, ValueError):
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
        except (OSError, ValueError):
            pass


def _click():
    """The click exceptions typer raises (typer >= 0.2x carries its own copy of click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # pragma: no cover - an older typer on the real click
        from click import exceptions
    return exceptions


def _abort() -> type[BaseException]:
    try:
        from typer.exceptions import Abort
    except ImportError:  # pragma: no cover
        from click.exceptions import Abort
    return Abort


_SIGNALLED: list[int] = []  # the termination signal received, if any


def _on_signal(signum, frame) -> None:
    """SIGTERM/SIGHUP (kill, timeout, systemd, docker, SLURM, a closed terminal) stop the run like Ctrl-C: the
    results so far are kept in a complete output and no temp file is left. A second one while the output is
    being finished is ignored. (SIGINT: recorded, then Python's own KeyboardInterrupt, a second one included.)"""
    import signal

    if signum == signal.SIGINT:
        _SIGNALLED.append(signum)
        raise KeyboardInterrupt
    if _SIGNALLED:
        return
    _SIGNALLED.append(signum)
    raise KeyboardInterrupt


def _quiet_threads() -> None:
    """An exception in a helper thread (e.g. multiprocessing's fd server when decode workers stop mid-request
    after a signal) printed a traceback: now nothing once the run was interrupted, else one line."""
    import threading

    def hook(exc_type, exc, tb=None, thread_name=None):
        if _SIGNALLED or issubclass(exc_type, (KeyboardInterrupt, SystemExit)):
            return
        msg = " ".join(str(exc).split()) or exc_type.__name__
        where = f" in thread {thread_name}" if thread_name else ""
        print(f"imgtag: error{where}: {msg} ({exc_type.__name__}; IMGTAG_DEBUG=1 shows the traceback)", file=sys.stderr)

    if os.environ.get("IMGTAG_DEBUG"):
        return
    sys.excepthook = hook
    threading.excepthook = lambda a: hook(a.exc_type, a.exc_value, a.exc_traceback,
                                          getattr(a.thread, "name", None))


def main(argv: list[str] | None = None) -> None:
    """The ``imgtag`` entry point: every failure ends in one line on stderr, and no traceback reaches the user
    unless ``IMGTAG_DEBUG=1``. Exit codes: 0, 1 (files failed / the command failed), 2 (usage error, one line
    ``imgtag: error: ...``), 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP)."""
    import signal

    from imgtag.runtime.memory import keep_freed_memory

    click = _click()

    _SIGNALLED.clear()
    _std_streams()
    _quiet_threads()
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        if sig != signal.SIGINT or signal.getsignal(sig) is signal.default_int_handler:  # not if SIGINT is ignored
            signal.signal(sig, _on_signal)
    keep_freed_memory()
    code = 0
    try:
        try:
            code = app(args=argv, prog_name="imgtag", standalone_mode=False) or 0
        except click.NoArgsIsHelpError as e:  # `imgtag` or `imgtag tag` alone: the help, as before
            print(e.ctx.get_help())
            code = 0
    except BrokenPipeError:  # stdout's reader went away (`| head`): quiet, as usual for a filter
        code = 1
    except click.ClickException as e:  # a usage error: one line, exit 2
        msg = " ".join(e.format_message().split())
        if isinstance(e, click.UsageError) and e.ctx is not None and e.ctx.command_path:
            msg += f" (see {e.ctx.command_path} --help)"
        print(f"imgtag: error: {msg}", file=sys.stderr)
        code = e.exit_code
    except (KeyboardInterrupt, _abort()):
        print("imgtag: interrupted", file=sys.stderr)
        code = 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, not a traceback
        if os.environ.get("IMGTAG_DEBUG"):
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"imgtag: error: {msg} ({type(e).__name__}; IMGTAG_DEBUG=1 shows the traceback)", file=sys.stderr)
        code = 1
    finally:
        _quiet_stdout()
    if code == 130 and _SIGNALLED:
        code = 128 + _SIGNALLED[0]
    sys.exit(code)


if __name__ == "__main__":
    main()
