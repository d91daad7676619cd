"""Small building blocks shared by the classification heads.

Everything here is traceable by ``torch.onnx.export`` (dynamo=False): shapes are
taken from the input tensors inside ``forward`` and no Python control flow
depends on tensor values.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "PositionEmbeddingSine",
    "CosineLinear",
    "GroupWiseLinear",
    "GroupFC",
    "GraphConvolution",
    "normalize_adjacency",
    "TransformerEncoderLayer",
    "TransformerDecoderLayer",
    "MLDecoderLayer",
]


class PositionEmbeddingSine(nn.Module):
    """DETR 2-D sine position encoding, computed for the input's actual H x W.

    Same formula as DETR / Query2Label (``normalize=True``, ``scale=2*pi``,
    ``temperature=1e4``, ``eps=1e-6``): the row / column index (1-based cumsum of
    ones) is normalised by the last index to ``(0, 2*pi]``, then the first
    ``num_pos_feats`` channels encode y and the next ``num_pos_feats`` encode x
    with interleaved sin / cos.  Unlike Query2Label, which precomputes a buffer
    for one fixed input size, the encoding is built from ``x`` in ``forward``
    (cumsum over ``ones_like``), so any H, W works and ONNX export keeps it dynamic.
    """

    def __init__(self, num_pos_feats: int = 64, temperature: float = 10000.0,
                 normalize: bool = True, scale: float = 2 * math.pi, eps: float = 1e-6):
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError(f"num_pos_feats must be even, got {num_pos_feats}")
        self.num_pos_feats, self.temperature = num_pos_feats, temperature
        self.normalize, self.scale, self.eps = normalize, scale, eps

    def forward(self, x: Tensor) -> Tensor:
        """x: [B, C, H, W] (only its shape is used) -> pos: [B, 2*num_pos_feats, H, W]."""
        not_mask = torch.ones_like(x[:, 0], dtype=torch.float32)  # [B, H, W]
        y_embed = not_mask.cumsum(1)
        x_embed = not_mask.cumsum(2)
        if self.normalize:
            y_embed = y_embed / (y_embed[:, -1:, :] + self.eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + self.eps) * self.scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = x_embed[..., None] / dim_t
        pos_y = y_embed[..., None] / dim_t
        pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
        pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
        return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2).to(x.dtype)


class CosineLinear(nn.Module):
    """Cosine classifier (DOR ``AngleSimpleLinear``): cos(x, w_k) clamped to [-1, 1], no bias.

    ``weight`` is [out, in] like ``nn.Linear``; each class row is initialised
    N(0, 1) and renormalised to unit length (DOR's ``normal_().renorm_()``).
    The scale is applied by the head, not here.
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.normal_()
            self.weight.copy_(F.normalize(self.weight, dim=1))

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1)).clamp(-1, 1)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class GroupWiseLinear(nn.Module):
    """Query2Label's per-class classifier: logit_k = <W_k, h_k> + b_k for h: [B, K, d].

    Init uniform(+-1/sqrt(d)) for W and b, as in Q2L.  With ``cosine=True`` it is
    the per-class cosine classifier cos(W_k, h_k) in [-1, 1] (no bias).
    """

    def __init__(self, num_class: int, hidden_dim: int, bias: bool = True, cosine: bool = False):
        super().__init__()
        self.cosine = cosine
        self.W = nn.Parameter(torch.empty(1, num_class, hidden_dim))
        self.b = nn.Parameter(torch.empty(1, num_class)) if bias and not cosine else None
        stdv = 1.0 / math.sqrt(hidden_dim)
        nn.init.uniform_(self.W, -stdv, stdv)
        if self.b is not None:
            nn.init.uniform_(self.b, -stdv, stdv)

    def forward(self, x: Tensor) -> Tensor:
        if self.cosine:
            return (F.normalize(self.W, dim=-1) * F.normalize(x, dim=-1)).sum(-1).clamp(-1, 1)
        x = (self.W * x).sum(-1)
        return x + self.b if self.b is not None else x


class GroupFC(nn.Module):
    """ML-Decoder group fully-connected layer, vectorised with einsum.

    Group g's decoder output h_g (d) multiplies its own d x F matrix
    (F = ceil(K / G)), giving G*F outputs of which the first K are kept, plus a
    per-class bias.  Xavier-normal weight, zero bias (ML-Decoder).  With
    ``cosine=True`` (DOR ``GroupASL``) h_g and every weight column are
    L2-normalised, so the outputs are cosines in [-1, 1]; the bias is then not
    used (see ``MLDecoderHead``).
    """

    def __init__(self, num_groups: int, dim: int, num_classes: int, cosine: bool = False):
        super().__init__()
        self.num_classes, self.cosine = num_classes, cosine
        self.duplicate_factor = int(num_classes / num_groups + 0.999)  # ML-Decoder's ceil
        self.weight = nn.Parameter(torch.empty(num_groups, dim, self.duplicate_factor))
        self.bias = None if cosine else nn.Parameter(torch.zeros(num_classes))
        nn.init.xavier_normal_(self.weight)

    def forward(self, h: Tensor) -> Tensor:  # h: [B, G, d]
        w = self.weight
        if self.cosine:
            h, w = F.normalize(h, dim=-1), F.normalize(w, dim=1)
        out = torch.einsum("bgd,gdf->bgf", h, w).flatten(1)[:, : self.num_classes]
        if self.cosine:
            return out.clamp(-1, 1)
        return out + self.bias


