"""The ``imgtag`` command line: thin Typer wrappers that parse options and call the core.

Exit codes: 0 all fine, 1 some files failed (or the command failed), 2 usage error, 130 interrupted.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer

from imgtag.io.writers import WRITERS
from imgtag.runtime.registry import runner_names

FORMAT_HELP = "; ".join(f"{f}: {w.help}" for f, w in WRITERS.items())
RUNTIME_HELP = ("auto | " + " | ".join(runner_names())
                + " (auto: torch on CUDA; on the CPU the fastest available, ONNX Runtime when installed).")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Tag images with many labels at once (multi-label image classification).")


def _fail(msg: str, code: int = 1) -> None:
    print(f"imgtag: error: {msg}", file=sys.stderr)
    raise typer.Exit(code)


def _kv(items: list[str] | None, what: str) -> dict:
    """``key=value`` options (values parsed as JSON when they parse: numbers, true, lists)."""
    out = {}
    for it in items or []:
        if "=" not in it:
            _fail(f"{what} takes key=value, not {it!r}", 2)
        k, v = it.split("=", 1)
        try:
            out[k.replace("-", "_")] = json.loads(v)
        except ValueError:
            out[k.replace("-", "_")] = v
    return out


def _tagger(model, device, batch_size, workers, threshold=None, top_k=None, exclude=(), runtime="torch"):
    from imgtag.card import ModelFileError
    from imgtag.runtime.tagger import Tagger

    try:
        t = Tagger(model, device=device, batch_size=batch_size, workers=workers, threshold=threshold,
                   top_k=top_k, exclude=exclude, runtime=runtime)
    except (ModelFileError, ValueError, RuntimeError) as e:
        _fail(str(e), 2)
    if t.fallback:  # auto did not get the fastest runtime for this device
        print(f"imgtag: {t.fallback}; tagging with {t.runtime} instead (slower on CPU)", file=sys.stderr)
    return t


@app.command()
def tag(
    inputs: list[str] = typer.Argument(None, help="Image files and/or directories (walked recursively)."),
    files_from: Optional[str] = typer.Option(None, "--files-from", "-T", help="Read paths from FILE ('-' = stdin), one per line."),
    null: bool = typer.Option(False, "-0", "--null", help="--files-from is NUL-separated (find -print0)."),
    fmt: str = typer.Option("jsonl", "--format", "-f", help=FORMAT_HELP),
    output: str = typer.Option("-", "--output", "-o", help="Output file, '-' = stdout (not for xmp)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model name or path (default: the shipped default)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="One threshold for all labels (default: the card's per-class thresholds)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", "-k", help="At most K labels per image."),
    exclude: list[str] = typer.Option([], "--exclude", "-x", help="Never output this label (repeatable)."),
    on_existing: str = typer.Option("merge", "--on-existing", help="skip (resume) | merge | overwrite existing results."),
    shard: Optional[str] = typer.Option(None, "--shard", help="K/N: tag only the K-th of N parts (split across machines)."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Walk directories recursively."),
    sidecar_naming: str = typer.Option("auto", "--sidecar-naming", help="auto | ext (photo.jpg.xmp) | stem (photo.xmp)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda | cuda:N."),
    runtime: str = typer.Option("auto", "--runtime", help=RUNTIME_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Decode worker processes (default: CPU count, max 8)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary on stderr (errors still)."),
    engine: str = typer.Option("local", "--engine", help="local | ray (distributed on a Ray cluster; pip install 'imgtag[ray]')."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="Ray cluster to join ('auto', HOST:PORT); default: a local Ray."),
    actors: Optional[int] = typer.Option(None, "--actors", help="Ray: model replicas (default: one per GPU, else per CPU, of the cluster)."),
):
    """Tag images; JSON Lines on stdout by default, one record per image as it completes."""
    from imgtag.engine.tag import run_tag
    from imgtag.io.discover import parse_shard, read_file_list

    paths = list(inputs or [])
    for p in paths:  # arguments are checked now (a typo is a usage error); listed paths fail one by one
        if not os.path.lexists(p):
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
            _fail(f"--files-from {files_from}: cannot read: {e.strerror or e}", 2)
    if not paths:
        _fail("no input: give image files or directories, or --files-from", 2)
    try:
        spec = parse_shard(shard) if shard else None
    except ValueError as e:
        _fail(str(e), 2)
    if engine not in ("local", "ray"):
        _fail("--engine must be local or ray", 2)
    if engine == "ray":  # imgtag/engine/tag_ray.py: same inputs, outputs and sidecars, tagged by Ray actors
        from imgtag.engine.tag_ray import RayMissing, run_tag_ray

        try:
            summary = run_tag_ray(paths, model, fmt=fmt, output=output, on_existing=on_existing, shard_spec=spec,
                                  recursive=recursive, sidecar_naming=sidecar_naming, quiet=quiet, address=ray_address,
                                  actors=actors, device=device, batch_size=batch_size, threshold=threshold,
                                  top_k=top_k, exclude=exclude, runtime=runtime)
        except (RayMissing, FileNotFoundError, ValueError) as e:
            _fail(str(e), 2)
        except RuntimeError as e:
            _fail(str(e), 1)
        raise typer.Exit(summary.exit_code)
    tagger = _tagger(model, device, batch_size, workers, threshold, top_k, exclude, runtime)
    try:
        summary = run_tag(paths, tagger, fmt=fmt, output=output, on_existing=on_existing, shard_spec=spec,
                          recursive=recursive, sidecar_naming=sidecar_naming, quiet=quiet)
    except FileNotFoundError as e:
        _fail(str(e), 2)
    except ValueError as e:
        _fail(str(e), 2)
    raise typer.Exit(summary.exit_code)


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
    dataset: str = typer.Option("voc", "--dataset", "-d", help="voc | coco | csv | jsonl | library (your keyworded photos; --split all|train|test)."),
    root: Optional[str] = typer.Option(None, "--root", help="Dataset root (VOC year dir, COCO dir, or the csv/jsonl file). Default for voc: ../shared/data/VOCdevkit/VOC2007 or $IMGTAG_VOC_ROOT."),
    split: str = typer.Option("val", "--split"),
    model: Optional[str] = typer.Option(None, "--model", "-m"),
    ap: str = typer.Option("nonint", "--ap", help="nonint (default) | 11point (VOC07 devkit) | interp (all-point)."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t", help="Threshold for CP/CR/F1 (default: the card's per-class)."),
    difficult: str = typer.Option("ignore", "--difficult", help="VOC difficult: ignore | positive | negative."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
    device: str = typer.Option("auto", "--device"),
    runtime: str = typer.Option("auto", "--runtime", help=RUNTIME_HELP),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j"),
    limit: int = typer.Option(0, "--limit", help="Evaluate only the first N images."),
):
    """Measure a model on a labelled dataset: mAP, CP/CR/CF1, OP/OR/OF1 and per-class AP."""
    from imgtag.engine.evaluate import evaluate

    root = root or _default_root(dataset)
    tagger = _tagger(model, device, batch_size, workers, runtime=runtime)
    print(f"imgtag: {tagger.description}", file=sys.stderr)
    kw = {"difficult": difficult} if dataset == "voc" else {}
    try:
        r = evaluate(tagger, dataset, root, split, ap_mode=ap, threshold=threshold, limit=limit, **kw)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e), 2)
    for e in r["failed"]:
        print(f"imgtag: {e}", file=sys.stderr)
    if as_json:
        print(json.dumps(r, indent=2))
    else:
        _print_metrics(r)
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
    _fail(f"--root is required for --dataset {dataset}", 2)


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


@app.command()
def train(
    dataset: str = typer.Option("voc", "--dataset", "-d", help="voc | coco | csv | jsonl | library (your keyworded photos; --split all|train|test)."),
    root: Optional[str] = typer.Option(None, "--root", help="Dataset root (or the training csv/jsonl file)."),
    val_root: Optional[str] = typer.Option(None, "--val-root", help="csv/jsonl: the validation file."),
    train_split: str = typer.Option("train", "--train-split"),
    val_split: str = typer.Option("val", "--val-split"),
    backbone: str = typer.Option("tf_efficientnet_lite2", "--backbone", help="Any timm model name (or mltr_s/m/l)."),
    pretrained: str = typer.Option("imagenet", "--pretrained", help="imagenet (offline packages) | none | PATH to weights."),
    head: str = typer.Option("gap", "--head", help="gap | csra | q2l | gcn | mldecoder."),
    head_opt: list[str] = typer.Option([], "--head-opt", help="Head option key=value (repeatable), e.g. num_heads=4."),
    neck: str = typer.Option("none", "--neck", help="none | mltr (MlTr blocks on the backbone's feature map)."),
    neck_opt: list[str] = typer.Option([], "--neck-opt"),
    loss: str = typer.Option("bce", "--loss", help="bce | focal | asl | am-binary."),
    loss_opt: list[str] = typer.Option([], "--loss-opt", help="Loss option key=value, e.g. gamma_neg=4."),
    size: int = typer.Option(352, "--size"),
    epochs: int = typer.Option(20, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size", "-b"),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate of the head (OneCycle)."),
    backbone_lr_mult: float = typer.Option(0.1, "--backbone-lr-mult"),
    weight_decay: float = typer.Option(1e-4, "--weight-decay"),
    ema: float = typer.Option(0.999, "--ema"),
    augment: str = typer.Option("flip", "--augment", help="none | flip | randaugment."),
    freeze_stages: int = typer.Option(0, "--freeze-stages", help="Freeze the first N backbone stages (-1: all); their output is cached."),
    cache: bool = typer.Option(True, "--cache/--no-cache", help="Cache the frozen stages' output."),
    views: int = typer.Option(0, "--views", help="Cached views per training image: 0 = 1 (none) / 2 (flip); with randaugment N "
                              "fixed views (image, mirror, N-2 seeded draws) instead of live augmentation."),
    patience: int = typer.Option(5, "--patience"),
    seed: int = typer.Option(0, "--seed"),
    grad_clip: float = typer.Option(0.0, "--grad-clip"),
    workers: Optional[int] = typer.Option(None, "--workers", "-j"),
    device: str = typer.Option("auto", "--device"),
    out: str = typer.Option("runs/model", "--out", "-o", help="Output folder (checkpoints, model file set)."),
    name: str = typer.Option("", "--name", help="Model name (file stem); default 'model'."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/last.safetensors."),
    stop_after: int = typer.Option(0, "--stop-after", help="Stop after N epochs in this run (continue later with --resume)."),
    limit: int = typer.Option(0, "--limit", help="Use only the first N images per split (smoke tests)."),
):
    """Train or fine-tune a model; writes OUT/NAME.safetensors + OUT/NAME.json (the model card)."""
    from imgtag.engine.train import TrainConfig, train as run

    cfg = TrainConfig(dataset=dataset, root=root or _default_root(dataset), val_root=val_root or "",
                      train_split=train_split, val_split=val_split, backbone=backbone,
                      pretrained=None if pretrained == "none" else pretrained, head=head, head_args=_kv(head_opt, "--head-opt"),
                      neck=neck, neck_args=_kv(neck_opt, "--neck-opt"), loss=loss, loss_args=_kv(loss_opt, "--loss-opt"),
                      size=size, epochs=epochs, batch_size=batch_size, lr=lr, backbone_lr_mult=backbone_lr_mult,
                      weight_decay=weight_decay, ema=ema, augment=augment, freeze_stages=freeze_stages, cache=cache, views=views,
                      patience=patience, seed=seed, grad_clip=grad_clip, workers=workers, device=device, out=out,
                      name=name, resume=resume, stop_after=stop_after, limit=limit,
                      command="imgtag train " + shlex.join(a for a in sys.argv[2:] if a))
    try:
        run(cfg)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e), 2)


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
    with_default: bool = typer.Option(False, "--with-default", help="The model also emits the default model's labels (one pass)."),
    base_model: Optional[str] = typer.Option(None, "--base-model", help="Model whose backbone gives the features (default: the shipped default)."),
    folds: int = typer.Option(5, "--folds", help="Cross-validation folds for the thresholds and the table."),
    hold_out: bool = typer.Option(False, "--hold-out", help="Leave the library's test split (20 % of photos, by file name) out, for `imgtag eval --dataset library --split test`."),
    no_embedded: bool = typer.Option(False, "--no-embedded", help="Read sidecars only (not XMP/IPTC inside the photos)."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive"),
    runtime: str = typer.Option("auto", "--runtime", help="Feature extraction: auto (ONNX Runtime on a CPU) | onnx | torch."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Decode processes (0 = in this process)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
):
    """Learn your own keywords from the photos you have already keyworded; `imgtag tag --model NAME` uses them."""
    from imgtag.card import ModelFileError
    from imgtag.engine.learn import LearnConfig, run_learn

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
                  str(card.num_classes), str(card.input_size), f"{m:.2f}" if isinstance(m, (int, float)) else "-", str(path.with_suffix("")))
    Console().print(t)


@app.command()
def info(model: str = typer.Argument("default", help="Model name or path."),
         as_json: bool = typer.Option(False, "--json", help="Print the whole card as JSON.")):
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


@app.command("export")
def export_(
    model: str = typer.Argument(..., help="Model name or path."),
    fmt: str = typer.Option("onnx", "--format", "-f", help="onnx (the only format so far)."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Output file (default: NAME.onnx, or NAME-int8.onnx, in the current directory)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    fixed_size: bool = typer.Option(False, "--fixed-size", help="Fix H×W to the card's input size (default: dynamic H×W when verified)."),
    int8: bool = typer.Option(False, "--int8", help="Static int8 quantisation (needs --calib; fixed H×W): ~1.6× faster on CPU, scores shift a little."),
    calib: Optional[str] = typer.Option(None, "--calib", help="--int8: training images to calibrate on (folder, or a file listing paths)."),
    calib_count: int = typer.Option(128, "--calib-count", help="--int8: number of calibration images drawn."),
):
    """Export a model for deployment: ONNX, input 'images' uint8 RGB N×3×H×W, output 'logits' N×K, the card in its metadata."""
    from imgtag.card import ModelFileError
    from imgtag.models.model import load_model

    if fmt != "onnx":
        _fail(f"--format must be onnx, not {fmt!r}", 2)
    if int8 != bool(calib):
        _fail("--int8 and --calib go together (int8 is calibrated on training images)", 2)
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
          f"(trained at {card.input_size}) → logits N×{card.num_classes}, score = sigmoid(logit)", file=sys.stderr)


def main() -> None:
    from imgtag.runtime.memory import keep_freed_memory

    keep_freed_memory()
    try:
        app()
    except KeyboardInterrupt:
        print("imgtag: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
