"""Distributed tagging on Ray Data (``pip install 'imgtag[ray]'``).

:class:`RayTagger` is a callable class for ``Dataset.map_batches``: each actor loads the model once (CPU,
or one GPU with ``num_gpus=1``) and turns batches of images into rows ``path, labels, scores, error``
(``labels``: list of str, best first; ``scores``: their scores; ``error``: "" when fine). Input batches
hold paths (column ``path``; the workers read the files) or encoded images (columns ``bytes`` + ``path``,
as ``ray.data.read_binary_files(..., include_paths=True)`` gives). A file that fails becomes that row's
``error``; the job goes on. With ``write_sidecars=True`` the workers write XMP sidecars beside the images
(atomically: a retried batch rewrites the same complete file, never half of one).

>>> import ray, imgtag.ray
>>> ds = ray.data.read_binary_files("s3://bucket/photos", include_paths=True)
>>> imgtag.ray.tag_dataset(ds, model="runs/model", actors=(1, 8)).write_parquet("s3://bucket/tags")

or, with paths on a share every node mounts, and sidecars::

    ds = ray.data.from_items([{"path": p} for p in paths])
    ds = ds.map_batches(RayTagger, fn_constructor_kwargs={"model": "runs/model", "write_sidecars": True},
                        compute=ray.data.ActorPoolStrategy(size=4), num_gpus=1, batch_size=64)

:func:`tag_dataset` sends the model files to the actors through the object store, so worker nodes need
imgtag installed but not the model. Actors that die (node lost, OOM kill) are restarted and their batch
retried (Ray Data's fault tolerance).
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

SCHEMA = pa.schema([("path", pa.string()), ("labels", pa.list_(pa.string())),
                    ("scores", pa.list_(pa.float64())), ("error", pa.string())])


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
        from imgtag.engine.predict import Tagger

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
        self.write_sidecars, self.sidecar_mode, self.sidecar_naming = write_sidecars, sidecar_mode, sidecar_naming

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
        rows = {"path": [], "labels": [], "scores": [], "error": []}
        for path, labels, error in preds:
            if not error and self.write_sidecars:
                error = self._sidecar(path, labels)
            rows["path"].append(path)
            rows["labels"].append([lab for lab, _ in labels])
            rows["scores"].append([float(s) for _, s in labels])
            rows["error"].append(error or "")
        return pa.Table.from_pydict(rows, schema=SCHEMA)

    def _tag(self, paths: list[str], data: list | None) -> list[tuple[str, list, str | None]]:
        """(path, [(label, score), ...], error) per input, in order."""
        if data is None:
            return [(p.path, p.labels, p.error) for p in self.tagger.tag_paths(paths)]
        import torch

        from imgtag.io.decode import DecodeError, load_resized_from_bytes

        t, out, ok = self.tagger, [None] * len(paths), []
        pixels = []
        for i, (p, b) in enumerate(zip(paths, data)):
            try:
                pixels.append(torch.from_numpy(load_resized_from_bytes(bytes(b), p, t.size)).permute(2, 0, 1))
                ok.append(i)
            except DecodeError as e:
                out[i] = (p, [], str(e))
        for k in range(0, len(ok), t.batch_size):
            batch = torch.stack(pixels[k:k + t.batch_size]).to(t.device)
            for i, s in zip(ok[k:k + t.batch_size], torch.sigmoid(t._logits(batch)).numpy()):
                out[i] = (paths[i], t.select(s), None)
        return out

    def _sidecar(self, path: str, labels) -> str:
        from imgtag.io.xmp import XmpError, write_sidecar

        try:
            write_sidecar(path, labels, mode=self.sidecar_mode, model_name=self.tagger.card.name, naming=self.sidecar_naming)
            return ""
        except (XmpError, OSError, ValueError) as e:
            return f"{path}: sidecar not written: {e}"


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
