"""MlTr: Multi-label Classification with Transformer (Cheng et al. 2021, ICME 2022).

No MlTr code was ever released. The abstract names the three ingredients -- window
partitioning, in-window pixel attention, cross-window attention -- and the author pointed
to CAT (Lin, Cheng et al., linhezheng19/CAT, ``src/cat.py``) as the released relative.
This module follows CAT; the equivalence is an
inference, not a verified fact.

Block structure (``MlTrBlock``, one "depth unit" of CAT's ``CATLayer``)::

    pixel attention  (IPSA)  : LN -> MHSA among the P*P pixels of each window, with relative
                               position bias -> res; LN -> MLP -> res
    cross-window attn (CPSA) : LN -> per channel, attention among the windows, token = the P*P
                               values of that channel in a window, 1 head, no pos. bias -> res; LN -> MLP -> res
    pixel attention  (IPSA)  : as the first

Every attention sub-block carries its own MLP, as in CAT's ``CATBlock``. Layout inside the
stages is NHWC; ``forward_features`` returns an NCHW map.

Where the paper/CAT are silent or fixed-size, choices made here:

* Any input size. The image is zero-padded to a multiple of the 4x4 patch; each sub-block
  pads its (normalised) map to a multiple of the window P and crops back (as timm's Swin,
  padded pixels are not masked out of the attention); patch merging pads odd sizes by one.
  The output map is ceil(H/32) x ceil(W/32).
* No absolute position embedding (CAT's configs use a fixed-size one). Position comes from
  the in-window relative bias and the position-wise P*P token of CPSA only.
* The window is never shrunk to the map (CAT shrinks it to min(H, W) at build time, which
  needs a fixed size); a map smaller than P is padded to one window, where CPSA reduces to
  a per-channel linear map.
* Stochastic depth: one rate per depth unit, shared by its three sub-blocks (as CAT).
* ``crop_pct=1.0`` in the default cfg: multi-label pipelines resize the whole image.
* ``features_only=True`` (timm) returns the four stage outputs as NHWC, before the final norm.

Configs (head dim 32, window 7, MLP ratio 4). Parameter counts are for the backbone
(``num_classes=0``); the README sizes are 33 M / 62 M / 108 M:

========  =====  ============  ================  ==========  ======
model     embed  depths        heads             params      input
========  =====  ============  ================  ==========  ======
mltr_s     96    (2, 2, 2, 1)  (3, 6, 12, 24)     33.0 M     224
mltr_m    128    (1, 1, 3, 1)  (4, 8, 16, 32)     64.3 M     384
mltr_l    160    (2, 2, 3, 1)  (5, 10, 20, 40)   104.5 M     384
========  =====  ============  ================  ==========  ======

``MlTrNeck`` puts the same blocks on top of a CNN's last feature map; ``build_neck`` picks a
neck by name from ``NECKS``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, LayerScale, Mlp, trunc_normal_, use_fused_attn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

__all__ = ["MlTr", "MlTrBlock", "MlTrNeck", "IdentityNeck", "NECKS", "build_neck"]


# --------------------------------------------------------------------------- helpers

def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad an NHWC map at the bottom/right so H and W are multiples of ``multiple``."""
    H, W = x.shape[1], x.shape[2]
    pad_h = (multiple - H % multiple) % multiple
    pad_w = (multiple - W % multiple) % multiple
    return F.pad(x, (0, 0, 0, pad_w, 0, pad_h))


