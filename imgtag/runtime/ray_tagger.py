"""The Ray actor behind :mod:`imgtag.ray` (the public API, documented there) and ``imgtag tag --engine ray``.

:class:`RayTagger` wraps a :class:`~imgtag.runtime.tagger.Tagger` for ``Dataset.map_batches``; rows are built
from :func:`imgtag.io.records.make_record` records (:func:`imgtag.io.writers.parquet_row`), sidecars are
written by :class:`imgtag.io.writers.XmpWriter`, as in the local engine.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pyarrow as pa

from imgtag.io.records import make_record
from imgtag.io.writers import WriteFailed, XmpWriter, parquet_row, parquet_schema

SCHEMA = parquet_schema()


def model_files(model: str | Path | None) -> dict[str, bytes]:
    """A model file set as bytes ({"json", "safetensors"}), to ship to workers that lack the files."""
    from imgtag.card import resolve_model

    w, c = resolve_model(model)
    return {"name": c.stem, "json": c.read_bytes(), "safetensors": w.read_bytes()}


class RayTagger:
    """``ds.map_batches(RayTagger, fn_constructor_kwargs={...}, concurrency=N, batch_format="numpy")``.

    Constructor keywords: ``model`` (name or path, as every node sees it) or ``files`` (from
    :func:`model_files`, or an ObjectRef to them); ``write_sidecars``, ``sidecar_mode`` ("merge" or
    "overwrite"), ``sidecar_naming`` ("auto", "ext", "stem"); the rest goes to :class:`imgtag.Tagger`
    (``threshold``, ``top_k``, ``exclude``, ``device``, ``batch_size``, ``workers`` (default 0: decode in
    the actor), ``runtime``). Batches may be numpy dicts or pandas frames; the result is a pyarrow Table
    with :data:`SCHEMA`.
    """

    def __init__(self, model: str | None = None, *, files=None, write_sidecars: bool = False,
                 sidecar_mode: str = "merge", sidecar_naming: str = "auto", **tagger_kw):
        from imgtag.runtime.tagger import Tagger

        tagger_kw.setdefault("workers", 0)
        tagger_kw.setdefault("runtime", "torch")
        if tagger_kw.get("device", "auto") in (None, "auto"):
            try:  # the CPUs Ray gave this actor; torch would otherwise use every core of the node
                import ray
                import torch
                cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
                if cpus:
                    torch.set_num_threads(max(1, int(cpus)))
            except Exception:  # noqa: BLE001 - outside an actor: leave torch alone
                pass
        tmp = None
        if files is not None:
            if not isinstance(files, dict):
                import ray
                files = ray.get(files)
            tmp = Path(tempfile.mkdtemp(prefix="imgtag-model-"))
            for ext in ("json", "safetensors"):
                (tmp / f"{files['name']}.{ext}").write_bytes(files[ext])
            model = str(tmp / f"{files['name']}.json")
        try:
            self.tagger = Tagger(model, **tagger_kw)
        finally:
            if tmp:
                shutil.rmtree(tmp, ignore_errors=True)
        self.sidecars = XmpWriter(on_existing=sidecar_mode, model_name=self.tagger.card.name,
                                  sidecar_naming=sidecar_naming).open() if write_sidecars else None

    def __call__(self, batch) -> pa.Table:
        cols = list(batch.columns if hasattr(batch, "columns") else batch.keys())
        if "path" not in cols:
            raise ValueError(f"RayTagger needs a 'path' column (and optionally 'bytes'); got {cols}")
        paths = [str(p) for p in batch["path"]]
        data = list(batch["bytes"]) if "bytes" in cols else None
        try:
            preds = self._tag(paths, data)
        except Exception:  # noqa: BLE001 - something failed for the whole batch: find the file, tag the rest
            preds = []
            for i, p in enumerate(paths):
                try:
                    preds += self._tag([p], None if data is None else [data[i]])
                except Exception as e:  # noqa: BLE001
                    preds.append((p, [], f"{p}: {type(e).__name__}: {e}"))
        rows = []
        for path, labels, error in preds:
            record = make_record(path, labels, error)
            if not error and self.sidecars:
                try:
                    self.sidecars.write(record)
                except WriteFailed as e:
                    record = make_record(path, error=str(e))
            rows.append(parquet_row(record))
        return pa.Table.from_pylist(rows, schema=SCHEMA)

    def _tag(self, paths: list[str], data: list | None) -> list[tuple[str, list, str | None]]:
        """(path, [Label, ...], error) per input, in order."""
        if data is None:
            return [(p.path, p.labels, p.error) for p in self.tagger.tag_paths(paths)]
        from imgtag.io.decode import DecodeError, load_resized_from_bytes

        out: list = [None] * len(paths)
        ok, pixels = [], []
        for i, (p, b) in enumerate(zip(paths, data)):
            try:
                pixels.append(load_resized_from_bytes(bytes(b), p, self.tagger.size))
                ok.append(i)
            except DecodeError as e:
                out[i] = (p, [], str(e))
        for i, pred in zip(ok, self.tagger.tag_pixels(pixels, [paths[i] for i in ok])):
            out[i] = (pred.path, pred.labels, None)
        return out


def tag_dataset(ds, model: str | Path | None = None, actors: int | tuple[int, int] = 2, num_gpus: float = 0,
                batch_size: int | None = None, num_cpus: float = 1, retries: int | None = None, ship_model: bool = True, write_sidecars: bool = False,
                sidecar_mode: str = "merge", sidecar_naming: str = "auto", **tagger_kw):
    """Tag a Ray Dataset of paths (``path``) or encoded images (``bytes`` + ``path``); returns the lazy
    Dataset of ``path, labels, scores, error`` rows (see :class:`RayTagger`).

    ``actors``: model replicas, each with ``num_cpus`` CPUs and ``num_gpus`` GPUs (1: one GPU per actor); an
    int is a fixed pool, ``(min, max)`` autoscales. When the dataset reads files (``read_binary_files``), leave
    CPUs to the read tasks: fewer actors than CPUs, or ``(1, n)``, else the reads wait for CPUs forever.
    ``ship_model``: send the model files through the object store (worker nodes need not have them).
    Fault tolerance is Ray Data's: a dead actor is restarted and its batch retried, without limit unless
    ``retries`` (max_task_retries; a deprecated remote argument since Ray 2.60) says otherwise.
    Other keywords go to :class:`RayTagger` / :class:`imgtag.Tagger`.
    """
    import ray

    files = ray.put(model_files(model)) if ship_model else None
    if batch_size is None:
        batch_size = tagger_kw.get("batch_size") or (64 if num_gpus else 16)
    tagger_kw.setdefault("batch_size", batch_size)
    if num_gpus:
        tagger_kw.setdefault("device", "cuda")
    kw = dict(model=None if ship_model else (str(model) if model else None), files=files, write_sidecars=write_sidecars,
              sidecar_mode=sidecar_mode, sidecar_naming=sidecar_naming, **tagger_kw)
    remote = {} if retries is None else {"max_restarts": -1, "max_task_retries": retries}
    lo, hi = actors if isinstance(actors, tuple) else (actors, actors)
    return ds.map_batches(RayTagger, fn_constructor_kwargs=kw, batch_size=batch_size, batch_format="numpy",
                          compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi), num_cpus=num_cpus, num_gpus=num_gpus or None, **remote)
