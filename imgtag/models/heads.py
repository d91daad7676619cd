"""Multi-label classification heads: feature map [B, C, H, W] -> logits [B, K].

Common contract (every head)
----------------------------
``Head(in_channels, num_classes, *, cosine=False, scale=1.0, **head_specific)``;
``forward(x)`` returns logits with score = sigmoid(logit), for any H, W (1x1 and
non-square included) and is traceable by ``torch.onnx.export(dynamo=False)``.

* ``cosine=True`` (for the AM-Binary loss): the final classifier is a cosine
  classifier (L2-normalised features and weights, cos clamped to [-1, 1]) and the
  head returns ``scale * cos``, so ``|logit| <= scale``.  ``scale`` is a fixed,
  non-learned 0-dim buffer (saved with the weights); it is ignored when
  ``cosine=False``.  Use ``losses.default_scale(K)`` and pass the same value to
  ``AMBinaryLoss(s=...)``.
* ``defaults``: class attribute with the head-specific hyper-parameters (the
  keyword arguments besides ``cosine`` / ``scale``) and their default values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import (
    CosineLinear,
    GraphConvolution,
    GroupFC,
    GroupWiseLinear,
    MLDecoderLayer,
    PositionEmbeddingSine,
    TransformerDecoderLayer,
    TransformerEncoderLayer,
    normalize_adjacency,
)

__all__ = [
    "GAPHead", "PooledHead", "StackHead", "CSRAHead", "CSRABlock", "Query2LabelHead", "GCNHead", "MLDecoderHead",
    "HEADS", "CARD_HEADS", "build_head", "cooccurrence_probability", "gcn_adjacency",
]


class _Head(nn.Module):
    defaults: dict = {}

    def __init__(self, in_channels: int, num_classes: int, cosine: bool, scale: float):
        super().__init__()
        if in_channels < 1 or num_classes < 1:
            raise ValueError(f"in_channels and num_classes must be >= 1, got {in_channels}, {num_classes}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0, got {scale}")
        self.in_channels, self.num_classes, self.cosine = int(in_channels), int(num_classes), bool(cosine)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def _classifier(self, dim: int) -> nn.Module:
        return CosineLinear(dim, self.num_classes) if self.cosine else nn.Linear(dim, self.num_classes)

    def _out(self, logits: Tensor) -> Tensor:
        return logits * self.scale if self.cosine else logits

    def extra_repr(self) -> str:
        s = f"in_channels={self.in_channels}, num_classes={self.num_classes}, cosine={self.cosine}"
        return s + (f", scale={float(self.scale):g}" if self.cosine else "")


# --------------------------------------------------------------------------- GAP
class GAPHead(_Head):
    """Global average pooling -> dropout(p) -> Linear (or cosine classifier).

    ``dropout`` (default 0.0) is applied to the pooled feature vector.
    """

    defaults = {"dropout": 0.0}

    def __init__(self, in_channels: int, num_classes: int, *, cosine: bool = False, scale: float = 1.0,
                 dropout: float = 0.0):
        super().__init__(in_channels, num_classes, cosine, scale)
        self.dropout = nn.Dropout(dropout)
        self.fc = self._classifier(in_channels)

    def forward(self, x: Tensor) -> Tensor:
        return self._out(self.fc(self.dropout(x.mean((2, 3)))))


# -------------------------------------------------------------------------- CSRA
class CSRABlock(nn.Module):
    """One CSRA head (official ``pipeline/csra.py``).

    s_j = <x_j, m> / ||m|| for every location j (classifier weight normalised,
    feature not); base = mean_j s_j; att = sum_j softmax_j(T * s_j) * s_j, or
    max_j s_j when T is infinite (``float('inf')`` or the official sentinel 99);
    returns base + lam * att.  ``cosine=True`` also L2-normalises the feature at
    every location, so s_j is a cosine and the result lies in [-(1+lam), 1+lam].
    """

    def __init__(self, in_channels: int, num_classes: int, T: float, lam: float, cosine: bool = False):
        super().__init__()
        self.T, self.lam, self.cosine = float(T), float(lam), cosine
        self.use_max = math.isinf(self.T) or self.T == 99
        self.head = nn.Conv2d(in_channels, num_classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.cosine:
            x = F.normalize(x, dim=1)
        w = self.head.weight  # [K, C, 1, 1]
        score = self.head(x) / torch.norm(w, dim=1, keepdim=True).transpose(0, 1)
        if self.cosine:
            score = score.clamp(-1, 1)
        score = score.flatten(2)  # [B, K, HW]
        base = score.mean(2)
        if self.use_max:
            att = score.amax(2)
        else:
            att = (score * torch.softmax(score * self.T, dim=2)).sum(2)
        return base + self.lam * att


class CSRAHead(_Head):
    """CSRA, class-specific residual attention (Zhu & Wu, ICCV 2021), official MHA.

    ``num_heads`` CSRA blocks, each with its own bias-free 1x1 conv and the
    temperature from the official table {1: [1], 2: [1, inf], 4: [1, 2, 4, inf],
    6: [1, 2, 3, 4, 5, inf], 8: [1..7, inf]}; the block logits are summed.
    Defaults ``num_heads=1, lam=0.1`` are the official ones (VOC07); the
    README uses 4 heads / lam 0.5 (COCO R101) and 6 / 0.4 (COCO CutMix-R101).
    The 1x1 conv keeps PyTorch's default init, as the official code does.

    ``cosine=True`` (our extension, no reference): the feature at every location
    is L2-normalised too, so each block gives mean-cos + lam * att-cos in
    [-(1+lam), 1+lam].  The summed block outputs are divided by
    ``num_heads * (1 + lam)`` before multiplying by ``scale``, i.e.
    ``logit = scale * sum_h(mean cos_h + lam * att cos_h) / (num_heads * (1 + lam))``,
    a convex combination of cosines.  This keeps ``|logit| <= scale`` so the
    AM-Binary scale s and margin m mean the same as for the other heads (without
    it the effective scale would grow with num_heads and lam).
    """

    defaults = {"num_heads": 1, "lam": 0.1}
    temp_settings = {1: [1], 2: [1, math.inf], 4: [1, 2, 4, math.inf], 6: [1, 2, 3, 4, 5, math.inf],
                     8: [1, 2, 3, 4, 5, 6, 7, math.inf]}

    def __init__(self, in_channels: int, num_classes: int, *, cosine: bool = False, scale: float = 1.0,
                 num_heads: int = 1, lam: float = 0.1):
        super().__init__(in_channels, num_classes, cosine, scale)
        if num_heads not in self.temp_settings:
            raise ValueError(f"CSRA num_heads must be one of {sorted(self.temp_settings)}, got {num_heads}")
        self.num_heads, self.lam = num_heads, float(lam)
        self.heads = nn.ModuleList(
            CSRABlock(in_channels, num_classes, T, lam, cosine) for T in self.temp_settings[num_heads])

    def forward(self, x: Tensor) -> Tensor:
        logit = sum(head(x) for head in self.heads)
        if self.cosine:
            logit = logit / (self.num_heads * (1.0 + self.lam))
        return self._out(logit)


# --------------------------------------------------------------------------- Q2L
class Query2LabelHead(_Head):
    """Query2Label head (Liu et al. 2021; official ``query2label.py`` / ``transformer.py``).

    1x1 ``input_proj`` conv (in_channels -> hidden_dim; always kept, Q2L's
    ``--keep_input_proj``, because backbone widths such as EfficientNet-Lite2's
    1280 do not match hidden_dim) -> DETR 2-D sine position encoding of the
    actual H x W (normalize, 2*pi, temperature 1e4; Q2L precomputes it for one
    fixed size) -> ``enc_layers`` post-norm encoder layers (pos added to Q, K)
    -> ``dec_layers`` post-norm decoder layers with self-attention removed
    unless ``keep_self_attn`` (Q2L default: cross-attention + FFN only),
    ``tgt = 0`` and the label queries (``nn.Embedding(K, hidden_dim)``, N(0, 1)
    init) added as ``query_pos`` in every cross-attention -> final decoder
    LayerNorm -> ``GroupWiseLinear`` (per-class W_k, b_k, uniform(+-1/sqrt(d))).
    Dropout 0.1, ReLU FFN, xavier-uniform init of every transformer weight with
    dim > 1 (not the queries, input_proj or classifier), as in Q2L/DETR.

    ``cosine=True``: the classifier is a per-class cosine classifier
    cos(W_k, h_k) (no bias).  DOR's Q2L port instead uses one shared
    ``AngleSimpleLinear``; the per-class form keeps the Q2L structure.

    Defaults differ from the paper (hidden 2048, FF 8192, 4 heads): at that size
    the transformer is ~50 M parameters per layer (~150 M for 1 enc + 2 dec),
    far larger than the CPU-friendly backbones used here (EfficientNet-Lite:
    5-6 M).  hidden_dim=512, dim_feedforward=2048 (the usual 4x), nheads=8
    (head dim 64) gives ~3 M per layer; enc_layers=1 and dec_layers=2 are Q2L's.
    """

    defaults = {"hidden_dim": 512, "nheads": 8, "dim_feedforward": 2048, "enc_layers": 1,
                "dec_layers": 2, "dropout": 0.1, "keep_self_attn": False}

    def __init__(self, in_channels: int, num_classes: int, *, cosine: bool = False, scale: float = 1.0,
                 hidden_dim: int = 512, nheads: int = 8, dim_feedforward: int = 2048, enc_layers: int = 1,
                 dec_layers: int = 2, dropout: float = 0.1, keep_self_attn: bool = False):
        super().__init__(in_channels, num_classes, cosine, scale)
        if hidden_dim % 4 or hidden_dim % nheads:
            raise ValueError(f"hidden_dim ({hidden_dim}) must be divisible by 4 and by nheads ({nheads})")
        if dec_layers < 1:
            raise ValueError("Query2Label needs dec_layers >= 1")
        self.input_proj = nn.Conv2d(in_channels, hidden_dim, 1)
        self.position_embedding = PositionEmbeddingSine(hidden_dim // 2)
        self.encoder = nn.ModuleList(TransformerEncoderLayer(hidden_dim, nheads, dim_feedforward, dropout)
                                     for _ in range(enc_layers))
        self.decoder = nn.ModuleList(
            TransformerDecoderLayer(hidden_dim, nheads, dim_feedforward, dropout, self_attn=keep_self_attn)
            for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.query_embed = nn.Embedding(num_classes, hidden_dim)
        self.fc = GroupWiseLinear(num_classes, hidden_dim, bias=True, cosine=cosine)

    def forward(self, x: Tensor) -> Tensor:
        src = self.input_proj(x)
        pos = self.position_embedding(src).flatten(2).transpose(1, 2)  # [B, HW, d]
        src = src.flatten(2).transpose(1, 2)
        for layer in self.encoder:
            src = layer(src, pos)
        query_pos = self.query_embed.weight.unsqueeze(0).expand(src.shape[0], -1, -1)
        tgt = torch.zeros_like(query_pos)
        for layer in self.decoder:
            tgt = layer(tgt, src, pos, query_pos)
        return self._out(self.fc(self.decoder_norm(tgt)))


# --------------------------------------------------------------------------- GCN
def cooccurrence_probability(targets: Tensor, mask: Tensor | None = None) -> Tensor:
    """Conditional label probabilities P[i, j] = P(j | i) from IMAGE counts.

    P[i, j] = #images with both i and j / #images with i (targets > 0.5 is
    positive).  With a ``mask`` (False = label unknown) only images where j's
    label is known enter row i's count for column j, so missing labels are not
    counted as negatives.  Rows of classes that never occur are 0; the diagonal
    is P(i | i) = 1 for classes that occur (``gcn_adjacency`` ignores it).

    DOR divided by label *instance* counts (its JSON repeats a label per
    object), which biases P(j | i) low for classes with many objects per image
    (person, car, chair); image counts give the actual conditional probability
    ML-GCN defines.
    """
    if targets.dim() != 2:
        raise ValueError(f"targets must be [N, K], got {tuple(targets.shape)}")
    pos = (targets > 0.5).to(torch.float64)
    known = torch.ones_like(pos) if mask is None else mask.to(torch.float64)
    pos = pos * known
    both = pos.t() @ pos  # [K, K]: images with i and j positive (and known)
    denom = pos.t() @ known  # [K, K]: images with i positive and j known
    P = torch.where(denom > 0, both / denom.clamp(min=1), torch.zeros_like(both))
    return P.to(torch.float32)


def gcn_adjacency(P: Tensor, tau: float = 0.4, rho: float = 0.25) -> Tensor:
    """ML-GCN / DOR re-weighted adjacency from a conditional-probability matrix.

    A = 1[P >= tau] (off-diagonal; the diagonal is zeroed first, as in ML-GCN's
    co-occurrence counts, so self-loops come only from the identity), then,
    if rho != 0, A = A * rho / (column_sum(A) + 1e-6) + I: every node keeps
    weight 1 on itself and spreads rho over its binarised neighbours.
    """
    P = P.detach().to(torch.float32)
    if P.dim() != 2 or P.shape[0] != P.shape[1]:
        raise ValueError(f"P must be square [K, K], got {tuple(P.shape)}")
    eye = torch.eye(P.shape[0], dtype=P.dtype, device=P.device)
    A = (P >= tau).to(P.dtype) * (1 - eye)
    if rho != 0:
        A = A * rho / (A.sum(0, keepdim=True) + 1e-6) + eye
    return A


class GCNHead(_Head):
    """Prokofiev & Sovrasov's GCN head (DOR ``torchreid/models/gcn.py``), not ML-GCN's.

    Node features -> GraphConvolution(E -> in_channels / hidden_dim_scale) ->
    LeakyReLU(0.2) -> GraphConvolution(-> in_channels) -> LeakyReLU(0.2) -> max
    over the K class nodes -> sigmoid = channel-attention vector a (C), which
    scales the feature map; then global average pooling -> Linear (or cosine
    classifier).  Because pooling is an average, pool(a * x) = a * pool(x) and
    the head computes the latter.  A_hat is ML-GCN's ``gen_adj`` of the stored A
    (``layers.normalize_adjacency``; it is D^-1/2 A^T D^-1/2).

    * ``adjacency``: K x K conditional-probability matrix P (see
      ``cooccurrence_probability``), turned into A by ``gcn_adjacency(P, tau,
      rho)`` (defaults 0.4 / 0.25 from ML-GCN / DOR).  ``None`` -> A = I (no
      relations); a head built that way and then given a state_dict gets the
      trained A, which is stored in the ``adjacency`` buffer.
    * ``node_features``: optional [K, E] tensor (e.g. GloVe vectors), stored as a
      fixed buffer.  Default: one-hot identity (DOR's ``one_hot`` option; we
      have no word vectors offline).  Then ``I @ W1 = W1``, so the first graph
      layer's weight is used directly - the rows of W1 are learned per-class
      node embeddings; DOR's random permutation of the identity is irrelevant
      for learned weights.  ``node_feature_dim`` creates a zero [K, E]
      placeholder buffer, for rebuilding a head trained with node_features
      before ``load_state_dict``.
    * The channel attention does not depend on the image.  Set
      ``head.export_mode = True`` (DOR's ``export_mode``) to compute it once in
      eval mode and reuse it; the cache is dropped on ``train()`` / ``eval()``
      and on ``load_state_dict``.  Do not enable it on a model whose weights
      change while in eval mode (e.g. an EMA copy).  ONNX export folds the
      branch into a constant either way.
    """

    defaults = {"hidden_dim_scale": 1.0, "tau": 0.4, "rho": 0.25, "node_feature_dim": None}

    def __init__(self, in_channels: int, num_classes: int, *, cosine: bool = False, scale: float = 1.0,
                 adjacency: Tensor | None = None, node_features: Tensor | None = None,
                 hidden_dim_scale: float = 1.0, tau: float = 0.4, rho: float = 0.25,
                 node_feature_dim: int | None = None):
        super().__init__(in_channels, num_classes, cosine, scale)
        K = num_classes
        if adjacency is None:
            A = torch.eye(K)
        else:
            adjacency = torch.as_tensor(adjacency)
            if tuple(adjacency.shape) != (K, K):
                raise ValueError(f"adjacency must be [{K}, {K}], got {tuple(adjacency.shape)}")
            A = gcn_adjacency(adjacency, tau, rho)
        self.register_buffer("adjacency", A)
        if node_features is not None:
            node_features = torch.as_tensor(node_features, dtype=torch.float32)
            if node_features.dim() != 2 or node_features.shape[0] != K:
                raise ValueError(f"node_features must be [{K}, E], got {tuple(node_features.shape)}")
            self.register_buffer("node_features", node_features.clone())
        elif node_feature_dim:
            self.register_buffer("node_features", torch.zeros(K, int(node_feature_dim)))
        else:
            self.node_features = None
        in_dim = K if self.node_features is None else self.node_features.shape[1]
        hidden = int(in_channels / hidden_dim_scale)
        self.gc1 = GraphConvolution(in_dim, hidden)
        self.gc2 = GraphConvolution(hidden, in_channels)
        self.act = nn.LeakyReLU(0.2)
        self.fc = self._classifier(in_channels)
        self.export_mode = False
        self.register_buffer("_attention_cache", None, persistent=False)

    def channel_attention(self) -> Tensor:
        """The image-independent channel-attention vector a in (0, 1)^C."""
        adj = normalize_adjacency(self.adjacency)
        h = self.act(self.gc1(self.node_features, adj))
        h = self.act(self.gc2(h, adj))
        return torch.sigmoid(h.amax(0))

    def train(self, mode: bool = True):
        self._attention_cache = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._attention_cache = None
        super()._load_from_state_dict(*args, **kwargs)

    def forward(self, x: Tensor) -> Tensor:
        if self.export_mode and not self.training:
            if self._attention_cache is None:
                with torch.no_grad():
                    self._attention_cache = self.channel_attention()
            att = self._attention_cache
        else:
            att = self.channel_attention()
        feat = x.mean((2, 3)) * att.to(x.dtype)
        return self._out(self.fc(feat))


# --------------------------------------------------------------------- ML-Decoder
class MLDecoderHead(_Head):
    """ML-Decoder (Ridnik et al. 2021; official ``ml_decoder.py``), DOR metric variant.

    Spatial tokens [B, HW, C] -> Linear(C -> decoder_dim) -> ReLU (LeakyReLU 0.2
    when ``cosine``, as DOR) -> one ML-Decoder layer (no self-attention, d 768,
    8 heads, FF 2048, dropout 0.1, post-norm; see ``layers.MLDecoderLayer``) with
    G = min(num_groups, K) frozen random N(0, 1) queries -> GroupFC (each group
    output h_g times its own d x ceil(K/G) matrix, first K outputs + bias;
    xavier-normal weight, zero bias), vectorised with einsum instead of the
    reference's per-group loop.

    The queries are a persistent buffer ``query_embed`` (not a parameter): never
    trained, never seen by an optimizer or weight decay, but saved in the
    state_dict so a reloaded model reproduces its outputs.

    ``cosine=True`` follows DOR's ``GroupASL``: h_g and each weight column are
    L2-normalised, so the outputs are cosines.  DOR then adds a learnable bias
    (init 0) before scaling; we drop it so the head returns exactly
    ``scale * cos`` like every other cosine head (AM-Binary's margin assumes
    logits in [-s, s]).
    """

    defaults = {"num_groups": 100, "decoder_dim": 768, "nheads": 8, "dim_feedforward": 2048, "dropout": 0.1}

    def __init__(self, in_channels: int, num_classes: int, *, cosine: bool = False, scale: float = 1.0,
                 num_groups: int = 100, decoder_dim: int = 768, nheads: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1):
        super().__init__(in_channels, num_classes, cosine, scale)
        if num_groups < 1:
            raise ValueError(f"num_groups must be >= 1, got {num_groups}")
        if decoder_dim % nheads:
            raise ValueError(f"decoder_dim ({decoder_dim}) must be divisible by nheads ({nheads})")
        self.num_groups = min(num_groups, num_classes)
        self.embed = nn.Linear(in_channels, decoder_dim)
        self.act = nn.LeakyReLU(0.2) if cosine else nn.ReLU()
        self.register_buffer("query_embed", torch.randn(self.num_groups, decoder_dim))
        self.decoder = MLDecoderLayer(decoder_dim, nheads, dim_feedforward, dropout)
        self.group_fc = GroupFC(self.num_groups, decoder_dim, num_classes, cosine=cosine)

    def forward(self, x: Tensor) -> Tensor:
        memory = self.act(self.embed(x.flatten(2).transpose(1, 2)))  # [B, HW, d]
        tgt = self.query_embed.to(memory.dtype).unsqueeze(0).expand(memory.shape[0], -1, -1)
        return self._out(self.group_fc(self.decoder(tgt, memory)))


# ------------------------------------------------------------------ pooled linear (imgtag learn)
class PooledHead(_Head):
    """[average, max] pooling -> Linear: the head ``imgtag learn`` trains on cached pooled features
    (see imgtag/engine/features.py), so the logits at tag time equal the ones it calibrated."""

    def __init__(self, in_channels: int, num_classes: int, *, cosine: bool = False, scale: float = 1.0):
        if cosine:
            raise ValueError("the pooled head is a plain linear layer (no cosine classifier)")
        super().__init__(in_channels, num_classes, False, scale)
        self.fc = nn.Linear(2 * in_channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1))


class StackHead(nn.Module):
    """Several heads over one feature map, logits concatenated in order (one backbone pass for all):
    ``heads`` = [{"head": name, "head_args": {...}, "num_classes": k, "cosine": bool, "scale": s}, ...]."""

    def __init__(self, in_channels: int, num_classes: int, *, heads: list[dict], cosine: bool = False,
                 scale: float = 1.0):
        super().__init__()
        if sum(int(h["num_classes"]) for h in heads) != num_classes:
            raise ValueError(f"stack head: {num_classes} classes != the sum over its heads")
        self.heads = nn.ModuleList(
            build_head(h["head"], in_channels, int(h["num_classes"]), cosine=bool(h.get("cosine", False)),
                       scale=float(h.get("scale", 1.0)), **h.get("head_args", {})) for h in heads)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([h(x) for h in self.heads], 1)


# ---------------------------------------------------------------------- registry
HEADS: dict[str, type] = {
    "gap": GAPHead,
    "csra": CSRAHead,
    "q2l": Query2LabelHead,
    "gcn": GCNHead,
    "mldecoder": MLDecoderHead,
}
# heads that model files use but `imgtag train` does not offer: built by name, not listed as training choices
CARD_HEADS: dict[str, type] = {"pooled": PooledHead, "stack": StackHead}


def build_head(name: str, in_channels: int, num_classes: int, **kwargs) -> nn.Module:
    """Build a head by registry name (case, '-' and '_' are ignored: 'ml-decoder' works)."""
    key = str(name).strip().lower().replace("-", "").replace("_", "")
    if key in CARD_HEADS:
        return CARD_HEADS[key](in_channels, num_classes, **kwargs)
    if key not in HEADS:
        raise ValueError(f"unknown head {name!r}; valid heads: {', '.join(HEADS)}")
    return HEADS[key](in_channels, num_classes, **kwargs)
