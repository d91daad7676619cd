"""The shipped default model, used with no flags, finds what is in the bundled real photos."""
import json
import subprocess
import sys

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
    assert "device cpu" in p.stderr
