"""Multi-label dataset base class and the user's own labelled files (CSV / JSONL).

Every dataset exposes the same tensors so that training and evaluation never depend on where the
labels came from:

* ``classes``  -- list of K class names (the column order of ``targets``);
* ``paths``    -- list of N image paths;
* ``targets``  -- FloatTensor[N, K], 1 = present, 0 = absent;
* ``masks``    -- BoolTensor[N, K], False = unknown / ignored: the entry must be left out of the loss and
  of every metric (VOC "difficult", an explicit ``ignore`` list, a label missing from a file).
"""
from __future__ import annotations

import copy
import csv
import json
import re
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset

from imgtag.io.decode import load_pil

_SPLIT_LABELS = re.compile(r"[|;]")


class MultiLabelDataset(Dataset):
    """Images with K binary labels and a per-entry "counts" mask.

    ``__getitem__(i)`` returns ``(image, target[K], mask[K], i)`` where image is ``transform(PIL RGB)``
    (the PIL image itself when transform is None). Images are opened with
    :func:`imgtag.io.decode.load_pil` (EXIF orientation applied); a broken file raises ``DecodeError``.
    """

    #: attributes holding one entry per image; :meth:`subset` slices all of them.
    _per_item: tuple[str, ...] = ("paths", "targets", "masks")

    def __init__(self, paths: Sequence[str | Path], targets: torch.Tensor, classes: Sequence[str],
                 masks: torch.Tensor | None = None, transform: Callable | None = None):
        self.paths = [Path(p) for p in paths]
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.masks = (torch.ones_like(self.targets, dtype=torch.bool) if masks is None
                      else torch.as_tensor(masks, dtype=torch.bool))
        self.classes = list(classes)
        self.transform = transform
        n, k = len(self.paths), len(self.classes)
        if self.targets.shape != (n, k) or self.masks.shape != (n, k):
            raise ValueError(f"targets {tuple(self.targets.shape)} / masks {tuple(self.masks.shape)} "
                             f"do not match {n} images x {k} classes")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        image = load_pil(self.paths[i])
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[i], self.masks[i], i

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, indices: Sequence[int] | torch.Tensor) -> "MultiLabelDataset":
        """A shallow copy (same class, classes and transform) holding only the given rows, in that order
        (``indices``: ints, or a boolean mask of length N)."""
        idx = torch.as_tensor(indices)
        idx = idx.nonzero().reshape(-1) if idx.dtype == torch.bool else idx.long().reshape(-1)
        out = copy.copy(self)
        for name in self._per_item:
            value = getattr(self, name)
            setattr(out, name, value[idx] if torch.is_tensor(value) else [value[j] for j in idx.tolist()])
        return out

    def columns(self, labels: Sequence[str]):
        """``(targets, masks)`` as numpy arrays with the columns in the order of ``labels`` (a model's label list)."""
        order = [self.classes.index(lab) for lab in labels]
        return self.targets.numpy()[:, order], self.masks.numpy()[:, order]

    def label_counts(self) -> torch.Tensor:
        """LongTensor[K]: images per class counted as present (target 1 and mask True)."""
        return ((self.targets > 0.5) & self.masks).sum(0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} images, {self.num_classes} classes)"


def _split_labels(field: str | None) -> list[str]:
    return [s.strip() for s in _SPLIT_LABELS.split(field or "") if s.strip()]


class LabelledFileDataset(MultiLabelDataset):
    """The user's own labels in a CSV or JSONL file.

    * CSV: a header with ``path`` and ``labels`` columns (an optional ``ignore`` column works like the
      JSONL key); labels are separated by ``|`` or ``;`` (``img/1.jpg,cat|dog``); an empty field means
      the image has none of the classes.
    * JSONL: one object per line, ``{"path": "...", "labels": ["cat", "dog"]}``, optionally
      ``"ignore": ["person"]``: those entries get mask False (unknown, left out of loss and metrics;
      a class both in labels and ignore is ignored). Blank lines are skipped.

    Relative paths resolve against ``root`` if given, else against the labels file's own folder.
    ``classes`` defaults to the sorted union of every label and ignore name; when classes are given, an
    unknown name raises ``ValueError`` naming the file and line. ``format`` is "csv" or "jsonl"
    (default: from the suffix; ``.json``/``.jsonl``/``.ndjson`` mean JSONL, anything else CSV).
    """

    def __init__(self, path: str | Path, root: str | Path | None = None,
                 classes: Sequence[str] | None = None, transform: Callable | None = None,
                 format: str | None = None):
        self.source = Path(path)
        if not self.source.is_file():
            raise FileNotFoundError(f"labels file not found: {self.source}")
        fmt = format or ("jsonl" if self.source.suffix.lower() in (".jsonl", ".json", ".ndjson") else "csv")
        if fmt not in ("csv", "jsonl"):
            raise ValueError(f"format must be 'csv' or 'jsonl', got {fmt!r}")
        rows = self._read_csv() if fmt == "csv" else self._read_jsonl()
        base = Path(root) if root is not None else self.source.parent

        if classes is None:
            classes = sorted({c for _, _, labels, ignore in rows for c in (*labels, *ignore)})
        classes = list(classes)
        index = {c: j for j, c in enumerate(classes)}
        targets = torch.zeros(len(rows), len(classes))
        masks = torch.ones(len(rows), len(classes), dtype=torch.bool)
        paths = []
        for i, (line, p, labels, ignore) in enumerate(rows):
            for name in (*labels, *ignore):
                if name not in index:
                    raise ValueError(f"{self.source}:{line}: unknown label {name!r} "
                                     f"(not among the {len(classes)} given classes)")
            targets[i, [index[c] for c in labels]] = 1.0
            masks[i, [index[c] for c in ignore]] = False
            paths.append(Path(p) if Path(p).is_absolute() else base / p)
        super().__init__(paths, targets, classes, masks, transform)

    def _read_csv(self) -> list[tuple[int, str, list[str], list[str]]]:
        rows = []
        with open(self.source, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [h.strip() for h in reader.fieldnames or []]
            if "path" not in fields or "labels" not in fields:
                raise ValueError(f"{self.source}: CSV header must have 'path' and 'labels' columns, "
                                 f"got {fields}")
            reader.fieldnames = fields
            for rec in reader:
                p = (rec.get("path") or "").strip()
                if not p:
                    if not any((v or "").strip() for v in rec.values() if isinstance(v, str)):
                        continue  # blank line
                    raise ValueError(f"{self.source}:{reader.line_num}: empty path")
                rows.append((reader.line_num, p, _split_labels(rec.get("labels")),
                             _split_labels(rec.get("ignore"))))
        return rows

    def _read_jsonl(self) -> list[tuple[int, str, list[str], list[str]]]:
        rows = []
        with open(self.source, encoding="utf-8-sig") as f:
            for line, text in enumerate(f, 1):
                if not text.strip():
                    continue
                try:
                    rec = json.loads(text)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{self.source}:{line}: invalid JSON ({e.msg})") from None
                if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
                    raise ValueError(f"{self.source}:{line}: expected an object with a string 'path'")
                lists = []
                for key in ("labels", "ignore"):
                    v = rec.get(key) or []
                    if isinstance(v, str):
                        v = [v]
                    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                        raise ValueError(f"{self.source}:{line}: '{key}' must be a list of strings")
                    lists.append([s.strip() for s in v if s.strip()])
                rows.append((line, rec["path"], *lists))
        return rows