def window_partition(x: torch.Tensor, P: int) -> torch.Tensor:
    """(B, H, W, C) with H, W multiples of P -> (B, num_windows, P*P, C)."""
    B, H, W, C = x.shape
    x = x.view(B, H // P, P, W // P, P, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, (H // P) * (W // P), P * P, C)


def window_reverse(windows: torch.Tensor, P: int, H: int, W: int) -> torch.Tensor:
    """(B, num_windows, P*P, C) -> (B, H, W, C); inverse of ``window_partition``."""
    B, C = windows.shape[0], windows.shape[-1]
    x = windows.view(B, H // P, W // P, P, P, C).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(B, H, W, C)


def relative_position_index(P: int) -> torch.Tensor:
    """(P*P, P*P) index into a (2P-1)^2 bias table (Swin/CAT)."""
    coords = torch.stack(torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (P - 1)
    return rel[..., 0] * (2 * P - 1) + rel[..., 1]


# --------------------------------------------------------------------------- attention

class Attention(nn.Module):
    """Multi-head self-attention over (N_, L, D) tokens, with an optional P x P relative bias."""

    def __init__(self, dim: int, num_heads: int, window: int | None = None, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0):
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} not divisible by num_heads {num_heads}"
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = use_fused_attn()
        self.window = window
        if window is not None:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
            self.register_buffer("relative_position_index", relative_position_index(window), persistent=False)
            trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _rel_pos_bias(self) -> torch.Tensor:
        N = self.window * self.window
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(N, N, -1).permute(2, 0, 1).unsqueeze(0)  # 1, heads, N, N

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B_, L, D = x.shape
        q, k, v = self.qkv(x).reshape(B_, L, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = self._rel_pos_bias() if self.window is not None else None
        if self.fused_attn:
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=bias, dropout_p=self.attn_drop.p if self.training else 0.0)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if bias is not None:
                attn = attn + bias
            x = self.attn_drop(attn.softmax(dim=-1)) @ v
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B_, L, D)))


class PixelAttention(nn.Module):
    """In-window pixel attention (CAT's IPSA): tokens are the P*P pixels of a window, dim C."""

    def __init__(self, dim: int, num_heads: int, window: int, **kw):
        super().__init__()
        self.attn = Attention(dim, num_heads, window=window, **kw)

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # (B, nW, P*P, C)
        B, nW, N, C = w.shape
        return self.attn(w.reshape(B * nW, N, C)).view(B, nW, N, C)


class CrossWindowAttention(nn.Module):
    """Cross-window attention (CAT's CPSA): for every channel separately, the windows attend
    to each other; a token is that channel's P*P values in one window. One head, no bias."""

    def __init__(self, window: int, **kw):
        super().__init__()
        self.attn = Attention(window * window, 1, window=None, **kw)

    def forward(self, w: torch.Tensor) -> torch.Tensor:  # (B, nW, P*P, C)
        B, nW, N, C = w.shape
        y = self.attn(w.permute(0, 3, 1, 2).reshape(B * C, nW, N))
        return y.view(B, C, nW, N).permute(0, 2, 3, 1)


# --------------------------------------------------------------------------- blocks

class WindowBlock(nn.Module):
    """Pre-norm residual block: windowed attention (pixel or cross-window) then MLP. NHWC in/out."""

    def __init__(self, dim: int, num_heads: int, window: int = 7, cross: bool = False, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, proj_drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 init_values: float | None = None, norm_layer: type[nn.Module] = nn.LayerNorm):
        super().__init__()
        self.window = window
        akw = dict(qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=proj_drop)
        self.norm1 = norm_layer(dim)
        self.attn = CrossWindowAttention(window, **akw) if cross else PixelAttention(dim, num_heads, window, **akw)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path1 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.drop_path2 = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def _attn(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[1], x.shape[2]
        x = pad_to_multiple(x, self.window)
        Hp, Wp = x.shape[1], x.shape[2]
        x = self.attn(window_partition(x, self.window))
        return window_reverse(x, self.window, Hp, Wp)[:, :H, :W]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.ls1(self._attn(self.norm1(x))))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


