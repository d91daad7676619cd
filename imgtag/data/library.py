"""The user's photo library as a labelled dataset: keywords from sidecars / embedded XMP / IPTC (imgtag/io/keywords.py).

``classes`` are keyword paths ("Animals|Pets|dog"). Photos without any keyword are not in the dataset (unlabelled,
not negative); on a keyworded photo a missing keyword counts as absent (so, with incomplete tagging, precision
measured here is a lower bound). Splits are by a hash of the file name (stable when folders move):
``test`` = 20 % of the photos, ``train`` = the rest, ``all``; ``imgtag learn --hold-out`` learns from ``train``
only, so ``imgtag eval --dataset library --split test`` measures on photos it never saw.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from imgtag.data.labelled import MultiLabelDataset

SPLITS = ("all", "train", "test")
TEST_PERCENT = 20


def split_of(path: str | Path) -> str:
    """``"test"`` or ``"train"`` for a photo, by a hash of its file name."""
    b = int(hashlib.sha1(Path(path).name.encode("utf-8", "surrogateescape")).hexdigest(), 16) % 100
    return "test" if b < TEST_PERCENT else "train"


def in_split(path: str | Path, split: str) -> bool:
    if split not in SPLITS:
        raise ValueError(f"unknown library split {split!r}: {', '.join(SPLITS)}")
    return split == "all" or split_of(path) == split


class LibraryDataset(MultiLabelDataset):
    """Keyworded photos under ``roots`` (files or folders), in ``split``; ``problems`` lists what was skipped."""

    def __init__(self, roots, split: str = "all", transform=None, embedded: bool = True):
        from imgtag.io.discover import iter_image_paths
        from imgtag.io.keywords import harvest

        roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
        self.problems: list[str] = []
        paths = [p for p in iter_image_paths(roots) if in_split(p, split)]
        photos = [ph for ph in harvest(paths, self.problems, embedded) if ph.keywords]
        classes = sorted({k for ph in photos for k in ph.keywords})
        col = {k: j for j, k in enumerate(classes)}
        targets = torch.zeros(len(photos), len(classes))
        for i, ph in enumerate(photos):
            for k in ph.keywords:
                targets[i, col[k]] = 1
        super().__init__([ph.path for ph in photos], targets, classes, transform=transform)
