import inspect
import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from imgtag.models.heads import (
    HEADS,
    CSRABlock,
    CSRAHead,
    GCNHead,
    MLDecoderHead,
    Query2LabelHead,
    build_head,
    cooccurrence_probability,
    gcn_adjacency,
)
from imgtag.models.layers import GroupFC, PositionEmbeddingSine

C, K = 16, 7
# tiny hyper-parameters so the tests stay fast on CPU
SMALL = {
    "gap": {"dropout": 0.1},
    "csra": {"num_heads": 4, "lam": 0.5},
    "q2l": {"hidden_dim": 32, "nheads": 4, "dim_feedforward": 48},
    "gcn": {"adjacency": torch.rand(K, K)},
    "mldecoder": {"decoder_dim": 32, "nheads": 4, "dim_feedforward": 48, "num_groups": 3},
}
SIZES = [(2, 5, 7), (1, 1, 1), (3, 4, 4), (2, 7, 3)]
ALL = [(n, c) for n in HEADS for c in (False, True)]


def make(name, cosine=False, scale=1.0, **kw):
    torch.manual_seed(0)
    return build_head(name, C, K, cosine=cosine, scale=scale, **{**SMALL[name], **kw})


@pytest.mark.parametrize("name,cosine", ALL)
def test_shapes_and_eval_determinism(name, cosine):
    head = make(name, cosine).eval()
    for b, h, w in SIZES:
        x = torch.randn(b, C, h, w)
        out = head(x)
        assert out.shape == (b, K) and out.dtype == torch.float32
        assert torch.isfinite(out).all()
        assert torch.equal(out, head(x))


@pytest.mark.parametrize("name,cosine", ALL)
def test_gradients_reach_all_trainable_params(name, cosine):
    head = make(name, cosine, scale=4.0).train()
    torch.manual_seed(1)
    out = head(torch.randn(3, C, 4, 5))
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in head.named_parameters():
        assert p.requires_grad, pname
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", list(HEADS))
def test_cosine_bounded_by_scale(name):
    scale = 6.5
    head = make(name, True, scale=scale).eval()
    out = head(10 * torch.randn(4, C, 3, 5))
    assert out.abs().max() <= scale * (1 + 1e-5)
    assert out.abs().max() > 0.05 * scale
    assert float(head.scale) == scale and "scale" in head.state_dict()
    assert not any(n == "scale" for n, _ in head.named_parameters())


def test_registry_and_defaults():
    assert set(HEADS) == {"gap", "csra", "q2l", "gcn", "mldecoder"}
    with pytest.raises(ValueError, match="gap, csra, q2l, gcn, mldecoder"):
        build_head("qtl", C, K)
    assert isinstance(build_head("ML-Decoder", C, K, **SMALL["mldecoder"]), MLDecoderHead)
    for cls in HEADS.values():
        params = inspect.signature(cls.__init__).parameters
        kwonly = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
        assert kwonly.pop("cosine") is False and kwonly.pop("scale") == 1.0
        for n in ("adjacency", "node_features"):  # tensors: not recordable hyper-parameters
            kwonly.pop(n, None)
        assert kwonly == cls.defaults, cls.__name__
    d = Query2LabelHead.defaults
    assert (d["hidden_dim"], d["nheads"], d["dim_feedforward"], d["enc_layers"], d["dec_layers"]) == (512, 8, 2048, 1, 2)
    assert CSRAHead.defaults == {"num_heads": 1, "lam": 0.1}
    assert MLDecoderHead.defaults["num_groups"] == 100 and MLDecoderHead.defaults["decoder_dim"] == 768


# ------------------------------------------------------------------ CSRA
def _scores(x, conv_weight, cosine=False):
    w = conv_weight.flatten(1)  # [K, C]
    w = w / w.norm(dim=1, keepdim=True)
    if cosine:
        x = x / x.norm(dim=1, keepdim=True)
    return torch.einsum("bchw,kc->bkhw", x, w).flatten(2)


def test_csra_single_head_closed_forms():
    torch.manual_seed(0)
    x = torch.randn(2, C, 3, 5)
    head = CSRAHead(C, K, lam=0.3).eval()  # one head, T = 1
    s = _scores(x, head.heads[0].head.weight)
    soft = (s * torch.softmax(s, dim=2)).sum(2)
    torch.testing.assert_close(head(x), s.mean(2) + 0.3 * soft)
    for T in (math.inf, 99):  # T = infinity (or the official sentinel 99): base + lam * max
        inf_block = CSRABlock(C, K, T, 0.3)
        inf_block.load_state_dict(head.heads[0].state_dict())
        torch.testing.assert_close(inf_block(x), s.mean(2) + 0.3 * s.amax(2))