class GraphConvolution(nn.Module):
    """Kipf graph convolution as in ML-GCN / DOR: ``adj @ (x @ W)``, no bias.

    W: [in, out], init uniform(+-1/sqrt(out)) (ML-GCN / DOR ``reset_parameters``).
    """

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        stdv = 1.0 / math.sqrt(out_features)
        nn.init.uniform_(self.weight, -stdv, stdv)

    def forward(self, x: Tensor | None, adj: Tensor) -> Tensor:
        """``x=None`` means one-hot identity node features, so ``x @ W == W``."""
        support = self.weight if x is None else x @ self.weight
        return adj @ support


def normalize_adjacency(A: Tensor) -> Tensor:
    """ML-GCN / DOR ``gen_adj``: ``(A D)^T D`` with ``D = diag(rowsum(A)^-1/2)``.

    Elementwise ``A_hat[i, j] = d_i * A[j, i] * d_j``, i.e. D^-1/2 A^T D^-1/2.
    Equal to the textbook D^-1/2 A D^-1/2 only for symmetric A; the transpose of
    the reference code is kept on purpose (the re-weighted co-occurrence matrix
    is not symmetric).  Row sums are >= 1 because of the added identity.
    """
    d = A.sum(1).pow(-0.5)
    return d[:, None] * A.t() * d[None, :]


def _ffn(d_model: int, dim_feedforward: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.ReLU(), nn.Dropout(dropout),
                         nn.Linear(dim_feedforward, d_model))


class TransformerEncoderLayer(nn.Module):
    """DETR / Q2L post-norm encoder layer; the position encoding is added to Q and K only."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.ffn = _ffn(d_model, dim_feedforward, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src: Tensor, pos: Tensor) -> Tensor:
        q = k = src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, need_weights=False)[0]))
        return self.norm2(src + self.dropout2(self.ffn(src)))


class TransformerDecoderLayer(nn.Module):
    """DETR / Q2L post-norm decoder layer.

    ``self_attn=False`` (Q2L default: ``rm_self_attn_dec`` and
    ``rm_first_self_attn``) drops self-attention, leaving cross-attention + FFN.
    ``query_pos`` is added to the cross-attention query and ``pos`` to its keys.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int, dropout: float = 0.1,
                 self_attn: bool = False):
        super().__init__()
        if self_attn:
            self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
            self.norm1, self.dropout1 = nn.LayerNorm(d_model), nn.Dropout(dropout)
        else:
            self.self_attn = None
        self.cross_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.ffn = _ffn(d_model, dim_feedforward, dropout)
        self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.dropout2, self.dropout3 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, query_pos: Tensor) -> Tensor:
        if self.self_attn is not None:  # structural, fixed at construction
            q = k = tgt + query_pos
            tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt, need_weights=False)[0]))
        attn = self.cross_attn(tgt + query_pos, memory + pos, memory, need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        return self.norm3(tgt + self.dropout3(self.ffn(tgt)))


class MLDecoderLayer(nn.Module):
    """ML-Decoder's ``TransformerDecoderLayerOptimal`` (post-norm, no self-attention).

    Kept verbatim, including its first step ``tgt = norm1(tgt + dropout1(tgt))``:
    in eval mode that is just ``norm1(2 * tgt)``; in training it multiplies the
    (frozen) queries by random per-element noise before the LayerNorm.
    """

    def __init__(self, d_model: int = 768, nhead: int = 8, dim_feedforward: int = 2048,
                 dropout: float = 0.1):
        super().__init__()
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True)
        self.ffn = _ffn(d_model, dim_feedforward, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))

    def forward(self, tgt: Tensor, memory: Tensor) -> Tensor:
        tgt = self.norm1(tgt + self.dropout1(tgt))
        # value is passed as a distinct view: when ``key is value`` nn.MultiheadAttention takes a
        # packed-KV path whose TorchScript ONNX export bakes the token count in (torch 2.14).
        attn = self.multihead_attn(tgt, memory, memory.view_as(memory), need_weights=False)[0]
        tgt = self.norm2(tgt + self.dropout2(attn))
        return self.norm3(tgt + self.dropout3(self.ffn(tgt)))
