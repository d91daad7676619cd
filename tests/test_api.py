"""The public Python API: `import imgtag` stays light; `imgtag.tag` takes paths, folders and PIL images."""
import subprocess
import sys

import pytest
from PIL import Image

import imgtag


def test_import_is_light_and_names_resolve():
    code = "import sys, imgtag; assert 'torch' not in sys.modules; imgtag.Tagger; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    from imgtag.card import ModelCard
    from imgtag.runtime.tagger import Prediction, Tagger
    from imgtag.models.model import load_model

    assert (imgtag.Tagger, imgtag.Prediction, imgtag.ModelCard, imgtag.load_model) == (Tagger, Prediction, ModelCard, load_model)
    assert {"tag", "Tagger"} <= set(dir(imgtag))
    with pytest.raises(AttributeError):
        imgtag.nothing_here


def test_tag_paths_folders_and_images(tiny_model, photos, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"nope")
    preds = imgtag.tag([str(photos[0]), photos[1].parent, Image.open(photos[2]), tmp_path / "bad.jpg"],
                       model=str(tiny_model), threshold=0.0, workers=0, runtime="torch")
    assert [p.path for p in preds] == [str(photos[0]), *map(str, photos), "image6", str(tmp_path / "bad.jpg")]
    assert all(len(p.labels) == 3 for p in preds[:-1]) and preds[-1].error
    tagger = imgtag.Tagger(str(tiny_model), threshold=0.0, workers=0, runtime="torch")
    again = imgtag.tag(photos[0], model=tagger)  # one path, an existing Tagger (no reload)
    assert len(again) == 1 and [lab.label for lab in again[0].labels] == [lab.label for lab in preds[0].labels]
    assert again[0].scores == pytest.approx(preds[0].scores, abs=1e-5)
    with pytest.raises(TypeError):
        imgtag.tag(photos[0], model=tagger, top_k=1)
    with pytest.raises(FileNotFoundError):
        imgtag.tag(tmp_path / "missing.jpg", model=tagger)
