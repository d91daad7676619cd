"""Tests for imgtag.models.mltr: MlTr backbone family and the MlTr neck."""
import io
import math

import pytest
import timm
import torch
import torch.nn.functional as F

from imgtag.models.mltr import MLTR_CONFIGS, IdentityNeck, MlTr, MlTrNeck, build_neck

# tiny config: small window so that small inputs still give several windows at every stage
TINY = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), window_size=3, drop_path_rate=0.0)


def tiny(**kw) -> MlTr:
    return MlTr(**{**TINY, **kw})


@pytest.mark.parametrize("size", [(224, 224), (256, 256), (97, 97), (300, 200), (61, 130)])
def test_backbone_shapes(size):
    m = MlTr(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 2, 4), num_classes=5).eval()  # window 7
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        f = m.forward_features(x)
        assert f.shape == (2, m.num_features, math.ceil(size[0] / 32), math.ceil(size[1] / 32))
        assert m.forward_head(f, pre_logits=True).shape == (2, m.num_features)
        assert m(x).shape == (2, 5)
    assert m.num_features == 128


def test_head_api():
    m = tiny(num_classes=3).eval()
    x = torch.randn(1, 3, 64, 64)
    m.reset_classifier(7)
    assert m(x).shape == (1, 7)
    m.reset_classifier(0)
    assert m(x).shape == (1, m.num_features)
    m.reset_classifier(4, global_pool="")
    assert m.forward_head(m.forward_features(x), pre_logits=True).ndim == 4


def _assert_all_grads(module):
    missing = [n for n, p in module.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached: {missing}"


def test_backbone_gradient_flow():
    m = tiny(num_classes=4).train()
    m(torch.randn(2, 3, 100, 90)).sum().backward()  # maps 25x23 ... 4x3: >1 window of 3 everywhere
    _assert_all_grads(m)


def test_neck_gradient_flow():
    n = MlTrNeck(24, dim=16, depth=2, num_heads=2).train()
    n(torch.randn(2, 24, 11, 11)).pow(2).sum().backward()
    _assert_all_grads(n)


@pytest.mark.parametrize("name,target", [("mltr_s", 33e6), ("mltr_m", 62e6), ("mltr_l", 108e6)])
def test_param_counts(name, target):
    with torch.device("meta"):  # no memory, no init cost
        m = MlTr(num_classes=0, **MLTR_CONFIGS[name])
    n = sum(p.numel() for p in m.parameters())
    assert abs(n - target) / target < 0.10, f"{name}: {n / 1e6:.1f} M"


def test_determinism():
    x = torch.randn(1, 3, 80, 70)
    torch.manual_seed(0)
    a = tiny(num_classes=3).eval()
    torch.manual_seed(0)
    b = tiny(num_classes=3).eval()
    with torch.no_grad():
        ya, ya2, yb = a(x), a(x), b(x)
    assert torch.equal(ya, ya2)
    assert torch.equal(ya, yb)


@pytest.mark.parametrize("name,size", [("mltr_s", 224), ("mltr_m", 384), ("mltr_l", 384)])
def test_timm_create_model(name, size):
    assert name in timm.list_models("mltr_*")
    m = timm.create_model(name, pretrained=False, num_classes=0)
    assert isinstance(m, MlTr)
    assert m.pretrained_cfg["input_size"] == (3, size, size)
    assert m.default_cfg["mean"] == timm.data.IMAGENET_DEFAULT_MEAN
    assert m.num_features == MLTR_CONFIGS[name]["embed_dim"] * 8
    if name == "mltr_s":
        with torch.no_grad():
            assert m.eval().forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 768, 2, 2)


@pytest.mark.parametrize("hw", [(11, 11), (12, 7), (12, 12), (3, 5)])
def test_neck_shapes(hw):
    n = MlTrNeck(1280).eval()
    assert n.out_channels == 384
    with torch.no_grad():
        assert n(torch.randn(2, 1280, *hw)).shape == (2, 384, *hw)


def test_neck_starts_near_identity():
    """LayerScale 1e-5: at init the neck is LN(conv1x1(x))."""
    n = MlTrNeck(32, dim=16, depth=2, num_heads=2).eval()
    x = torch.randn(2, 32, 11, 11)
    with torch.no_grad():
        ref = F.layer_norm(n.proj(x).permute(0, 2, 3, 1), (16,), n.norm.weight, n.norm.bias).permute(0, 3, 1, 2)
        assert torch.allclose(n(x), ref, atol=1e-3)


def test_build_neck():
    neck = build_neck("mltr", 64, dim=32, depth=1, num_heads=4)
    assert isinstance(neck, MlTrNeck) and neck.out_channels == 32
    ident = build_neck("none", 64, dim=32)
    assert isinstance(ident, IdentityNeck) and ident.out_channels == 64
    x = torch.randn(1, 64, 5, 5)
    assert torch.equal(ident(x), x)
    with pytest.raises(ValueError):
        build_neck("nope", 64)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_neck_onnx_export():
    pytest.importorskip("onnx")
    n = MlTrNeck(64, dim=32, depth=1, num_heads=2, init_values=0.5).eval()
    f = io.BytesIO()
    torch.onnx.export(n, torch.randn(1, 64, 11, 11), f, dynamo=False, opset_version=17,
                      input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}})
    try:
        import onnxruntime as ort
    except ImportError:
        return
    sess = ort.InferenceSession(f.getvalue())
    x = torch.randn(2, 64, 12, 7)  # other batch and size than traced: padding must be dynamic
    y = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(y), n(x), atol=1e-4)