def test_csra_multi_head_is_sum_of_single_heads():
    torch.manual_seed(0)
    x = torch.randn(2, C, 4, 3)
    head = CSRAHead(C, K, num_heads=4, lam=0.5).eval()
    expected = 0
    for block, T in zip(head.heads, [1, 2, 4, math.inf]):
        s = _scores(x, block.head.weight)
        att = s.amax(2) if math.isinf(T) else (s * torch.softmax(T * s, dim=2)).sum(2)
        expected = expected + s.mean(2) + 0.5 * att
    torch.testing.assert_close(head(x), expected)
    with pytest.raises(ValueError):
        CSRAHead(C, K, num_heads=3)


def test_csra_cosine_formula():
    torch.manual_seed(0)
    x = torch.randn(2, C, 3, 3)
    head = CSRAHead(C, K, num_heads=2, lam=0.2, cosine=True, scale=10.0).eval()
    expected = 0
    for block, T in zip(head.heads, [1, math.inf]):
        s = _scores(x, block.head.weight, cosine=True)
        att = s.amax(2) if math.isinf(T) else (s * torch.softmax(T * s, dim=2)).sum(2)
        expected = expected + s.mean(2) + 0.2 * att
    torch.testing.assert_close(head(x), 10.0 * expected / (2 * 1.2))


# ------------------------------------------------------------------- Q2L
def test_position_encoding_per_location_and_new_sizes():
    pe = PositionEmbeddingSine(16)
    for h, w in [(3, 4), (5, 2), (1, 1)]:
        pos = pe(torch.zeros(2, 3, h, w))
        assert pos.shape == (2, 32, h, w)
        assert pos.abs().max() <= 1
        assert torch.equal(pos[0], pos[1])
        flat = pos[0].flatten(1).t()  # [HW, 32]
        if h * w > 1:
            d = torch.cdist(flat, flat) + torch.eye(h * w)
            assert d.min() > 1e-3  # every location gets its own code
    # normalised coordinates: the last row / column is at 2*pi whatever the size
    pos = pe(torch.zeros(1, 1, 3, 6))
    expected = [math.sin(2 * math.pi / 3), math.sin(2 * math.pi), math.sin(2 * math.pi / 6), math.sin(2 * math.pi)]
    got = [pos[0, 0, 0, 0], pos[0, 0, -1, 0], pos[0, 16, 0, 0], pos[0, 16, 0, -1]]  # y: ch 0, x: ch 16
    torch.testing.assert_close(torch.stack(got), torch.tensor(expected), atol=1e-4, rtol=0)
    # y varies along rows only, x along columns only
    assert torch.equal(pos[0, :16, :, 0], pos[0, :16, :, 5]) and torch.equal(pos[0, 16:, 0], pos[0, 16:, 2])


def test_q2l_structure():
    head = make("q2l")
    assert all(layer.self_attn is None for layer in head.decoder)
    assert len(head.encoder) == 1 and len(head.decoder) == 2
    kept = Query2LabelHead(C, K, hidden_dim=32, nheads=4, dim_feedforward=48, keep_self_attn=True, enc_layers=0)
    assert all(layer.self_attn is not None for layer in kept.decoder) and len(kept.encoder) == 0
    assert kept.eval()(torch.randn(1, C, 2, 3)).shape == (1, K)
    with pytest.raises(ValueError):
        Query2LabelHead(C, K, hidden_dim=30, nheads=4)


# ------------------------------------------------------------------- GCN
Y = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 1, 1]], dtype=torch.float32)


def test_cooccurrence_probability_by_hand():
    P = cooccurrence_probability(Y)
    expected = torch.tensor([[1, 2 / 3, 1 / 3], [2 / 3, 1, 2 / 3], [1 / 2, 1, 1]])
    torch.testing.assert_close(P, expected)
    # class 0 unknown for image 3: P(0 | 1) counts only images where 0 is known -> 2/2
    mask = torch.ones_like(Y, dtype=torch.bool)
    mask[3, 0] = False
    Pm = cooccurrence_probability(Y, mask)
    assert Pm[1, 0] == 1 and Pm[2, 0] == 1
    torch.testing.assert_close(Pm[0], expected[0])
    # a class that never occurs has an all-zero row
    assert cooccurrence_probability(torch.cat([Y, torch.zeros(4, 1)], 1))[3].abs().sum() == 0


