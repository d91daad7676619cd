"""Model file sets: safetensors + JSON card round trip, pickle refusal, corruption and mismatch detection."""
import json
import pickle

import pytest
import torch

from imgtag.card import ModelCard, ModelFileError, check_safetensors, read_card, resolve_model, save_model
from imgtag.models.model import MultiLabelModel, TaggingModel, load_model

ARCH = {"backbone": "tf_efficientnet_lite0", "neck": "none", "neck_args": {}, "head": "csra",
        "head_args": {"num_heads": 2, "lam": 0.2}, "cosine": False, "scale": 1.0}


def _model(arch=ARCH, k=4):
    torch.manual_seed(1)
    m = MultiLabelModel(arch, k).eval()
    with torch.no_grad():  # non-trivial BN statistics, so buffers are checked too
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
    return m


def test_checkpoint_round_trip_is_exact(tmp_path):
    m = _model()
    card = ModelCard(name="rt", labels=list("abcd"), architecture=ARCH, input_size=96, thresholds=[0.1, 0.2, 0.3, 0.4])
    w, c = save_model(m, card, tmp_path / "rt")
    m2, card2 = load_model(str(c))
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(m(x), m2(x))
    assert card2.thresholds == [0.1, 0.2, 0.3, 0.4] and card2.labels == list("abcd")
    assert len(card2.weights_sha256) == 64


def test_fp16_weights_load_as_float32(tmp_path):
    m = _model()
    card = ModelCard(name="h", labels=list("abcd"), architecture=ARCH)
    w, c = save_model(m, card, tmp_path / "h", dtype=torch.float16)
    m2, card2 = load_model(str(w))
    assert card2.weights_dtype == "float16"
    assert all(v.dtype == torch.float32 for v in m2.state_dict().values() if v.is_floating_point())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(m(x), m2(x), atol=5e-2)
    assert w.stat().st_size < 0.6 * sum(v.numel() * 4 for v in m.state_dict().values())


class Boom:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_file_is_refused_and_never_unpickled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = _model()
    card = ModelCard(name="p", labels=list("abcd"), architecture=ARCH)
    w, c = save_model(m, card, tmp_path / "p")
    with open(w, "wb") as f:  # a malicious pickle in place of the weights
        pickle.dump({"x": Boom()}, f)
    with pytest.raises(ModelFileError, match="pickle"):
        load_model(str(c))
    assert not (tmp_path / "PWNED").exists()
    torch.save(m.state_dict(), w)  # torch.save's zip format is refused too
    with pytest.raises(ModelFileError, match="pickle"):
        check_safetensors(w)


def test_changed_weights_are_detected(tmp_path):
    card = ModelCard(name="s", labels=list("abcd"), architecture=ARCH)
    w, c = save_model(_model(), card, tmp_path / "s")
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="sha256"):
        load_model(str(c))


def test_card_mismatch_and_missing_files(tmp_path):
    card = ModelCard(name="s", labels=list("abcd"), architecture=ARCH)
    w, c = save_model(_model(), card, tmp_path / "s")
    d = json.loads(c.read_text())
    d["architecture"]["head"] = "gap"
    d["weights_sha256"] = ""
    c.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="cannot be built"):
        load_model(str(c))
    d["architecture"]["head_args"] = {}
    c.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(str(c))
    w.unlink()
    with pytest.raises(ModelFileError, match="incomplete"):
        resolve_model(str(c))
    with pytest.raises(ModelFileError, match="no such model"):
        resolve_model("no-such-model-name")
    d["thresholds"] = [0.5]
    c.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="thresholds"):
        read_card(c)


def test_tagging_model_normalises_inside(tmp_path):
    m = _model()
    t = TaggingModel(m, [0.5] * 3, [0.5] * 3).eval()
    img = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(t(img), m(img.float() / 127.5 - 1), atol=1e-5)


def test_stage_split_composes_to_the_whole_model():
    m = _model()
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        full = m(x)
        for k in (0, 3, 8, 9, -1):
            prefix, rest = m.split(k)
            assert torch.allclose(rest(prefix(x)), full, atol=1e-5), k
