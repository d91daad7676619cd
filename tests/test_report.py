"""The eval report (imgtag.engine.report) and its thumbnails (imgtag.io.thumbs), rendered in real headless Chromium."""
from __future__ import annotations

import copy
import json
import os

import numpy as np
import pytest
from PIL import Image

from imgtag.engine.metrics import evaluate_scores
from imgtag.engine.report import EvalArrays, cofiring, hardest_examples, per_class_stats, write_report
from imgtag.io.thumbs import make_thumbnails

from browser import Browser, find_chromium

LABELS = ["cat", "dog", "person"]


def _arrays(photos) -> EvalArrays:
    """Five photos, three labels, scores chosen so every case below is known by hand."""
    paths = [str(p) for p in photos]
    targets = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 1]], bool)
    scores = np.array([[0.9, 0.7, 0.8],   # cat TP, dog FP (0.7) on an image with cat+person
                       [0.6, 0.9, 0.1],   # cat FP (0.6) on a dog image
                       [0.2, 0.1, 0.3],   # cat missed (0.2)
                       [0.1, 0.2, 0.95],
                       [0.3, 0.4, 0.7]])  # dog missed (0.4)
    return EvalArrays(scores, targets, np.ones_like(targets), paths, LABELS, [0.5, 0.5, 0.5])


def _result(d: EvalArrays) -> dict:
    r = evaluate_scores(d.scores, d.targets, d.masks, thresholds=d.thresholds)
    return {"model": "tiny", "dataset": "jsonl", "split": "val", "images": len(d.paths), "failed": [], "ap_mode": "nonint",
            "threshold": "per-class (model card)", **{k: float(r[k]) for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")},
            "per_class_ap": dict(zip(LABELS, r["AP"]))}


def test_hardest_examples_and_cofiring_by_hand(photos):
    d = _arrays(photos)
    assert hardest_examples(d, 0, 5) == ([1], [2])       # cat: FP row 1, miss row 2
    assert hardest_examples(d, 1, 5) == ([0], [4])       # dog: FP row 0, miss row 4
    cooc, false = cofiring(d)
    assert cooc[0, 2] == 1 and cooc[1, 2] == 1 and cooc[0, 1] == 0 and np.trace(cooc) == 0
    assert false[0, 1] == 1 and false[2, 1] == 1       # dog fired wrongly on the cat+person image
    assert false[1, 0] == 1 and false.sum() == 3        # cat fired wrongly on the dog image
    st = {s["label"]: s for s in per_class_stats(d)}
    assert (st["cat"]["tp"], st["cat"]["fp"], st["cat"]["fn"]) == (1, 1, 1)


def test_save_load_round_trip_without_pickle(photos, tmp_path):
    d = _arrays(photos)
    p = d.save(tmp_path / "scores.npz")
    with np.load(p, allow_pickle=False) as z:  # readable without pickle
        assert z["labels"].tolist() == LABELS
    e = EvalArrays.load(p)
    assert e.paths == d.paths and e.labels == d.labels
    np.testing.assert_allclose(e.scores, d.scores, atol=1e-7)
    assert (e.targets == d.targets).all() and (e.masks == d.masks).all()


def test_thumbnails_cached_by_content(photos, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    errors: list[str] = []
    got = make_thumbnails([*photos, bad], tmp_path / "t", size=64, errors=errors)
    assert got[str(bad)] is None and len(errors) == 1 and "bad.jpg" in errors[0]
    first = tmp_path / "t" / got[str(photos[0])]
    with Image.open(first) as im:
        assert im.format == "JPEG" and max(im.size) == 64
        with Image.open(photos[0]) as src:  # aspect ratio kept
            assert abs(im.size[0] / im.size[1] - src.size[0] / src.size[1]) < 0.05
    mtime = first.stat().st_mtime_ns
    copy_ = tmp_path / "same.jpg"
    copy_.write_bytes(photos[0].read_bytes())
    again = make_thumbnails([photos[0], copy_], tmp_path / "t", size=64)
    assert again[str(copy_)] == again[str(photos[0])] == first.name and first.stat().st_mtime_ns == mtime
    assert make_thumbnails([photos[0]], tmp_path / "t", size=96)[str(photos[0])] != first.name  # size is in the key


@pytest.mark.slow  # matplotlib's import and drawing: ~5 s on a busy 2-core box
def test_report_files_and_numbers(photos, tmp_path):
    pytest.importorskip("matplotlib")
    d = _arrays(photos)
    r = _result(d)
    before = copy.deepcopy(r)
    index = write_report(tmp_path / "rep", r, d, examples=3)
    assert r == before  # the report never changes the metrics
    names = sorted(os.listdir(tmp_path / "rep"))
    for png in ("ap_per_class.png", "cofiring.png", "pr_curves.png", "threshold_sweep.png"):
        assert png in names
        with Image.open(tmp_path / "rep" / png) as im:
            assert im.format == "PNG" and im.size[0] > 300
    page = index.read_text(encoding="utf-8")
    for k in ("mAP", "CF1", "OF1"):
        assert f"<td>{r[k]:.2f}</td>" in page
    assert page.count('class="tile fp"') == 2 and page.count('class="tile fn"') == 2  # cat+dog, one each
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page  # no network


@pytest.fixture(scope="module")
def browser():
    if not find_chromium():
        pytest.skip("chromium is not installed (apt-get install chromium): the page is not rendered")
    with Browser(1280, 1000) as b:
        yield b


@pytest.mark.slow
def test_report_renders_in_chromium(photos, tmp_path, browser):
    pytest.importorskip("matplotlib")
    d = _arrays(photos)
    index = write_report(tmp_path / "rep", _result(d), d, examples=3)
    browser.errors.clear()
    browser.goto(index.as_uri())
    ok, total = browser.images_loaded()
    assert total == ok == 4 + 4  # four figures, four thumbnails, all decoded by the browser
    figs = browser.eval("[...document.querySelectorAll('img.fig')].map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert {s for s, _ in figs} == {"pr_curves.png", "ap_per_class.png", "cofiring.png", "threshold_sweep.png"}
    assert all(w > 300 for _, w in figs)
    assert browser.eval("document.querySelectorAll('.tile img').length") == 4
    assert json.loads(browser.eval("document.getElementById('imgtag-report').textContent"))["labels"] == LABELS
    shot = browser.screenshot(tmp_path / "report.png")
    with Image.open(shot) as im:
        assert im.size == (1280, 1000) and len(np.unique(np.asarray(im.convert("L")))) > 50  # not a blank page
    assert browser.errors == []
