"""ONNX export and the ONNX Runtime tagging path: every head and the MlTr neck, parity with torch on real
photos through the Tagger, dynamic batch/size, metadata, the export cache (hit, invalidation, corrupt file)
and the fallback when ONNX Runtime is missing."""
from __future__ import annotations

import json
import os
import sys

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from imgtag.card import ModelCard, save_model  # noqa: E402
from imgtag.cli import app  # noqa: E402
from imgtag.runtime import onnx as onnx_mod  # noqa: E402
from imgtag.runtime.onnx import INSTALL_HINT, OnnxRunner, export_onnx, read_metadata  # noqa: E402
from imgtag.runtime.tagger import Tagger  # noqa: E402
from imgtag.io.decode import load_resized  # noqa: E402
from imgtag.models.model import MultiLabelModel, TaggingModel, load_model  # noqa: E402

LABELS = ["cat", "dog", "person", "car"]
SMALL = {  # small transformer settings keep the exports fast
    "gap": {},
    "csra": {"head_args": {"num_heads": 4, "lam": 0.3}},
    "q2l": {"head_args": {"hidden_dim": 64, "nheads": 4, "dim_feedforward": 128}},
    "gcn": {"head_args": {"hidden_dim_scale": 4.0}},
    "mldecoder": {"head_args": {"decoder_dim": 64, "nheads": 4, "dim_feedforward": 128}, "cosine": True, "scale": 5.0},
    "mltr": {"head": "csra", "neck": "mltr", "neck_args": {"dim": 64, "depth": 1, "num_heads": 4}},
}


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Every test gets its own export cache."""
    monkeypatch.setenv("IMGTAG_CACHE", str(tmp_path / "cache"))


def small_model(kind: str, size: int = 64) -> tuple[MultiLabelModel, ModelCard]:
    torch.manual_seed(0)
    arch = {"backbone": "tf_efficientnet_lite0", "neck": "none", "neck_args": {}, "head": kind, "head_args": {},
            "cosine": False, "scale": 1.0, **SMALL[kind]}
    adjacency = torch.rand(len(LABELS), len(LABELS)) if kind == "gcn" else None
    model = MultiLabelModel(arch, len(LABELS), adjacency=adjacency).eval()
    card = ModelCard(name=f"small-{kind}", labels=LABELS, architecture=arch, input_size=size,
                     mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    return model, card


def torch_logits(model, card, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return TaggingModel(model, card.mean, card.std).eval()(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize(
    "kind", [pytest.param(k, marks=pytest.mark.slow) if k in ("mltr", "mldecoder", "q2l") else k for k in SMALL]
)
def test_export_round_trip(kind, tmp_path):
    model, card = small_model(kind)
    path = export_onnx(model, card, tmp_path / "m.onnx")
    assert not model.training  # mode restored
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    assert (inp.name, inp.type, out.name, out.type) == ("images", "tensor(uint8)", "logits", "tensor(float)")
    rng = np.random.default_rng(0)
    for shape in [(3, 3, 64, 64), (1, 3, 64, 64), (2, 3, 96, 80), (1, 3, 75, 97)]:  # dynamic batch and H×W
        x = rng.integers(0, 256, shape, dtype=np.uint8)
        got = sess.run(None, {"images": x})[0]
        assert got.shape == (shape[0], len(LABELS)) and got.dtype == np.float32
        np.testing.assert_allclose(got, torch_logits(model, card, x), atol=1e-4, rtol=0)
    meta = read_metadata(path)
    assert ModelCard.from_dict(json.loads(meta["imgtag_card"])).to_dict() == card.to_dict()
    assert meta["weights_sha256"] == onnx_mod.weights_id(model, card) and meta["imgtag_version"]
    assert meta["imgtag_dynamic_hw"] == "true"


def test_fixed_size_export(tmp_path):
    model, card = small_model("gap")
    sess = ort.InferenceSession(str(export_onnx(model, card, tmp_path / "m.onnx", dynamic_hw=False)))
    assert sess.get_inputs()[0].shape[1:] == [3, 64, 64]
    assert read_metadata(tmp_path / "m.onnx")["imgtag_dynamic_hw"] == "false"


def test_tagger_parity_on_photos(tiny_model, photos):
    """runtime=onnx and runtime=torch give the same logits (≤ 1e-4) and labels on real photos."""
    t_onnx = Tagger(str(tiny_model), runtime="onnx", workers=0, threshold=0.0)
    t_torch = Tagger(str(tiny_model), runtime="torch", workers=0, threshold=0.0)
    assert t_onnx.runtime == "onnx" and "onnxruntime" in t_onnx.description
    batch = torch.stack([torch.from_numpy(load_resized(p, 64)).permute(2, 0, 1) for p in photos])
    assert np.abs(t_onnx.runner(batch) - t_torch.runner(batch)).max() <= 1e-4
    s_onnx, e1 = t_onnx.score_paths(photos)
    s_torch, e2 = t_torch.score_paths(photos)
    assert not e1 and not e2
    np.testing.assert_allclose(s_onnx, s_torch, atol=1e-5, rtol=0)
    a, b = t_onnx.tag_paths(photos), t_torch.tag_paths(photos)
    assert [[lab.label for lab in p.labels] for p in a] == [[lab.label for lab in p.labels] for p in b]


def test_auto_runtime_on_cpu_is_onnx(tiny_model):
    t = Tagger(str(tiny_model), device="cpu", runtime="auto", workers=0)
    assert t.runtime == "onnx"


@pytest.mark.slow
def test_cache_hit_invalidation_and_corrupt_file(tiny_model, tmp_path):
    net, card = load_model(str(tiny_model))
    first = OnnxRunner(net, card)
    assert first.exported and first.path.is_file() and first.path.parent == tmp_path / "cache" / "onnx"
    inode = first.path.stat().st_ino
    second = OnnxRunner(net, card)  # cache hit: no export, the file is not rewritten (atomic writes change the inode)
    assert not second.exported and second.path == first.path and first.path.stat().st_ino == inode
    x = np.random.default_rng(1).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    np.testing.assert_array_equal(first(x), second(x))

    # the weights change (a fine-tuned model saved over the old one): new key, new graph, new logits
    with torch.no_grad():
        net.head.fc.bias += 1.0
    save_model(net, card, tmp_path / "changed" / "tiny")
    net2, card2 = load_model(str(tmp_path / "changed" / "tiny.json"))
    third = OnnxRunner(net2, card2)
    assert third.exported and third.path != first.path
    np.testing.assert_allclose(third(x), first(x) + 1.0, atol=1e-4)

    # a corrupt cached file is rebuilt, never trusted
    first.path.write_bytes(b"not an onnx graph")
    fourth = OnnxRunner(*load_model(str(tiny_model)))
    assert fourth.exported
    np.testing.assert_allclose(fourth(x), second(x), atol=1e-6)
    # a valid graph of another model under this key (metadata sha mismatch) is rebuilt too
    first.path.write_bytes(third.path.read_bytes())
    fifth = OnnxRunner(*load_model(str(tiny_model)))
    assert fifth.exported
    np.testing.assert_allclose(fifth(x), second(x), atol=1e-6)


@pytest.fixture()
def no_onnxruntime(monkeypatch):
    """Make `import onnxruntime` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


