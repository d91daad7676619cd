"""Datasets (VOC, COCO, the user's CSV/JSONL).

All datasets are :class:`MultiLabelDataset` instances (``classes``, ``paths``, ``targets``, ``masks``);
``build_dataset`` picks one from a kind name, as the CLI does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from imgtag.data.coco import COCODataset
from imgtag.data.labelled import LabelledFileDataset, MultiLabelDataset
from imgtag.data.voc import VOC_CLASSES, VOCDataset

DATASET_KINDS = ("voc", "coco", "csv", "jsonl", "library")


def build_dataset(kind: str, root: str | Path, split: str = "train", transform: Callable | None = None,
                  **kw) -> MultiLabelDataset:
    """Build a dataset by kind name; extra keywords go to the dataset class.

    * ``voc``: ``root`` = VOC year folder or VOCdevkit; ``split`` = train / val / trainval / test.
    * ``coco``: ``root`` holds ``annotations/instances_<split>.json`` and the images in ``<split>/``
      (e.g. split ``val2014``).
    * ``csv`` / ``jsonl``: ``root`` is the labels file itself; ``split`` is not used.
    """
    kind = kind.lower()
    if kind == "voc":
        return VOCDataset(root, split, transform, **kw)
    if kind == "coco":
        root = Path(root)
        return COCODataset(root / split, root / "annotations" / f"instances_{split}.json", transform, **kw)
    if kind in ("csv", "jsonl"):
        return LabelledFileDataset(root, transform=transform, format=kind, **kw)
    if kind == "library":  # the user's keyworded photos; split all | train | test (see data/library.py)
        from imgtag.data.library import LibraryDataset

        return LibraryDataset(root, split, transform, **kw)
    raise ValueError(f"unknown dataset kind {kind!r}: expected one of {', '.join(DATASET_KINDS)}")


__all__ = ["COCODataset", "DATASET_KINDS", "LabelledFileDataset", "MultiLabelDataset", "VOCDataset", "VOC_CLASSES",
           "build_dataset"]
