"""MS-COCO image-level labels from an ``instances_*.json`` file."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from imgtag.data.labelled import MultiLabelDataset


class COCODataset(MultiLabelDataset):
    """COCO instances annotations reduced to image-level labels.

    * ``classes``: category names ordered by category id (the usual 80-class order); ``self.cat_ids``
      holds the matching ids.
    * A class is present when the image has at least one annotation of it, ``iscrowd`` ones included
      (as ASL / CSRA / Q2L do).
    * ``drop_empty=True`` (default) drops images without any annotation: the ASL / ML-Decoder / CSRA
      protocol (40,137 of the 40,504 val2014 images). ``False`` keeps them as all-negative rows, as
      Q2L's torchvision ``CocoDetection`` does; mAP is not comparable between the two.
    * Images are ordered by image id; ``self.image_ids`` holds the ids. Files are not checked up front
      (a missing one raises ``DecodeError`` when loaded).
    """

    _per_item = MultiLabelDataset._per_item + ("image_ids",)

    def __init__(self, images_dir: str | Path, ann_file: str | Path, transform: Callable | None = None,
                 drop_empty: bool = True):
        ann_file, images_dir = Path(ann_file), Path(images_dir)
        if not ann_file.is_file():
            raise FileNotFoundError(f"COCO annotation file not found: {ann_file}")
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.cat_ids = [c["id"] for c in cats]
        col = {cid: k for k, cid in enumerate(self.cat_ids)}
        images = sorted(data["images"], key=lambda im: im["id"])
        row = {im["id"]: r for r, im in enumerate(images)}
        targets = np.zeros((len(images), len(cats)), np.float32)
        for a in data.get("annotations", []):
            targets[row[a["image_id"]], col[a["category_id"]]] = 1.0
        if drop_empty:
            has_ann = np.zeros(len(images), bool)
            has_ann[[row[a["image_id"]] for a in data.get("annotations", [])]] = True
            keep = np.flatnonzero(has_ann)
            images, targets = [images[r] for r in keep], targets[keep]
        self.image_ids = [im["id"] for im in images]
        self.images_dir, self.ann_file, self.drop_empty = images_dir, ann_file, drop_empty
        super().__init__([images_dir / im["file_name"] for im in images], torch.from_numpy(targets),
                         [c["name"] for c in cats], None, transform)
