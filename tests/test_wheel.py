"""A wheel install works on its own: the shipped models are package data, not files of the source tree."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, text=True)
    (whl,) = out.glob("imgtag-*.whl")
    return whl


@pytest.mark.slow
def test_wheel_carries_the_default_model(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    default = (REPO / "imgtag" / "weights" / "DEFAULT").read_text().strip()
    for f in ("imgtag/weights/DEFAULT", f"imgtag/weights/{default}.json", f"imgtag/weights/{default}.safetensors",
              "imgtag/py.typed", "imgtag/templates/report.html", "imgtag/templates/review.html",
              "imgtag/templates/review.js"):
        assert f in names, f"{f} missing from {wheel.name}"
    for g in (REPO / "imgtag" / "weights").glob(f"{default}.*"):  # its per-precision graphs too (int8 IR, QDQ)
        assert f"imgtag/weights/{g.name}" in names, f"{g.name} missing from {wheel.name}"
    size = zipfile.ZipFile(wheel).getinfo(f"imgtag/weights/{default}.safetensors").file_size
    assert size == (REPO / "imgtag" / "weights" / f"{default}.safetensors").stat().st_size


@pytest.mark.slow
def test_wheel_install_tags_sample_photos(wheel, tmp_path):
    """Installed from the wheel into a fresh environment (dependencies from this one), run from another folder:
    the default model is found and the sample photos are tagged on the CPU with ONNX Runtime."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   capture_output=True, text=True)
    env = {**os.environ, "IMGTAG_MODELS": "", "CUDA_VISIBLE_DEVICES": "", "XDG_CACHE_HOME": str(tmp_path / "cache")}
    where = subprocess.run([str(py), "-c", "import imgtag; print(imgtag.__file__)"], cwd=tmp_path, env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert where.startswith(str(env_dir)), f"imported {where}, not the wheel's copy"
    r = subprocess.run([str(env_dir / "bin" / "imgtag"), "tag", str(DATA), "-j", "0"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "runtime onnx" in r.stderr or "runtime openvino" in r.stderr  # the card's measured CPU choice
    recs = {Path(json.loads(line)["path"]).name: json.loads(line) for line in r.stdout.splitlines()}
    assert len(recs) == len([p for p in DATA.iterdir() if p.suffix == ".jpg"])
    labels = {lab["label"] for lab in recs["voc_000019_cat.jpg"]["labels"]}
    assert "cat" in labels
