"""Datasets (synthetic VOC / COCO / CSV / JSONL, plus the real VOC2007 copy when present)."""
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgtag.data import VOC_CLASSES, COCODataset, LabelledFileDataset, VOCDataset, build_dataset


def _jpeg(path: Path, color=(200, 30, 30), size=(24, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, "JPEG")


# ---- synthetic VOC -------------------------------------------------------------------------------
VOC_LABELS = {  # class -> labels of ids 000001..000004 in the train split
    "cat": ["1", "-1", "0", "-1"],
    "dog": ["-1", "1", "-1", "1"],
    "person": ["1", "1", "-1", "1"],
}


@pytest.fixture
def voc(tmp_path):
    year = tmp_path / "VOCdevkit" / "VOC2007"
    main = year / "ImageSets" / "Main"
    main.mkdir(parents=True)
    ids = ["000001", "000002", "000003", "000004"]
    for i in ids[:3]:  # 000004 has no image
        _jpeg(year / "JPEGImages" / f"{i}.jpg")
    (main / "train.txt").write_text("\n".join(ids) + "\n")
    for c, labels in VOC_LABELS.items():
        (main / f"{c}_train.txt").write_text("".join(f"{i} {v:>2}\n" for i, v in zip(ids, labels)))
        (main / f"{c}_trainval.txt").write_text("".join(f"{i}  1\n" for i in ids))  # must not leak into val
        (main / f"{c}_val.txt").write_text("000001 -1\n")
    return year


def test_voc_parsing_and_missing_image(voc):
    with pytest.warns(UserWarning, match="1 of 4"):
        ds = VOCDataset(voc, "train")
    assert ds.classes == ["cat", "dog", "person"] and ds.ids == ["000001", "000002", "000003"]
    assert ds.missing == ["000004"] and len(ds) == 3
    assert ds.targets.tolist() == [[1, 0, 1], [0, 1, 1], [0, 0, 0]]
    assert ds.masks.tolist() == [[True] * 3, [True] * 3, [False, True, True]]  # difficult ignored
    assert ds.label_counts().tolist() == [1, 1, 2]
    image, target, mask, idx = ds[2]
    assert isinstance(image, Image.Image) and image.size == (24, 16) and idx == 2
    assert target.dtype == torch.float32 and mask.dtype == torch.bool
    # the VOCdevkit folder works too; val split does not pick up *_trainval.txt
    val = VOCDataset(voc.parent, "val")
    assert val.classes == ["cat", "dog", "person"] and len(val) == 1 and val.targets.sum() == 0


@pytest.mark.parametrize("mode,target,mask", [("positive", 1.0, True), ("negative", 0.0, True),
                                              ("ignore", 0.0, False)])
def test_voc_difficult_modes(voc, mode, target, mask):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = VOCDataset(voc, "train", difficult=mode)
    assert ds.targets[2, 0].item() == target and ds.masks[2, 0].item() is mask
    assert ds.masks[:, 1:].all()


def test_voc_errors_and_subset(voc, tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageSets"):
        VOCDataset(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="difficult"):
        VOCDataset(voc, difficult="maybe")
    with pytest.raises(FileNotFoundError, match="split"):
        VOCDataset(voc, "test")
    (voc / "ImageSets" / "Main" / "dog_train.txt").write_text("000001 2\n")
    with pytest.raises(ValueError, match="dog_train.txt:1"):
        VOCDataset(voc, "train")


def test_subset_keeps_rows_aligned(voc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = build_dataset("voc", str(voc), "train")
    sub = ds.subset([2, 0])
    assert type(sub) is VOCDataset and sub.ids == ["000003", "000001"] and len(sub) == 2
    assert sub.paths[0].name == "000003.jpg"
    assert torch.equal(sub.targets, ds.targets[[2, 0]]) and torch.equal(sub.masks, ds.masks[[2, 0]])
    assert len(ds) == 3  # original untouched
    assert ds.subset(torch.tensor([False, True, True])).ids == ["000002", "000003"]


def test_columns_follow_the_given_label_order(voc):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = build_dataset("voc", str(voc), "train")
    labels = list(reversed(ds.classes))
    t, m = ds.columns(labels)
    for j, lab in enumerate(labels):
        k = ds.classes.index(lab)
        assert np.array_equal(t[:, j], ds.targets[:, k].numpy()) and np.array_equal(m[:, j], ds.masks[:, k].numpy())
    with pytest.raises(ValueError):
        ds.columns(["unicorn"])


def _real_voc():
    env = os.environ.get("IMGTAG_VOC_ROOT")
    root = Path(env) if env else (Path(__file__).parents[1] / "../shared/data/VOCdevkit/VOC2007").resolve()
    if not (root / "ImageSets" / "Main").is_dir() and not (root / "VOC2007" / "ImageSets" / "Main").is_dir():
        pytest.skip(f"real VOC2007 not found at {root} (set IMGTAG_VOC_ROOT)")
    return root


def test_real_voc2007():
    root = _real_voc()
    train, val = VOCDataset(root, "train"), VOCDataset(root, "val")
    assert (len(train), len(val)) == (2500, 2508)
    assert train.classes == list(VOC_CLASSES) == val.classes
    for ds in (train, val):
        counts = ds.label_counts()
        assert ds.classes[int(counts.argmax())] == "person"
        assert (counts > 0).all() and (~ds.masks).any()  # some difficult entries are ignored
        assert (ds.targets.sum(1) + (~ds.masks).sum(1) > 0).all()  # every image has a label or difficult
    x, target, mask, i = val[0]
    assert x.size[0] > 0 and target.shape == mask.shape == (20,) and i == 0


# ---- COCO ----------------------------------------------------------------------------------------
def test_coco(tmp_path):
    (tmp_path / "annotations").mkdir()
    _jpeg(tmp_path / "val2014" / "b.jpg")
    data = {
        "images": [{"id": 30, "file_name": "c.jpg"}, {"id": 10, "file_name": "a.jpg"},
                   {"id": 20, "file_name": "b.jpg"}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 10, "category_id": 18, "iscrowd": 0},
                        {"id": 2, "image_id": 10, "category_id": 18, "iscrowd": 0},
                        {"id": 3, "image_id": 20, "category_id": 1, "iscrowd": 1},
                        {"id": 4, "image_id": 20, "category_id": 3, "iscrowd": 0}],
    }
    ann = tmp_path / "annotations" / "instances_val2014.json"
    ann.write_text(json.dumps(data))
    ds = build_dataset("coco", tmp_path, "val2014")
    assert isinstance(ds, COCODataset) and ds.classes == ["person", "car", "dog"] and ds.cat_ids == [1, 3, 18]
    assert ds.image_ids == [10, 20] and ds.targets.tolist() == [[0, 0, 1], [1, 1, 0]]
    assert ds.masks.all() and ds[1][0].size == (24, 16)
    keep = COCODataset(tmp_path / "val2014", ann, drop_empty=False)
    assert keep.image_ids == [10, 20, 30] and keep.targets[2].sum() == 0
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        build_dataset("coco", tmp_path, "train2014")


# ---- CSV / JSONL ---------------------------------------------------------------------------------
def test_csv(tmp_path):
    _jpeg(tmp_path / "img" / "1.jpg")
    f = tmp_path / "labels.csv"
    f.write_text("path,labels\nimg/1.jpg,cat|dog\nimg/2.jpg,dog; bird\nimg/3.jpg,\n/abs/4.jpg,cat\n")
    ds = build_dataset("csv", str(f), "train")
    assert ds.classes == ["bird", "cat", "dog"]
    assert ds.targets.tolist() == [[0, 1, 1], [1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert ds.masks.all()
    assert ds.paths[0] == tmp_path / "img" / "1.jpg" and ds.paths[3] == Path("/abs/4.jpg")
    assert ds[0][0].size == (24, 16)
    other = LabelledFileDataset(f, root="/data", classes=["dog", "cat", "bird", "fish"])
    assert other.paths[0] == Path("/data/img/1.jpg") and other.targets[0].tolist() == [1, 1, 0, 0]
    with pytest.raises(ValueError, match=r"labels\.csv:3: unknown label 'bird'"):
        LabelledFileDataset(f, classes=["cat", "dog"])
    bad = tmp_path / "bad.csv"
    bad.write_text("file,tags\na.jpg,cat\n")
    with pytest.raises(ValueError, match="'path' and 'labels'"):
        LabelledFileDataset(bad)


def test_jsonl_with_ignore(tmp_path):
    f = tmp_path / "sub" / "labels.jsonl"
    f.parent.mkdir()
    f.write_text('{"path": "a.jpg", "labels": ["cat", "dog"]}\n\n'
                 '{"path": "b.jpg", "labels": ["dog"], "ignore": ["person"]}\n'
                 '{"path": "c.jpg", "labels": []}\n')
    ds = build_dataset("jsonl", f, "train")
    assert ds.classes == ["cat", "dog", "person"] and ds.paths[1] == tmp_path / "sub" / "b.jpg"
    assert ds.targets.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert ds.masks.tolist() == [[True] * 3, [True, True, False], [True] * 3]
    assert ds.label_counts().tolist() == [1, 2, 0]
    with pytest.raises(ValueError, match=r"labels\.jsonl:3: unknown label 'person'"):
        LabelledFileDataset(f, classes=["cat", "dog"])
    f.write_text('{"path": "a.jpg", "labels": ["cat"]}\nnot json\n')
    with pytest.raises(ValueError, match=r"labels\.jsonl:2: invalid JSON"):
        LabelledFileDataset(f)


def test_build_dataset_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset kind 'imagenet'.*voc, coco, csv, jsonl"):
        build_dataset("imagenet", tmp_path, "train")