def test_fallback_without_onnxruntime(tiny_model, no_onnxruntime):
    t = Tagger(str(tiny_model), device="cpu", runtime="auto", workers=0)
    assert t.runtime == "torch" and t.runtime_reason == INSTALL_HINT
    with pytest.raises(RuntimeError, match="pip install onnxruntime"):
        Tagger(str(tiny_model), device="cpu", runtime="onnx", workers=0)
    net, card = load_model(str(tiny_model))
    with pytest.raises(ImportError) as e:
        OnnxRunner(net, card)
    assert str(e.value) == INSTALL_HINT


def test_cli_fallback_message(tiny_model, photos, no_onnxruntime):
    r = CliRunner().invoke(app, ["tag", str(photos[0]), "-m", str(tiny_model), "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == [f"imgtag: {INSTALL_HINT}; tagging with torch instead (slower on CPU)"]
    assert json.loads(r.stdout)["path"] == str(photos[0])
    r = CliRunner().invoke(app, ["tag", str(photos[0]), "-m", str(tiny_model), "--runtime", "onnx"])
    assert r.exit_code == 2 and r.stderr.strip() == f"imgtag: error: {INSTALL_HINT}"


def test_cli_export(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["export", str(tiny_model), "--format", "onnx"])
    assert r.exit_code == 0, r.stderr
    out = tmp_path / "tiny.onnx"  # default: NAME.onnx in the current directory
    assert out.is_file() and "wrote" in r.stderr
    assert json.loads(read_metadata(out)["imgtag_card"])["labels"] == ["cat", "dog", "person"]
    r = CliRunner().invoke(app, ["export", str(tiny_model), "-o", str(tmp_path / "sub" / "x.onnx"), "--fixed-size"])
    assert r.exit_code == 0 and (tmp_path / "sub" / "x.onnx").is_file()
    assert CliRunner().invoke(app, ["export", str(tiny_model), "--format", "tflite"]).exit_code == 2
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


@pytest.mark.slow
def test_cli_export_int8(tiny_model, tmp_path, data_dir, photos):
    out = tmp_path / "q.onnx"
    r = CliRunner().invoke(app, ["export", str(tiny_model), "--int8", "--calib", str(data_dir), "-o", str(out)])
    assert r.exit_code == 0, r.stderr
    meta = read_metadata(out)
    assert meta["imgtag_precision"] == "int8" and meta["imgtag_calibration"].startswith("5 of 5 images")
    assert json.loads(meta["imgtag_card"])["name"] == "tiny"
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(str(out)).graph.node)
    x = torch.stack([torch.from_numpy(load_resized(p, 64)).permute(2, 0, 1) for p in photos]).numpy()
    got = sess.run(None, {"images": x})[0]
    net, card = load_model(str(tiny_model))
    ref = torch_logits(net, card, x)
    assert got.shape == ref.shape and np.isfinite(got).all()  # accuracy: measured on VOC, benchmarks/RESULTS.md
    assert sess.get_inputs()[0].shape[1:] == [3, 64, 64]  # int8: fixed size, the calibrated one
    assert sess.run(None, {"images": x[:2]})[0].shape == (2, 3)  # dynamic batch
    assert CliRunner().invoke(app, ["export", str(tiny_model), "--int8"]).exit_code == 2


def test_cache_keeps_the_most_recently_used(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir()
    for i in range(5):
        (d / f"{i}.onnx").write_bytes(b"x")
        os.utime(d / f"{i}.onnx", (1000 + i, 1000 + i))
    os.utime(d / "0.onnx")  # used just now
    onnx_mod._prune(d, keep=3)
    assert sorted(f.name for f in d.iterdir()) == ["0.onnx", "3.onnx", "4.onnx"]
