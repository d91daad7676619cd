"""``imgtag tag --engine ray``: the contract of :func:`imgtag.engine.tag.run_tag`, on a Ray cluster.

The driver (this process) discovers the images, applies ``--shard`` and ``--on-existing``, and writes the
results file and progress exactly as the local engine does; actors (:class:`imgtag.ray.RayTagger`) decode,
tag and, for ``--format xmp``, write the sidecars. Local paths travel to the actors as paths, so every
node must see them at the same place (a shared mount); inputs with a scheme (``s3://``, ``gs://``, ...)
are read by Ray (``read_binary_files``), results only, no sidecars. ``--format parquet`` writes one Parquet
file (columns path, labels, scores, error) to a local path (atomically) or a URI. Records come in input order.
"""
from __future__ import annotations

import logging
import signal
import threading
import warnings
from contextlib import contextmanager

from imgtag.engine.pipeline import TagSummary, discover, open_output, plan_run, report_error, write_results
from imgtag.io.records import make_record
from imgtag.io.writers import is_uri, parquet_labels

INSTALL_HINT = "the ray engine needs Ray: pip install 'imgtag[ray]'"


class RayMissing(RuntimeError):
    """Ray is not installed; str() is the one-line install hint."""


@contextmanager
def _ray_session(ray, address: str | None, quiet_stdout: bool):
    """Ray started (or joined) for this run, Ray Data set to keep input order and stay quiet; restored after."""
    started = not ray.is_initialized()
    if started:
        # worker output goes to the driver's stdout/stderr: keep it off stdout when results go there
        term = signal.getsignal(signal.SIGTERM)
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=not quiet_stdout,
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RuntimeError(f"cannot start or reach Ray at {address or 'a new local instance'}: {e}") from e
        if callable(term) and threading.current_thread() is threading.main_thread():
            # ray.init replaced the CLI's SIGTERM handler with sys.exit: put it back, so SIGTERM keeps the results
            # like Ctrl-C (exit 143); ray.shutdown below still stops the local Ray it started
            signal.signal(signal.SIGTERM, term)
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order, ctx.enable_progress_bars = True, False  # input order; our own progress bar
    logs = {name: logging.getLogger(name) for name in ("ray.data", "ray.data._internal.progress")}
    levels = {name: log.level for name, log in logs.items()}
    logs["ray.data"].setLevel(logging.WARNING)  # no per-dataset INFO lines: our summary line says it
    logs["ray.data._internal.progress"].setLevel(logging.ERROR)  # nor "progress bars disabled": ours is on
    try:
        yield started
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        for name, log in logs.items():
            log.setLevel(levels[name])
        if started:
            ray.shutdown()


