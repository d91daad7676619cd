"""`imgtag train` on real image files: a model file set comes out, caching and resume work, DDP runs."""
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from imgtag.card import read_card
from imgtag.engine.train import TrainConfig, train
from imgtag.models.model import load_model


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, photos):
    """Train/val JSONL files over the tests/data photos (their real VOC labels), each photo and its mirror."""
    from PIL import Image, ImageOps

    d = tmp_path_factory.mktemp("labelled")
    labels = {"chair": ["chair"], "car": ["car"], "horse_person": ["horse", "person"], "cat": ["cat"], "bicycle_person": ["bicycle", "person"]}
    rows = []
    for p in photos:
        lab = next(v for k, v in labels.items() if p.stem.endswith(k))
        for flip in (False, True):
            name = f"{p.stem}{'_m' if flip else ''}.jpg"
            im = Image.open(p)
            (ImageOps.mirror(im) if flip else im).save(d / name)
            rows.append({"path": name, "labels": lab})
    (d / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[::2]))
    return d


def cfg(d, out, **kw):
    base = dict(dataset="jsonl", root=str(d / "train.jsonl"), val_root=str(d / "val.jsonl"), backbone="tf_efficientnet_lite0",
                pretrained="imagenet", head="csra", size=64, epochs=3, batch_size=4, lr=3e-3, workers=0, out=str(out), name="m")
    return TrainConfig(**{**base, **kw})


def test_train_writes_a_loadable_model_with_card(labelled, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGTAG_CACHE", str(tmp_path / "cache"))
    stem, result = train(cfg(labelled, tmp_path / "run", freeze_stages=-1, command="imgtag train ..."))
    card = read_card(stem.with_suffix(".json"))
    assert card.labels == sorted({"chair", "car", "horse", "person", "cat", "bicycle"})
    assert card.input_size == 64 and card.architecture["head"] == "csra" and card.recipe["command"] == "imgtag train ..."
    assert len(card.thresholds) == 6 and all(0 < t < 1 for t in card.thresholds)
    assert 0 <= card.metrics["mAP"] <= 100 and len(card.metrics["history"]) == 3
    assert list((tmp_path / "cache").rglob("*.safetensors")), "frozen features were not cached"
    model, _ = load_model(str(stem.with_suffix(".json")))
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 6)


@pytest.mark.slow
def test_training_learns_the_training_set(labelled, tmp_path, monkeypatch):
    """A frozen ImageNet backbone + head must fit 10 labelled photos: train-set mAP well above chance."""
    monkeypatch.setenv("IMGTAG_CACHE", str(tmp_path / "cache"))
    c = cfg(labelled, tmp_path / "fit", head="gap", freeze_stages=-1, epochs=30, lr=1e-2, size=96, patience=30,
            val_root=str(labelled / "train.jsonl"), augment="none", ema=0.0)
    _, result = train(c)
    assert result["mAP"] > 90


@pytest.mark.slow
def test_resume_continues_from_checkpoint(labelled, tmp_path, monkeypatch):
    monkeypatch.setenv("IMGTAG_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "res"
    _, first = train(cfg(labelled, out, epochs=4, freeze_stages=7, augment="flip", stop_after=2))
    assert [h["epoch"] for h in first["history"]] == [1, 2]
    _, result = train(cfg(labelled, out, epochs=4, freeze_stages=7, augment="flip", resume=True))
    assert [h["epoch"] for h in result["history"]] == [1, 2, 3, 4]
    assert result["history"][:2] == first["history"]
    with pytest.raises(ValueError, match="same schedule"):
        train(cfg(labelled, out, epochs=5, freeze_stages=7, augment="flip", resume=True))


@pytest.mark.slow
@pytest.mark.parametrize("head,loss", [("q2l", "asl"), ("gcn", "am-binary"), ("mldecoder", "focal")])
def test_every_head_and_loss_trains_end_to_end(labelled, tmp_path, monkeypatch, head, loss):
    monkeypatch.setenv("IMGTAG_CACHE", str(tmp_path / "cache"))
    stem, result = train(cfg(labelled, tmp_path / head, head=head, loss=loss, epochs=1, augment="randaugment", freeze_stages=5))
    card = read_card(stem.with_suffix(".json"))
    assert card.architecture["cosine"] == (loss == "am-binary")
    assert math.isfinite(result["history"][0]["loss"]) and result["history"][0]["loss"] > 0
    model, _ = load_model(str(stem.with_suffix(".json")))
    scores = torch.sigmoid(model(torch.zeros(2, 3, 64, 64)))
    assert scores.shape == (2, 6) and torch.isfinite(scores).all()


@pytest.mark.slow
def test_ddp_with_torchrun_two_processes(labelled, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "IMGTAG_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "imgtag", "train",
           "--dataset", "jsonl", "--root", str(labelled / "train.jsonl"), "--val-root", str(labelled / "val.jsonl"),
           "--backbone", "tf_efficientnet_lite0", "--size", "64", "--epochs", "1", "-b", "4", "--workers", "0",
           "--freeze-stages", "-1", "--out", str(out), "--name", "ddp", "--device", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (out / "ddp.safetensors").exists() and (out / "ddp.json").exists()


def test_views_are_fixed_and_distinct(photo):
    from imgtag.runtime.loader import View, read_chw

    t = read_chw(photo, 64)
    assert torch.equal(View(0)(t, 3), t) and torch.equal(View(1)(t, 3), t.flip(-1))
    a, b = View(2)(t, 3), View(2)(t, 3)
    assert torch.equal(a, b), "a seeded view must be reproducible (it is cached)"
    assert not torch.equal(View(3)(t, 3), a) and not torch.equal(View(2)(t, 4), a)
    before = torch.get_rng_state()
    View(5)(t, 0)
    assert torch.equal(torch.get_rng_state(), before), "drawing a view must not disturb the caller's RNG"


@pytest.mark.slow
def test_randaugment_views_are_cached_and_trained_on(labelled, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMGTAG_CACHE", str(tmp_path / "cache"))
    stem, result = train(cfg(labelled, tmp_path / "views", epochs=2, freeze_stages=5, augment="randaugment", views=3))
    assert "for 3×10 train" in capsys.readouterr().err
    # 3 train views + val, one file each; a second run reuses all of them
    files = sorted((tmp_path / "cache").rglob("*.safetensors"))
    assert len(files) == 4
    mtimes = [f.stat().st_mtime_ns for f in files]
    _, again = train(cfg(labelled, tmp_path / "views2", epochs=2, freeze_stages=5, augment="randaugment", views=3))
    assert [f.stat().st_mtime_ns for f in sorted((tmp_path / "cache").rglob("*.safetensors"))] == mtimes
    assert again["mAP"] == pytest.approx(result["mAP"])  # same views, same seed: the same run
    assert read_card(stem.with_suffix(".json")).recipe["views"] == 3


@pytest.mark.parametrize("augment,views", [("none", 2), ("flip", 3), ("flip", -1)])
def test_views_beyond_the_policy_are_refused(labelled, tmp_path, augment, views):
    with pytest.raises(ValueError, match="--views"):
        train(cfg(labelled, tmp_path / "bad", freeze_stages=5, augment=augment, views=views))
