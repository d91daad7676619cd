"""The shipped default model, used with no flags, finds what is in the bundled real photos."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgtag.card import default_model_name, read_card, resolve_model

TRUE = {"chair": {"chair"}, "car": {"car"}, "horse_person": {"horse", "person"}, "cat": {"cat"}, "bicycle_person": {"bicycle", "person"}}


def test_default_model_card_is_complete():
    w, c = resolve_model(None)
    card = read_card(c)
    assert c.stem == default_model_name()
    assert len(card.labels) == 20 and len(card.thresholds) == 20
    assert card.recipe["command"].startswith("imgtag train")
    assert card.metrics["mAP"] > 85 and card.metrics["dataset"] == "voc:val"
    assert card.weights_dtype == "float16" and w.stat().st_size < 20 * 2**20
    # the photo-keyword vocabulary: >= 500 keywords in a tree over the VOC head + the ImageNet-1k head (one pass)
    kws = card.vocabulary["keywords"]
    assert len(kws) >= 500 and [h["name"] for h in card.heads] == ["voc", "imagenet"] and card.num_outputs == 1020
    assert {k["voc_label"] for k in kws if k.get("voc_label")} == set(card.labels)  # each VOC label is a keyword


@pytest.mark.parametrize("runtime", ["torch", pytest.param("auto", marks=pytest.mark.slow)])
def test_tag_with_no_flags_finds_the_objects(photos, runtime):
    p = subprocess.run([sys.executable, "-m", "imgtag", "tag", str(photos[0].parent), "--runtime", runtime],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    recs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(recs) == len(photos)
    for r in recs:
        truth = next(v for k, v in TRUE.items() if r["path"].endswith(f"_{k}.jpg"))
        found = [lab["label"] for lab in r["labels"]]
        assert truth <= set(found), (r["path"], found)
        assert set(found[: len(truth)]) == truth, (r["path"], found)  # the true labels score highest
        paths = {lab["label"]: lab["path"] for lab in r["labels"]}
        for lab in truth:  # each with its hierarchy path, and its parents emitted too
            assert paths[lab].split("|")[-1] == lab and set(paths[lab].split("|")) <= set(found), (lab, paths)
    by_name = {Path(r["path"]).name: {lab["label"]: lab["path"] for lab in r["labels"]} for r in recs}
    assert by_name["voc_000019_cat.jpg"]["cat"] == "animal|cat"
    assert by_name["voc_000007_car.jpg"]["car"] == "vehicle|car"
    assert by_name["voc_000005_chair.jpg"]["chair"] == "object|furniture|seat|chair"
    assert "device cpu" in p.stderr
