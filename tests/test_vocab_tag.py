"""Tagging with a keyword vocabulary, end to end on real files: a tiny two-head model (a VOC-like sigmoid head + an
ImageNet-like softmax head on one pass) whose heads are set to fixed outputs, so what must come out is known: the
Tagger (torch and ONNX Runtime), selection (--exclude on any level, --top-k), every output format with the
hierarchy path, XMP sidecars read back by exiftool, a re-run that keeps the user's keywords, and untag."""
from __future__ import annotations

import csv
import io
import json
import subprocess

import numpy as np
import pytest
from typer.testing import CliRunner
from xmpreaders import EXIFTOOL, as_list, needs_exiftool

from imgtag.cli import app

runner = CliRunner()
HEADS = [{"name": "voc", "size": 2, "activation": "sigmoid"}, {"name": "imagenet", "size": 4, "activation": "softmax"}]
KEYWORDS = [
    {"name": "animal", "path": "animal", "thresholds": {"imagenet": 0.5}},
    {"name": "dog", "path": "animal|dog", "classes": {"voc": [0]}, "thresholds": {"imagenet": 0.5, "voc": 0.8},
     "voc_label": "dog"},
    {"name": "beagle", "path": "animal|dog|beagle", "classes": {"imagenet": [0]}, "thresholds": {"imagenet": 0.5}},
    {"name": "pug", "path": "animal|dog|pug", "classes": {"imagenet": [1]}, "thresholds": {"imagenet": 0.5}},
    {"name": "person", "path": "person", "classes": {"voc": [1]}, "thresholds": {"voc": 0.7}, "voc_label": "person"},
    {"name": "vehicle", "path": "vehicle", "classes": {"imagenet": [3]}, "thresholds": {"imagenet": 0.5}},
    {"name": "car", "path": "vehicle|car", "classes": {"imagenet": [2]}, "thresholds": {"imagenet": 0.5}},
]
P_PERSON = 1 / (1 + np.exp(-5.0))  # VOC head: person logit 5, dog -5
P_BEAGLE = np.exp(5.0) / (np.exp(5.0) + 3)  # ImageNet head: beagle logit 5, the rest 0
P_DOG = (np.exp(5.0) + 1) / (np.exp(5.0) + 3)  # beagle + pug: the mass of the dog subtree


@pytest.fixture(scope="module")
def kw_model(tmp_path_factory):
    """A Lite0 model (64 px) with a VOC-like head of 2 labels and a 4-class softmax head; both heads' weights are
    zero and their biases fixed, so every image gets person (0.993) and beagle (0.980)."""
    import torch

    from imgtag.card import ModelCard, save_model
    from imgtag.models.model import MultiLabelModel

    torch.manual_seed(0)
    arch = {"backbone": "tf_efficientnet_lite0", "neck": "none", "neck_args": {}, "head": "gap", "head_args": {},
            "cosine": False, "scale": 1.0, "extra_heads": [{"name": "imagenet", "size": 4}]}
    model = MultiLabelModel(arch, 2).eval()
    with torch.no_grad():
        lins = [m for m in model.head.modules() if isinstance(m, torch.nn.Linear)]
        assert len(lins) == 1
        lins[0].weight.zero_()
        lins[0].bias.copy_(torch.tensor([-5.0, 5.0]))
        model.extra_heads["imagenet"].weight.zero_()
        model.extra_heads["imagenet"].bias.copy_(torch.tensor([5.0, 0, 0, 0]))
    card = ModelCard(name="kw-tiny", labels=["dog", "person"], architecture=arch, input_size=64,
                     thresholds=[0.8, 0.7], heads=HEADS, vocabulary={"separator": "|", "keywords": KEYWORDS})
    _, c = save_model(model, card, tmp_path_factory.mktemp("kwmodel") / "kw-tiny")
    return c


@pytest.fixture()
def photos_dir(tmp_path, photos):
    d = tmp_path / "photos"
    d.mkdir()
    for p in photos[:2]:
        (d / p.name).write_bytes(p.read_bytes())
    return d


def names(labels):
    return [lab.label for lab in labels]


@pytest.mark.parametrize("runtime", ["torch", pytest.param("onnx", marks=pytest.mark.slow)])
def test_tagger_emits_keywords_with_paths(kw_model, photos, runtime):
    from imgtag.runtime.tagger import Tagger

    t = Tagger(str(kw_model), device="cpu", workers=0, runtime=runtime)
    preds = list(t.tag_paths(photos[:2]))
    for p in preds:
        assert p.error is None
        assert p.logits.shape == (6,)  # every head: the runner returns card.num_outputs columns
        assert np.allclose(p.scores, [1 - P_PERSON, P_PERSON], atol=1e-4)  # the first head's sigmoid (eval, mAP)
        assert names(p.labels) == ["person", "beagle", "dog", "animal"]
        assert [lab.path for lab in p.labels] == ["person", "animal|dog|beagle", "animal|dog", "animal"]
        assert p.labels[1].score == pytest.approx(P_BEAGLE, abs=1e-4)
        assert p.labels[2].score == pytest.approx(P_DOG, abs=1e-4)  # dog: the mass of its subtree
    assert t.scores_of(preds[0].logits[None]).shape == (1, 2)
    assert np.asarray(t.thresholds).tolist() == pytest.approx([0.8, 0.7])


