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
from imgtag.runtime.ray_tagger import SCHEMA, RayTagger, model_files, tag_dataset

__all__ = ["SCHEMA", "RayTagger", "model_files", "tag_dataset"]