class MlTrBlock(nn.Module):
    """One MlTr/CAT depth unit: pixel attention -> cross-window attention -> pixel attention."""

    def __init__(self, dim: int, num_heads: int, window: int = 7, **kw):
        super().__init__()
        self.pre = WindowBlock(dim, num_heads, window, cross=False, **kw)
        self.cross = WindowBlock(dim, num_heads, window, cross=True, **kw)
        self.post = WindowBlock(dim, num_heads, window, cross=False, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post(self.cross(self.pre(x)))


class PatchEmbed(nn.Module):
    """4x4 stride-4 conv + LN; pads the image to a multiple of the patch. NCHW in, NHWC out."""

    def __init__(self, in_chans: int = 3, embed_dim: int = 96, patch_size: int = 4,
                 norm_layer: type[nn.Module] = nn.LayerNorm):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = norm_layer(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[2], x.shape[3]
        p = self.patch_size
        x = F.pad(x, (0, (p - W % p) % p, 0, (p - H % p) % p))
        return self.norm(self.proj(x).permute(0, 2, 3, 1))


class PatchMerging(nn.Module):
    """Swin-style 2x2 merge -> LN(4C) -> Linear(4C, 2C); odd sizes are padded by one. NHWC."""

    def __init__(self, dim: int, out_dim: int | None = None, norm_layer: type[nn.Module] = nn.LayerNorm):
        super().__init__()
        self.norm = norm_layer(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim or 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_to_multiple(x, 2)
        B, H, W, C = x.shape
        x = x.reshape(B, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)
        return self.reduction(self.norm(x))


class MlTrStage(nn.Module):
    def __init__(self, dim: int, out_dim: int, depth: int, num_heads: int, downsample: bool,
                 drop_path: Sequence[float], norm_layer: type[nn.Module] = nn.LayerNorm, **kw):
        super().__init__()
        self.downsample = PatchMerging(dim, out_dim, norm_layer) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*[
            MlTrBlock(out_dim, num_heads, drop_path=drop_path[i], norm_layer=norm_layer, **kw) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


# --------------------------------------------------------------------------- model

class MlTr(nn.Module):
    """MlTr backbone with timm's classifier API. ``forward_features`` -> (B, num_features, H/32, W/32)."""

    def __init__(self, in_chans: int = 3, num_classes: int = 1000, global_pool: str = "avg",
                 embed_dim: int = 96, depths: Sequence[int] = (2, 2, 2, 1), num_heads: Sequence[int] = (3, 6, 12, 24),
                 window_size: int = 7, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_rate: float = 0.0,
                 proj_drop_rate: float = 0.0, attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 norm_layer: type[nn.Module] = nn.LayerNorm):
        super().__init__()
        assert global_pool in ("", "avg")
        self.num_classes = num_classes
        self.global_pool = global_pool
        dims = [embed_dim * 2 ** i for i in range(len(depths))]
        self.num_features = self.head_hidden_size = dims[-1]

        self.patch_embed = PatchEmbed(in_chans, embed_dim, 4, norm_layer)
        dpr = [r.tolist() for r in torch.linspace(0, drop_path_rate, sum(depths), device="cpu").split(list(depths))]
        self.stages = nn.Sequential(*[
            MlTrStage(dims[max(i - 1, 0)], dims[i], depths[i], num_heads[i], downsample=i > 0, drop_path=dpr[i],
                      window=window_size, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, proj_drop=proj_drop_rate,
                      attn_drop=attn_drop_rate, norm_layer=norm_layer)
            for i in range(len(depths))])
        self.feature_info = [dict(num_chs=d, reduction=4 * 2 ** i, module=f"stages.{i}") for i, d in enumerate(dims)]
        self.norm = norm_layer(self.num_features)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if global_pool is not None:
            assert global_pool in ("", "avg")
            self.global_pool = global_pool
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.patch_embed(x))
        return self.norm(x).permute(0, 3, 1, 2)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------- registry

def _cfg(**kwargs):
    return {
        "url": "", "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7),
        "crop_pct": 1.0, "interpolation": "bicubic", "fixed_input_size": False,
        "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.proj", "classifier": "head", **kwargs,
    }


default_cfgs = generate_default_cfgs({
    "mltr_s": _cfg(),
    "mltr_m": _cfg(input_size=(3, 384, 384), pool_size=(12, 12)),
    "mltr_l": _cfg(input_size=(3, 384, 384), pool_size=(12, 12)),
})

MLTR_CONFIGS = {
    "mltr_s": dict(embed_dim=96, depths=(2, 2, 2, 1), num_heads=(3, 6, 12, 24)),
    "mltr_m": dict(embed_dim=128, depths=(1, 1, 3, 1), num_heads=(4, 8, 16, 32)),
    "mltr_l": dict(embed_dim=160, depths=(2, 2, 3, 1), num_heads=(5, 10, 20, 40)),
}


def _create_mltr(variant: str, pretrained: bool = False, **kwargs) -> MlTr:
    model_kwargs = {**MLTR_CONFIGS[variant], **kwargs}
    out_indices = model_kwargs.pop("out_indices", (0, 1, 2, 3))  # features_only: NHWC stage outputs
    return build_model_with_cfg(MlTr, variant, pretrained,
                                feature_cfg=dict(flatten_sequential=True, out_indices=out_indices), **model_kwargs)


@register_model
def mltr_s(pretrained: bool = False, **kwargs) -> MlTr:
    """MlTr-S: 96, (2, 2, 2, 1), 33.0 M backbone params."""
    return _create_mltr("mltr_s", pretrained, **kwargs)


@register_model
def mltr_m(pretrained: bool = False, **kwargs) -> MlTr:
    """MlTr-M: 128, (1, 1, 3, 1), 64.3 M backbone params."""
    return _create_mltr("mltr_m", pretrained, **kwargs)


@register_model
def mltr_l(pretrained: bool = False, **kwargs) -> MlTr:
    """MlTr-L: 160, (2, 2, 3, 1), 104.5 M backbone params."""
    return _create_mltr("mltr_l", pretrained, **kwargs)


# --------------------------------------------------------------------------- neck

class MlTrNeck(nn.Module):
    """MlTr blocks on a CNN's last feature map: 1x1 conv in -> ``depth`` MlTr blocks -> LN.

    (B, in_channels, H, W) -> (B, out_channels=dim, H, W), any H, W.

    * ``window=4``: an 11x11 map (EfficientNet-Lite2 at 352) pads to 12x12 = 3x3 windows of 16
      pixels, and a 12x12 map (384 input) needs no padding; cross-window attention then sees
      9 windows. Window 6 would leave only 4 windows, window 7 or more just 1-4.
    * Near-identity start: every residual branch goes through LayerScale initialised to
      ``init_values=1e-5`` (CaiT/DeiT-III), so at init the neck is LN(conv1x1(x)) -- a linear
      re-projection of the pretrained features -- and the attention blocks fade in as the
      gammas grow. ``init_values=None`` turns LayerScale off.
    * ``drop_path`` is the maximum stochastic-depth rate, linear over the blocks.
    """

    def __init__(self, in_channels: int, dim: int = 384, depth: int = 2, num_heads: int = 8, window: int = 4,
                 mlp_ratio: float = 4.0, drop_path: float = 0.0, init_values: float | None = 1e-5,
                 qkv_bias: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = dim
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=1)
        dpr = torch.linspace(0, drop_path, depth, device="cpu").tolist() if depth else []
        self.blocks = nn.Sequential(*[
            MlTrBlock(dim, num_heads, window, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=dpr[i],
                      init_values=init_values) for i in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.blocks.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.proj(x).permute(0, 2, 3, 1))
        return self.norm(x).permute(0, 3, 1, 2)


class IdentityNeck(nn.Identity):
    """No neck: passes the feature map through; extra keyword arguments are ignored."""

    def __init__(self, in_channels: int, **kwargs):
        super().__init__()
        self.in_channels = self.out_channels = in_channels


NECKS: dict[str, type[nn.Module]] = {"mltr": MlTrNeck, "none": IdentityNeck}


def build_neck(name: str, in_channels: int, **kwargs) -> nn.Module:
    """Build a neck from ``NECKS`` by name; the result has ``out_channels``."""
    if name not in NECKS:
        raise ValueError(f"unknown neck {name!r}; choose from {sorted(NECKS)}")
    return NECKS[name](in_channels, **kwargs)
