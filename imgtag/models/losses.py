"""Multi-label losses: ``loss(logits [B, K], targets [B, K], mask [B, K] | None) -> scalar``.

Common contract
---------------
* ``targets`` are float in {0, 1} (soft targets in [0, 1], e.g. from mixup,
  also work); ``mask`` is bool, False = label unknown: those entries contribute
  nothing to the value or the gradient (their targets are replaced by 0 before
  use, so garbage such as -1 or NaN there is harmless).
* One reduction for every loss: **sum over classes and counted entries,
  divided by the batch size B** (not by the number of counted entries).  This
  is the ASL / DOR "sum" convention divided by B, so loss values and learning
  rates are comparable across losses and batch sizes.  It is K times the
  ``mean`` reduction of ``BCEWithLogitsLoss`` (CSRA) and 1/1000 of Q2L's
  rescaled ASL (which divides by B*K and multiplies by 1000).
* Logits are computed in float32 (safe under autocast / fp16).
* ``defaults``: class attribute with the hyper-parameters and their defaults.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BCELoss", "FocalLoss", "AsymmetricLoss", "AMBinaryLoss", "LOSSES", "build_loss",
           "default_scale"]


AM_BINARY_SCALE = 17.0  # DOR's released VOC config (s=17); see AMBinaryLoss


def default_scale(num_classes: int) -> float:
    """DOR ``compute_s``: clip(sqrt(5) * ln(K - 1), 7, 30) (7 for K <= 2)."""
    if num_classes <= 2:
        return 7.0
    return float(min(max(math.sqrt(5) * math.log(num_classes - 1), 7.0), 30.0))


class _MultiLabelLoss(nn.Module):
    defaults: dict = {}

    def elementwise(self, logits: Tensor, targets: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ")
        logits = logits.float()
        targets = targets.to(logits.dtype)
        if mask is not None:
            mask = mask.to(torch.bool).expand_as(logits)
            targets = torch.where(mask, targets, torch.zeros_like(targets))
        loss = self.elementwise(logits, targets)
        if mask is not None:
            loss = torch.where(mask, loss, torch.zeros_like(loss))
        return loss.sum() / max(logits.shape[0], 1)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={getattr(self, k)}" for k in self.defaults)


class BCELoss(_MultiLabelLoss):
    """Binary cross-entropy on logits (``F.binary_cross_entropy_with_logits``)."""

    def elementwise(self, logits, targets):
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="none")


class FocalLoss(_MultiLabelLoss):
    """Sigmoid focal loss (Lin et al.; torchvision ``sigmoid_focal_loss`` form).

    ``BCE * (1 - p_t)^gamma``, times ``alpha_t = alpha*y + (1-alpha)*(1-y)`` if
    ``alpha`` is not None.  Defaults gamma=2, alpha=None (no class weighting;
    RetinaNet's 0.25 is tuned for dense detection).  The modulating factor keeps
    its gradient, as in the paper.
    """

    defaults = {"gamma": 2.0, "alpha": None}

    def __init__(self, gamma: float = 2.0, alpha: float | None = None):
        super().__init__()
        self.gamma, self.alpha = float(gamma), alpha

    def elementwise(self, logits, targets):
        ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * (1 - p_t) ** self.gamma
        if self.alpha is not None:
            loss = loss * (self.alpha * targets + (1 - self.alpha) * (1 - targets))
        return loss


class AsymmetricLoss(_MultiLabelLoss):
    """ASL (Ben-Baruch, Ridnik et al., ICCV 2021), official ``AsymmetricLoss``.

    p = sigmoid(x); p_m = max(p - clip, 0) via ``xs_neg = min(1 - p + clip, 1)``;
    L = -[y (1-p)^gamma_pos log(p) + (1-y) p_m^gamma_neg log(1 - p_m)], with the
    log arguments clamped to >= eps and the focusing weights computed without
    gradient when ``disable_grad_focal`` (the official ``disable_torch_grad_focal_loss``).
    Defaults gamma_neg=4, gamma_pos=0, clip=0.05, eps=1e-8, disable_grad_focal=True
    are the setting used for the ASL paper's results (``train.py``), not the
    class defaults of the reference (gamma_pos=1).  Computed in float32, which
    avoids the fp16 NaNs reported in ASL issue #53.
    """

    defaults = {"gamma_neg": 4.0, "gamma_pos": 0.0, "clip": 0.05, "eps": 1e-8, "disable_grad_focal": True}

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05, eps: float = 1e-8,
                 disable_grad_focal: bool = True):
        super().__init__()
        self.gamma_neg, self.gamma_pos, self.clip, self.eps = float(gamma_neg), float(gamma_pos), clip, eps
        self.disable_grad_focal = disable_grad_focal

    def elementwise(self, logits, targets):
        xs_pos = torch.sigmoid(logits)
        xs_neg = 1 - xs_pos
        if self.clip is not None and self.clip > 0:
            xs_neg = (xs_neg + self.clip).clamp(max=1)
        loss = targets * torch.log(xs_pos.clamp(min=self.eps))
        loss = loss + (1 - targets) * torch.log(xs_neg.clamp(min=self.eps))
        if self.gamma_neg > 0 or self.gamma_pos > 0:
            ctx = torch.no_grad() if self.disable_grad_focal else contextlib.nullcontext()
            with ctx:
                pt = xs_pos * targets + xs_neg * (1 - targets)
                gamma = self.gamma_pos * targets + self.gamma_neg * (1 - targets)
                w = torch.pow(1 - pt, gamma)
            loss = loss * w
        return -loss


class AMBinaryLoss(_MultiLabelLoss):
    """AM-Binary (Prokofiev & Sovrasov 2022; DOR ``torchreid/losses/asl.py``).

    Takes the head's already-scaled cosine logits z = s * cos (a head built with
    ``cosine=True, scale=s``); ``s`` must equal that scale.

        p+ = sigmoid(z - s*m),  p- = sigmoid(-z - s*m)
        L  = -[(k/s) * y * log p+  +  ((1-k)/s) * (1-y) * log p-] * w

    Logs are ``F.logsigmoid`` (no log(0) = -inf when sigmoid underflows, e.g. in
    fp16, which DOR's ``log(sigmoid)`` risks).  With m=0, k=0.5 this is
    (0.5/s) * BCE(z, y).

    Asymmetric focusing, only when gamma_pos or gamma_neg > 0 (DOR code):
    p- <- min(p- + clip, 1) (also inside log p-, so easy negatives with
    p- > 1 - clip give zero loss), w = (p-)^gamma_pos for positives and
    (p+)^gamma_neg for negatives (``pow(pt, gamma_pos*y + gamma_neg*(1-y))``),
    with gradient through w as in DOR; pt is clamped to >= eps so fractional
    gammas keep finite gradients.

    Defaults (imgtag): m=0.0 and, in training, s=17 (``AM_BINARY_SCALE``), as in DOR's released VOC config
    that produced the paper's numbers. Measured here (VOC07 train→val, frozen Lite2 + GAP, flip, 12 epochs,
    benchmarks/RESULTS.md): s=7 (DOR's ``compute_s`` for 20 classes), m=0.35 → 66.9 mAP; s=17, m=0.35 → 77.9;
    s=17, m=0 → 87.8. The angular margin stays available (``--loss-opt m=0.35``).
    Reference defaults: m=0.35 (DOR class and config default ``loss.softmax.m``), k=0.7
    (DOR's config default ``amb_k`` and every released config; the class
    default 0.8 is overridden by the config in DOR and only OTX keeps 0.8),
    gamma_pos=gamma_neg=0, clip=0.05 (DOR's ``probability_margin``; it acts only
    with focusing).  Note DOR's released configs train with m=0.0 (s 17-23,
    k 0.7, no focusing), i.e. a k-balanced scaled cosine BCE.
    """

    defaults = {"s": None, "m": 0.0, "k": 0.7, "gamma_pos": 0.0, "gamma_neg": 0.0, "clip": 0.05, "eps": 1e-8}

    def __init__(self, *, s: float, m: float = 0.0, k: float = 0.7, gamma_pos: float = 0.0,
                 gamma_neg: float = 0.0, clip: float = 0.05, eps: float = 1e-8):
        super().__init__()
        if s is None or not s > 0:
            raise ValueError(f"AMBinaryLoss needs the head's scale s > 0 (e.g. default_scale(K)), got {s}")
        if not 0 <= k <= 1:
            raise ValueError(f"k must be in [0, 1], got {k}")
        self.s, self.m, self.k = float(s), float(m), float(k)
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = float(gamma_pos), float(gamma_neg), clip, eps

    def elementwise(self, logits, targets):
        u_pos = logits - self.s * self.m
        u_neg = -logits - self.s * self.m
        log_pos = F.logsigmoid(u_pos)
        w = None
        if self.gamma_pos > 0 or self.gamma_neg > 0:
            p_pos, p_neg = torch.sigmoid(u_pos), torch.sigmoid(u_neg)
            if self.clip is not None and self.clip > 0:
                p_neg = (p_neg + self.clip).clamp(max=1)
                log_neg = torch.log(p_neg)
            else:
                log_neg = F.logsigmoid(u_neg)
            pt = p_neg * targets + p_pos * (1 - targets)
            w = torch.pow(pt.clamp(min=self.eps), self.gamma_pos * targets + self.gamma_neg * (1 - targets))
        else:
            log_neg = F.logsigmoid(u_neg)
        loss = -(self.k / self.s) * targets * log_pos - ((1 - self.k) / self.s) * (1 - targets) * log_neg
        return loss if w is None else loss * w


LOSSES: dict[str, type] = {
    "bce": BCELoss,
    "focal": FocalLoss,
    "asl": AsymmetricLoss,
    "am-binary": AMBinaryLoss,
}


def build_loss(name: str, **kwargs) -> nn.Module:
    """Build a loss by registry name ('am_binary' is accepted for 'am-binary')."""
    key = str(name).strip().lower().replace("_", "-")
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; valid losses: {', '.join(LOSSES)}")
    return LOSSES[key](**kwargs)