def test_gcn_adjacency_by_hand():
    A = gcn_adjacency(cooccurrence_probability(Y), tau=0.4, rho=0.25)
    # binarised off-diagonal: [[0,1,0],[1,0,1],[1,1,0]], column sums (2, 2, 1)
    expected = torch.tensor([[1, 0.125, 0], [0.125, 1, 0.25], [0.125, 0.125, 1]])
    torch.testing.assert_close(A, expected, atol=1e-6, rtol=1e-5)
    assert torch.equal(gcn_adjacency(torch.zeros(3, 3)), torch.eye(3))


def test_gcn_state_dict_round_trip_and_cache():
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    P = torch.rand(K, K)
    head = GCNHead(C, K, adjacency=P, cosine=True, scale=5.0).eval()
    assert not torch.equal(head.adjacency, torch.eye(K))
    blob = safetensors_torch.save(head.state_dict())
    fresh = GCNHead(C, K, cosine=True).eval()  # loader: adjacency=None -> identity
    assert torch.equal(fresh.adjacency, torch.eye(K))
    fresh.load_state_dict(safetensors_torch.load(blob))
    assert torch.equal(fresh.adjacency, gcn_adjacency(P)) and float(fresh.scale) == 5.0
    x = torch.randn(2, C, 3, 4)
    torch.testing.assert_close(fresh(x), head(x))
    assert not any("cache" in k for k in head.state_dict())
    # export_mode caches the image-independent attention; load_state_dict drops the cache
    fresh.export_mode = True
    ref = fresh(x)
    assert fresh._attention_cache is not None
    torch.testing.assert_close(fresh(x), ref)
    other = GCNHead(C, K, adjacency=torch.rand(K, K), cosine=True, scale=5.0).eval()
    fresh.load_state_dict(other.state_dict())
    assert fresh._attention_cache is None
    torch.testing.assert_close(fresh(x), other(x))
    fresh.train()
    assert fresh._attention_cache is None


def test_gcn_node_features():
    torch.manual_seed(0)
    emb = torch.randn(K, 10)
    head = GCNHead(C, K, node_features=emb, hidden_dim_scale=2.0).eval()
    assert head.gc1.weight.shape == (10, C // 2) and torch.equal(head.node_features, emb)
    fresh = GCNHead(C, K, node_feature_dim=10, hidden_dim_scale=2.0).eval()
    fresh.load_state_dict(head.state_dict())
    x = torch.randn(1, C, 2, 2)
    torch.testing.assert_close(fresh(x), head(x))
    assert GCNHead(C, K).node_features is None  # one-hot identity: gc1 weight used directly
    with pytest.raises(ValueError):
        GCNHead(C, K, adjacency=torch.rand(K + 1, K + 1))


# ------------------------------------------------------------- ML-Decoder
def test_mldecoder_queries_frozen_and_saved():
    head = make("mldecoder").train()
    assert head.num_groups == 3
    assert "query_embed" in dict(head.named_buffers()) and "query_embed" in head.state_dict()
    assert all("query" not in n for n, _ in head.named_parameters())
    before = head.query_embed.clone()
    opt = torch.optim.AdamW(head.parameters(), lr=0.1)
    head(torch.randn(2, C, 3, 3)).sum().backward()
    opt.step()
    assert torch.equal(head.query_embed, before) and not head.query_embed.requires_grad
    assert make("mldecoder", num_groups=100).num_groups == K  # min(num_groups, K)


@pytest.mark.parametrize("cosine", [False, True])
def test_groupfc_matches_reference_loop(cosine):
    torch.manual_seed(0)
    fc = GroupFC(3, 8, 7, cosine=cosine)  # 7 classes, 3 groups -> duplicate factor 3, 2 padded outputs
    if not cosine:
        torch.nn.init.normal_(fc.bias)
    h = torch.randn(2, 3, 8)
    out = torch.zeros(2, 3, 3)
    for i in range(3):  # ML-Decoder's GroupFC / DOR's GroupASL loop
        h_i, w_i = h[:, i], fc.weight[i]
        if cosine:
            h_i, w_i = F.normalize(h_i, dim=1), F.normalize(w_i, dim=0)
        out[:, i] = h_i @ w_i
    ref = out.flatten(1)[:, :7]
    torch.testing.assert_close(fc(h), ref if cosine else ref + fc.bias)


# ------------------------------------------------------------------ ONNX
@pytest.mark.parametrize("name", list(HEADS))
def test_onnx_export_dynamic_sizes(name):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    head = make(name, cosine=(name in ("gcn", "mldecoder")), scale=3.0).eval()
    if name == "gcn":
        head.export_mode = True
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(head, (torch.randn(2, C, 5, 7),), f, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b"}})
    sess = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    for b, h, w in [(3, 1, 1), (1, 9, 4)]:
        x = torch.randn(b, C, h, w)
        out = torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])
        torch.testing.assert_close(out, head(x), atol=1e-5, rtol=1e-4)
