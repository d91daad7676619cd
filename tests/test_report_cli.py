"""The CLI glue: `imgtag eval --report`, `imgtag tag --review` and `imgtag tag --corrections` end to end."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from imgtag.cli import app
from imgtag.engine.report import EvalArrays
from imgtag.io.corrections import Correction, write_corrections
from imgtag.io.xmp import read_sidecar, read_sidecar_labels

runner = CliRunner()


@pytest.fixture()
def labelled(tmp_path, photos):
    """The five test photos with labels from the tiny model's vocabulary, as a JSONL dataset."""
    d = tmp_path / "ds"
    d.mkdir()
    labels = [["person"], ["cat"], ["dog", "person"], ["cat"], ["person"]]
    with open(d / "labels.jsonl", "w") as f:
        for p, labs in zip(photos, labels):
            (d / p.name).write_bytes(p.read_bytes())
            f.write(json.dumps({"path": p.name, "labels": labs}) + "\n")
    return d


@pytest.mark.slow  # two evals + matplotlib: ~10 s on a busy 2-core box
def test_eval_report_prints_the_same_metrics_and_the_path(labelled, tiny_model, tmp_path):
    base = ["eval", "-d", "jsonl", "--root", str(labelled / "labels.jsonl"), "-m", str(tiny_model), "--json",
            "--runtime", "torch", "--workers", "0", "--device", "cpu"]
    plain = runner.invoke(app, base)
    assert plain.exit_code == 0, plain.output
    rep = runner.invoke(app, base + ["--report", str(tmp_path / "rep"), "--save-scores", str(tmp_path / "s.npz")])
    assert rep.exit_code == 0, rep.output
    assert json.loads(rep.stdout) == json.loads(plain.stdout)  # a report never changes the metrics
    index = tmp_path / "rep" / "index.html"
    assert f"report written to {index}" in rep.stderr and index.exists()
    assert {p.name for p in (tmp_path / "rep").glob("*.png")} == {"pr_curves.png", "ap_per_class.png", "cofiring.png",
                                                                   "threshold_sweep.png"}
    page = index.read_text(encoding="utf-8")
    assert f"<td>{json.loads(plain.stdout)['mAP']:.2f}</td>" in page
    saved = EvalArrays.load(tmp_path / "s.npz")
    assert saved.labels == ["cat", "dog", "person"] and len(saved.paths) == 5 and np.isfinite(saved.scores).all()


@pytest.mark.slow
def test_tag_review_and_corrections_reach_the_sidecars(labelled, tiny_model, tmp_path, photos):
    imgs = sorted(labelled.glob("*.jpg"))
    base = ["tag", str(labelled), "-m", str(tiny_model), "--runtime", "torch", "--workers", "0", "-q"]
    r = runner.invoke(app, base + ["-f", "xmp", "--review", str(tmp_path / "sheet")])
    assert r.exit_code == 0, r.output
    assert "review sheet written to" in r.stderr and (tmp_path / "sheet" / "index.html").exists()
    before = {p.name: read_sidecar_labels(str(p) + ".xmp") for p in imgs}
    assert all("person" in v for v in before.values())  # the tiny model's person threshold is 0
    fixes = write_corrections(tmp_path / "c.jsonl", [Correction(str(imgs[0]), "person", None, "wrong"),
                                                     Correction(str(imgs[1]), "dog", "animal|dog", "missing")])
    r = runner.invoke(app, base + ["-f", "xmp", "--corrections", str(fixes)])
    assert r.exit_code == 0, r.output
    after = {p.name: read_sidecar_labels(str(p) + ".xmp") for p in imgs}
    assert "person" not in after[imgs[0].name]
    assert "dog" in after[imgs[1].name] and read_sidecar(str(imgs[1]) + ".xmp")["scores"]["dog"] == pytest.approx(1.0)
    assert all(after[p.name] == before[p.name] for p in imgs[2:])
    r = runner.invoke(app, base + ["-f", "xmp", "--corrections", str(tmp_path / "nope.jsonl")])
    assert r.exit_code == 2 and "--corrections" in r.stderr
