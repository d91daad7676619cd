"""The user's photo library as a labelled dataset: keywords from sidecars / embedded XMP / IPTC (imgtag/io/keywords.py).

``classes`` are keyword paths ("Animals|Pets|dog"). Photos without any keyword are not in the dataset (unlabelled,
not negative); on a keyworded photo a missing keyword counts as absent (so, with incomplete tagging, precision
measured here is a lower bound).

The split rule (:data:`SPLIT_RULE`), by a hash of the file name only, so it is stable when folders move and the
same in `learn` and `eval`: ``test`` = the photos whose ``sha1(file name) mod 100 < 20`` (about 20 %), ``train`` =
the rest, ``all`` = both. ``imgtag learn --hold-out`` learns from ``train`` only and records that in the card;
``imgtag eval --dataset library`` measures on ``test`` by default, and says so when the model has seen those
photos (learned without ``--hold-out``: the numbers are then optimistic).
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from imgtag.data.labelled import MultiLabelDataset

SPLITS = ("all", "train", "test")
TEST_PERCENT = 20
SPLIT_RULE = f"test = photos whose sha1(file name) mod 100 < {TEST_PERCENT}; train = the others; all = both"


def split_of(path: str | Path) -> str:
    """``"test"`` or ``"train"`` for a photo, by a hash of its file name."""
    b = int(hashlib.sha1(Path(path).name.encode("utf-8", "surrogateescape")).hexdigest(), 16) % 100
    return "test" if b < TEST_PERCENT else "train"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown library split {split!r}: use {', '.join(SPLITS)} ({SPLIT_RULE})")
    return split


def in_split(path: str | Path, split: str) -> bool:
    return check_split(split) == "all" or split_of(path) == split


def held_out_note(recipe: dict | None, split: str) -> str | None:
    """A warning when ``split`` of the library holds photos the model learned from (its card's recipe says), else
    None. Models that did not come from ``imgtag learn`` get None: their training data is not the library."""
    recipe = recipe or {}
    if recipe.get("command") != "imgtag learn":
        return None
    held = recipe.get("held_out")
    if split == "test" and held:
        return None
    seen = "all photos of the library" if not held else "the train split"
    how = "" if held else "; learn with --hold-out to keep the test split out"
    return (f"the model learned from {seen}, so the {split} split holds photos it has seen: these numbers are "
            f"optimistic{how}")


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
