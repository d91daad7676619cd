"""Shared pytest fixtures (generic: usable by any test module)."""
from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """tests/data: tiny real photos (see tests/data/README.md)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def photos(data_dir) -> list[Path]:
    """The tiny real photos, sorted by name."""
    found = sorted(data_dir.glob("*.jpg"))
    assert found, f"no test photos in {data_dir}"
    return found


@pytest.fixture(scope="session")
def photo(data_dir) -> Path:
    """One real photo with two objects (horse, person), 128x96 JPEG."""
    return data_dir / "voc_000009_horse_person.jpg"


LABELS = ["cat", "dog", "person"]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised small model file set (Lite0 + GAP head, 3 labels, 64 px); returns the .json path."""
    import torch

    from imgtag.card import ModelCard, save_model
    from imgtag.models.model import MultiLabelModel

    torch.manual_seed(0)
    arch = {"backbone": "tf_efficientnet_lite0", "neck": "none", "neck_args": {}, "head": "gap",
            "head_args": {}, "cosine": False, "scale": 1.0}
    model = MultiLabelModel(arch, len(LABELS)).eval()
    card = ModelCard(name="tiny", labels=LABELS, architecture=arch, input_size=64, thresholds=[0.5, 0.5, 0.0])
    _, c = save_model(model, card, tmp_path_factory.mktemp("models") / "tiny")
    return c


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep exported ONNX graphs and feature caches of the test run out of the user's cache directory."""
    import os

    old = os.environ.get("IMGTAG_CACHE")
    os.environ["IMGTAG_CACHE"] = str(tmp_path_factory.mktemp("imgtag-cache"))
    yield
    if old is None:
        os.environ.pop("IMGTAG_CACHE", None)
    else:
        os.environ["IMGTAG_CACHE"] = old


@pytest.fixture()
def small_fs(tmp_path):
    """A 200 KiB tmpfs (a disk that fills up for real); skipped where mounting is not allowed (needs root)."""
    import subprocess

    d = tmp_path / "small_fs"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({(r.stderr or r.stdout).strip() or 'mount failed'})")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


@pytest.fixture()
def read_only_dir(tmp_path):
    """A directory no file can be created in: mode 555 for a normal user; as root (modes do not stop root) a
    read-only tmpfs, skipped where mounting is not allowed."""
    import os
    import subprocess

    d = tmp_path / "read_only"
    d.mkdir()
    if os.geteuid() != 0:
        d.chmod(0o555)
        yield d
        d.chmod(0o755)
        return
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"root, and cannot mount a read-only tmpfs here ({(r.stderr or r.stdout).strip() or 'mount failed'})")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)
