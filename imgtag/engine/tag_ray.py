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
import time
import warnings
from pathlib import Path

from imgtag.engine.tag import FORMATS, TagSummary, _existing_records, _progress, plan_run, report_error

RAY_FORMATS = (*FORMATS, "parquet")
INSTALL_HINT = "the ray engine needs Ray: pip install 'imgtag[ray]'"


class RayMissing(RuntimeError):
    """Ray is not installed; str() is the one-line install hint."""


def _is_uri(s: str) -> bool:
    return "://" in str(s)


def _existing(dest: str, fmt: str) -> dict[str, dict]:
    if fmt != "parquet":
        return _existing_records(dest, fmt)
    if _is_uri(dest) or not Path(dest).exists():
        return {}
    import pyarrow.parquet as pq

    return {r["path"]: {"path": r["path"], "labels": [{"label": lab, "score": s} for lab, s in zip(r["labels"], r["scores"])]}
            for r in pq.read_table(dest).to_pylist() if not r["error"]}


class _ParquetOut:
    """Rows → one Parquet file: local paths atomically (temp + rename), URIs through pyarrow's filesystems."""

    def __init__(self, dest: str):
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        from imgtag.io.atomic import AtomicFile
        from imgtag.ray import SCHEMA

        self.schema, self.atomic = SCHEMA, None
        if _is_uri(dest):
            fs, path = pafs.FileSystem.from_uri(dest)
            self.sink = fs.open_output_stream(path)
        else:
            self.atomic = AtomicFile(dest, "wb", encoding=None)
            self.sink = self.atomic.file
        self.pq = pq.ParquetWriter(self.sink, SCHEMA)

    def write_table(self, table) -> None:
        self.pq.write_table(table.select(self.schema.names).cast(self.schema))

    def write(self, rec: dict) -> None:  # an earlier run's record kept by --on-existing merge/skip
        import pyarrow as pa

        labels = rec.get("labels", [])
        self.write_table(pa.Table.from_pylist([{"path": rec["path"], "labels": [d["label"] for d in labels],
                                                "scores": [float(d["score"]) for d in labels], "error": rec.get("error", "")}],
                                              schema=self.schema))

    def close(self) -> None:
        self.pq.close()
        if self.atomic:
            self.atomic.commit()
        else:
            self.sink.close()


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
    from imgtag.io.discover import image_extensions, iter_image_paths
    from imgtag.io.writers import make_writer
    from imgtag.ray import tag_dataset

    if fmt not in RAY_FORMATS:
        raise ValueError(f"--format must be one of {', '.join(RAY_FORMATS)}")
    if on_existing not in ("skip", "merge", "overwrite"):
        raise ValueError("--on-existing must be skip, merge or overwrite")
    if fmt == "parquet" and output == "-":
        raise ValueError("--format parquet needs -o FILE (a path or a URI)")
    if _is_uri(output) and fmt != "parquet":
        raise ValueError("-o URI is for --format parquet only")
    try:  # a broken model file fails here, not in every actor
        wpath, cpath = resolve_model(model)
        card = read_card(cpath)
        read_weights(wpath, verify_sha256=card.weights_sha256)
    except ModelFileError as e:
        raise ValueError(str(e)) from e
    unknown = sorted(set(exclude) - set(card.labels))
    if unknown:
        raise ValueError(f"--exclude: unknown label(s) {', '.join(unknown)}; the model knows {', '.join(card.labels)}")
    uris = [str(i) for i in inputs if _is_uri(i)]
    if uris and (fmt == "xmp" or len(uris) != len(inputs) or shard_spec or len({u.split("://")[0] for u in uris}) > 1):
        raise ValueError("URIs (s3://...) cannot be mixed with local paths or other schemes, --shard or --format xmp")
    scheme = uris[0].split("://")[0] + "://" if uris else ""

    def uri(path: str) -> str:  # Ray reports bucket/key: results name the object by its URI
        return path if not scheme or "://" in path else scheme + path
    paths = [] if uris else [str(p) for p in iter_image_paths(inputs, recursive=recursive)]
    paths, old, todo, summary = plan_run(paths, fmt, output, on_existing, sidecar_naming, shard_spec, existing=_existing)
    err = report_error
    started = not ray.is_initialized()
    if started:
        # worker output goes to the driver's stdout/stderr: keep it off stdout when results go there
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=output != "-" or fmt == "xmp",
                     logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise RuntimeError(f"cannot start or reach Ray at {address or 'a new local instance'}: {e}") from e
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order, ctx.enable_progress_bars = True, False  # input order; our own progress bar
    logs = {name: logging.getLogger(name) for name in ("ray.data", "ray.data._internal.progress")}
    levels = {name: log.level for name, log in logs.items()}
    logs["ray.data"].setLevel(logging.WARNING)  # no per-dataset INFO lines: our summary line says it
    logs["ray.data._internal.progress"].setLevel(logging.ERROR)  # nor "progress bars disabled": ours is on
    progress = writer = None
    seen: set[str] = set()  # URIs: paths tagged by this run (the listing is only known as results come)
    t0 = time.time()
    try:
        res = ray.cluster_resources()
        gpus = int(res.get("GPU", 0)) if device in ("auto", None) or str(device).startswith("cuda") else 0
        if str(device).startswith("cuda") and not gpus:
            raise ValueError("--device cuda asked for, but the Ray cluster has no GPU")
        n = actors or max(1, gpus or int(res.get("CPU", 1)))  # URIs: an autoscaling pool leaves CPUs to the reads
        out = None
        if uris:
            exts = sorted(e.lstrip(".") for e in image_extensions())
            ds = ray.data.read_binary_files(uris, include_paths=True, file_extensions=exts + [e.upper() for e in exts])
        elif todo:
            ds = ray.data.from_items([{"path": p} for p in todo], override_num_blocks=min(len(todo), n * 4))
        if uris or todo:
            out = tag_dataset(ds, model, actors=(1, n) if uris else n, num_gpus=1 if gpus else 0, batch_size=batch_size,
                              write_sidecars=fmt == "xmp", sidecar_mode="overwrite" if on_existing == "overwrite" else "merge",
                              sidecar_naming=sidecar_naming, threshold=threshold, top_k=top_k, exclude=list(exclude),
                              runtime=runtime if runtime != "auto" else "torch")
        if uris and on_existing == "skip" and old:
            done = set(old)
            summary.skipped = len(done)  # URIs: the earlier results kept (the listing is Ray's)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "use expr instead of fn": a set look-up has no expression
                out = out.filter(lambda r: uri(r["path"]) not in done)  # tagged again: only the output is spared
        if fmt != "xmp":
            writer = _ParquetOut(output) if fmt == "parquet" else make_writer(fmt, output).open()
            retag = set(todo)
            for p, r in ({} if uris else old).items():  # earlier results of images this run does not re-tag
                if p not in retag:
                    writer.write(r)
        if not quiet:
            where = address or ("local" if started else "connected")
            progress = _progress(console, None if uris else len(todo),
                                 f"ray engine ({where}, {len(ray.nodes())} node(s)): up to {n} actor(s), "
                                 f"{'1 GPU' if gpus else '1 CPU'} each; model {card.name}")
        for table in out.iter_batches(batch_size=None, batch_format="pyarrow") if out is not None else ():
            rows = table.to_pylist()
            for r in rows if scheme else ():
                p = uri(r["path"])
                r["error"] = r["error"].replace(r["path"], p, 1)
                r["path"] = p
                seen.add(p)
            if fmt == "parquet":
                writer.write_table(table if not scheme else table.from_pylist(rows, schema=table.schema))
            for r in rows:
                if r["error"]:
                    summary.failed.append(r["error"])
                    err(r["error"])
                    if fmt not in ("parquet", "xmp"):
                        writer.write({"path": r["path"], "error": r["error"]})
                else:
                    summary.tagged += 1
                    if fmt not in ("parquet", "xmp"):
                        writer.write({"path": r["path"], "labels": [{"label": lab, "score": s} for lab, s in zip(r["labels"], r["scores"])]})
            if uris:
                summary.total = summary.tagged + len(summary.failed) + summary.skipped
            if progress:
                progress.advance(table.num_rows)
    except KeyboardInterrupt:
        summary.interrupted = True
        err(f"interrupted: {summary.tagged} images done; rerun with --on-existing skip to resume")
    except ray.exceptions.RayError as e:
        err(f"the Ray job failed after {summary.tagged} images; rerun with --on-existing skip to resume")
        raise RuntimeError(f"ray: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
    finally:
        if progress:
            progress.stop()
        if writer:
            for p in [p for p in old if p not in seen] if uris else ():  # URIs: earlier results not re-tagged, kept last
                writer.write(old[p])
            writer.close()  # complete records only: safe to resume from
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        for name, log in logs.items():
            log.setLevel(levels[name])
        if started:
            ray.shutdown()
    return summary.finish(t0, quiet)
