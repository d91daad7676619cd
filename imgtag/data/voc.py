"""PASCAL VOC classification labels from ``ImageSets/Main`` (no ``Annotations/`` needed)."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from imgtag.data.labelled import MultiLabelDataset

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)
DIFFICULT_MODES = ("ignore", "positive", "negative")


def resolve_voc_root(root: str | Path, year: str = "2007") -> Path:
    """Return the VOC year folder: ``root`` itself if it has ``ImageSets/Main``, else ``root/VOC<year>``."""
    root = Path(root)
    for cand in (root, root / f"VOC{year}"):
        if (cand / "ImageSets" / "Main").is_dir():
            return cand
    raise FileNotFoundError(
        f"not a VOC folder: expected {root / 'ImageSets' / 'Main'} (a VOC year folder) or "
        f"{root / f'VOC{year}' / 'ImageSets' / 'Main'} (a VOCdevkit folder)")


class VOCDataset(MultiLabelDataset):
    """VOC image-level labels: ``ImageSets/Main/<class>_<split>.txt`` lines ``<id> <1|-1|0>``.

    * ``root``: a VOC year folder (``.../VOC2007``) or a VOCdevkit folder (then ``VOC<year>`` inside).
    * ``classes``: every ``<class>_<split>.txt`` present, sorted alphabetically -- the 20 VOC classes
      in the official order for a full copy (:data:`VOC_CLASSES`).
    * Images: the ids of ``<split>.txt`` in file order (else the first class file's ids); an id whose
      ``JPEGImages/<id>.jpg`` is missing is skipped, with one warning giving the count (``self.missing``).
    * ``difficult`` (label 0: the class appears only as "difficult" objects):
      ``"ignore"`` (default) -> mask False, left out of loss and AP, the standard VOC protocol (CSRA,
      ML-GCN evaluation); ``"positive"`` -> 1 (ML-GCN training, DOR); ``"negative"`` -> 0 (CSRA training).
    * An image missing from one class file gets mask False for that class (unknown).
    """

    _per_item = MultiLabelDataset._per_item + ("ids",)

    def __init__(self, root: str | Path, split: str = "train", transform: Callable | None = None,
                 difficult: str = "ignore", year: str = "2007"):
        if difficult not in DIFFICULT_MODES:
            raise ValueError(f"difficult must be one of {DIFFICULT_MODES}, got {difficult!r}")
        self.root = resolve_voc_root(root, year)
        self.split, self.difficult = split, difficult
        main = self.root / "ImageSets" / "Main"
        suffix = f"_{split}.txt"
        files = sorted(p for p in main.glob(f"*{suffix}"))
        if not files:
            raise FileNotFoundError(f"no {main / ('<class>' + suffix)} files: unknown split {split!r}?")
        classes = [p.name[: -len(suffix)] for p in files]

        parsed = [_read_labels(p) for p in files]
        split_file = main / f"{split}.txt"
        if split_file.is_file():
            ids = [ln.split()[0] for ln in split_file.read_text().splitlines() if ln.strip()]
        else:
            ids = list(parsed[0])
        images = self.root / "JPEGImages"
        self.missing = [i for i in ids if not (images / f"{i}.jpg").is_file()]
        if self.missing:
            warnings.warn(f"VOC {split}: {len(self.missing)} of {len(ids)} listed images are missing from "
                          f"{images} and were skipped (e.g. {self.missing[0]})", stacklevel=2)
            gone = set(self.missing)
            ids = [i for i in ids if i not in gone]

        row = {i: r for r, i in enumerate(ids)}
        targets = np.zeros((len(ids), len(classes)), np.float32)
        masks = np.zeros((len(ids), len(classes)), bool)
        diff_value = 1.0 if difficult == "positive" else 0.0
        for k, labels in enumerate(parsed):
            for image_id, v in labels.items():
                r = row.get(image_id)
                if r is None:
                    continue
                if v == 0:
                    targets[r, k], masks[r, k] = diff_value, difficult != "ignore"
                else:
                    targets[r, k], masks[r, k] = float(v == 1), True
        self.ids = ids
        super().__init__([images / f"{i}.jpg" for i in ids], torch.from_numpy(targets), classes,
                         torch.from_numpy(masks), transform)


def _read_labels(path: Path) -> dict[str, int]:
    out = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or parts[1] not in ("1", "-1", "0"):
            raise ValueError(f"{path}:{n}: expected '<image id> <1|-1|0>', got {line!r}")
        out[parts[0]] = int(parts[1])
    return out