def run_tag_ray(inputs: list[str], model: str | None = None, fmt: str = "jsonl", output: str = "-",
                on_existing: str = "merge", shard_spec: tuple[int, int] | None = None, recursive: bool = True,
                sidecar_naming: str = "auto", quiet: bool = False, console=None, address: str | None = None,
                actors: int | None = None, device: str = "auto", batch_size: int | None = None,
                threshold: float | None = None, top_k: int | None = None, exclude=(), runtime: str = "auto") -> TagSummary:
    """Tag ``inputs`` on Ray (``address``: None starts a local instance, "auto" or "HOST:PORT" joins a
    cluster; an already initialised Ray is used as it is). ``actors``: model replicas (default: one per
    GPU, or per CPU, of the cluster). Other arguments as :func:`imgtag.engine.tag.run_tag` and
    :class:`imgtag.Tagger`. Raises :class:`RayMissing` without Ray, ValueError / FileNotFoundError on
    bad arguments (before anything runs) and RuntimeError when the Ray job fails (the output then holds
    the records completed so far)."""
    try:
        import ray
    except ImportError as e:
        raise RayMissing(INSTALL_HINT) from e
    from imgtag.card import ModelFileError, read_card, read_weights, resolve_model
    from imgtag.io.discover import image_extensions
    from imgtag.runtime.ray_tagger import tag_dataset

    try:  # a broken model file fails here, not in every actor
        wpath, cpath = resolve_model(model)
        card = read_card(cpath)
        read_weights(wpath, verify_sha256=card.weights_sha256)
    except ModelFileError as e:
        raise ValueError(str(e)) from e
    writer = open_output(fmt, output, on_existing, model_name=card.name, sidecar_naming=sidecar_naming)
    from imgtag.runtime.selection import make_selector

    make_selector(card, threshold, top_k, exclude)  # an unknown --exclude label/keyword fails here, not in every actor
    uris = [str(i) for i in inputs if is_uri(i)]
    if uris and (writer.beside_images or len(uris) != len(inputs) or shard_spec or len({u.split("://")[0] for u in uris}) > 1):
        raise ValueError(f"URIs (s3://...) cannot be mixed with local paths or other schemes, --shard or --format {fmt}")
    scheme = uris[0].split("://")[0] + "://" if uris else ""

    def uri(path: str) -> str:  # Ray reports bucket/key: results name the object by its URI
        return path if not scheme or "://" in path else scheme + path
    paths, walk_failed = ([], []) if uris else discover(inputs, recursive, shard_spec)  # problems: one line each
    plan = plan_run(paths, writer, on_existing, None)
    plan.summary.failed += walk_failed
    plan.summary.total += len(walk_failed)
    sidecars = writer.beside_images  # the actors write them, beside the images on the shared mount
    with _ray_session(ray, address, quiet_stdout=output == "-" and not sidecars) as started:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0)) if device in ("auto", None) or str(device).startswith("cuda") else 0
        if str(device).startswith("cuda") and not gpus:
            raise ValueError("--device cuda asked for, but the Ray cluster has no GPU")
        n = actors or max(1, gpus or int(res.get("CPU", 1)))  # URIs: an autoscaling pool leaves CPUs to the reads
        out = None
        if uris:
            exts = sorted(e.lstrip(".") for e in image_extensions())
            ds = ray.data.read_binary_files(uris, include_paths=True, file_extensions=exts + [e.upper() for e in exts])
        elif plan.todo:
            ds = ray.data.from_items([{"path": p} for p in plan.todo], override_num_blocks=min(len(plan.todo), n * 4))
        if uris or plan.todo:
            out = tag_dataset(ds, model, actors=(1, n) if uris else n, num_gpus=1 if gpus else 0, batch_size=batch_size,
                              write_sidecars=sidecars, sidecar_mode="overwrite" if on_existing == "overwrite" else "merge",
                              sidecar_naming=sidecar_naming, threshold=threshold, top_k=top_k, exclude=list(exclude),
                              runtime=runtime if runtime != "auto" else "torch")
        if uris and on_existing == "skip" and plan.previous:
            done = set(plan.previous)
            plan.summary.skipped = len(done)  # URIs: the earlier results kept (the listing is Ray's)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "use expr instead of fn": a set look-up has no expression
                out = out.filter(lambda r: uri(r["path"]) not in done)  # tagged again: only the output is spared
        where = address or ("local" if started else "connected")
        description = (f"ray engine ({where}, {len(ray.nodes())} node(s)): up to {n} actor(s), "
                       f"{'1 GPU' if gpus else '1 CPU'} each; model {card.name}")

        def records():
            for table in out.iter_batches(batch_size=None, batch_format="pyarrow") if out is not None else ():
                for r in table.to_pylist():
                    path = uri(r["path"])
                    if r["error"]:
                        yield make_record(path, error=r["error"].replace(r["path"], path, 1))
                    else:
                        yield make_record(path, parquet_labels(r))
        try:
            return write_results(records(), None if sidecars else writer, plan, description, quiet, console,
                                 known_paths=not uris)
        except ray.exceptions.RayError as e:
            report_error(f"the Ray job failed after {plan.summary.tagged} images; rerun with --on-existing skip to resume")
            raise RuntimeError(f"ray: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