def test_exclude_any_level_and_top_k(kw_model, photos):
    import imgtag
    from imgtag.card import read_card
    from imgtag.runtime.selection import make_selector

    pred = imgtag.tag(photos[0], model=str(kw_model), device="cpu", workers=0, runtime="torch", exclude=["dog"])[0]
    assert names(pred.labels) == ["person", "animal"]  # beagle goes with dog; animal is sure on its own
    card = read_card(kw_model)

    def tag(threshold=None, **kw):  # the Tagger's selector, on the same logits row
        return names(make_selector(card, threshold, **kw)(pred.logits))

    assert tag(exclude=["animal"]) == ["person"]
    assert tag(exclude=["animal|dog|beagle"]) == ["person", "dog", "animal"]  # a keyword's path names it too
    assert tag(exclude=["person"]) == ["beagle", "dog", "animal"]
    assert tag(top_k=1) == ["person"]
    assert tag(top_k=2) == ["person", "beagle", "dog", "animal"]  # the 2 most specific, with their parents
    assert tag(0.99) == ["person"]  # one threshold for every head: beagle's 0.980 is below
    assert tag([0.8, 0.995]) == ["beagle", "dog", "animal"]  # the first head's thresholds (another precision's)
    with pytest.raises(ValueError, match="nonsense"):
        tag(exclude=["nonsense"])


@pytest.mark.slow
def test_outputs_carry_the_path(kw_model, photos_dir, tmp_path):
    r = runner.invoke(app, ["tag", str(photos_dir), "-m", str(kw_model), "--runtime", "torch", "--top-k", "1"])
    assert r.exit_code == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(recs) == 2
    assert recs[0]["labels"] == [{"label": "person", "score": pytest.approx(P_PERSON, abs=1e-4), "path": "person"}]

    out = tmp_path / "out.csv"
    r = runner.invoke(app, ["tag", str(photos_dir), "-m", str(kw_model), "--runtime", "torch", "-f", "csv", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["path", "labels", "scores", "label_paths"]
    got = dict(zip(rows[0]["labels"].split("|"), rows[0]["label_paths"].replace("\\|", "/").split("|")))
    assert got == {"person": "person", "beagle": "animal/dog/beagle", "dog": "animal/dog", "animal": "animal"}

    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "out.parquet"
    r = runner.invoke(app, ["tag", str(photos_dir), "-m", str(kw_model), "--runtime", "torch", "-f", "parquet", "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    row = pq.read_table(out).to_pylist()[0]
    assert dict(zip(row["labels"], row["label_paths"]))["beagle"] == "animal|dog|beagle"
    # a resumed parquet run reads its paths back
    from imgtag.io.writers import make_writer

    prev = make_writer("parquet", str(out)).previous()
    assert {lab["label"]: lab.get("path") for lab in next(iter(prev.values()))["labels"]}["beagle"] == "animal|dog|beagle"


@pytest.mark.slow
@needs_exiftool
def test_xmp_hierarchy_rerun_keeps_user_keywords_and_untag(kw_model, photos_dir):
    img = sorted(photos_dir.glob("*.jpg"))[0]
    side = img.parent / (img.name + ".xmp")
    # the user's own keywords, written by exiftool before imgtag runs
    subprocess.run([EXIFTOOL, "-q", "-o", str(side), "-XMP-dc:Subject=holiday", "-XMP-lr:HierarchicalSubject=places|beach",
                    "-XMP-digiKam:TagsList=places/beach", str(img)], check=True)

    def exif():
        out = subprocess.run([EXIFTOOL, "-j", "-XMP-lr:HierarchicalSubject", "-XMP-digiKam:TagsList", "-XMP-dc:Subject",
                              str(side)], check=True, capture_output=True, text=True).stdout
        return json.loads(out)[0]

    def tag(*extra):
        r = runner.invoke(app, ["tag", str(img), "-m", str(kw_model), "--runtime", "torch", "-f", "xmp", *extra])
        assert r.exit_code == 0, r.stderr

    tag()
    t = exif()
    assert as_list(t["HierarchicalSubject"]) == ["places|beach", "person", "animal|dog|beagle", "animal|dog", "animal"]
    assert as_list(t["TagsList"]) == ["places/beach", "person", "animal/dog/beagle", "animal/dog", "animal"]
    assert as_list(t["Subject"]) == ["holiday", "person", "beagle", "dog", "animal"]
    # a re-run with other keywords replaces imgtag's, the user's stay
    tag("--exclude", "animal")
    t = exif()
    assert as_list(t["HierarchicalSubject"]) == ["places|beach", "person"]
    assert as_list(t["TagsList"]) == ["places/beach", "person"]
    assert as_list(t["Subject"]) == ["holiday", "person"]
    tag()
    r = runner.invoke(app, ["untag", str(img)])
    assert r.exit_code == 0, r.stderr
    t = exif()
    assert as_list(t["HierarchicalSubject"]) == ["places|beach"]
    assert as_list(t["TagsList"]) == ["places/beach"]
    assert as_list(t["Subject"]) == ["holiday"]
