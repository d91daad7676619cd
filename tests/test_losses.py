import math

import pytest
import torch
import torch.nn.functional as F

from imgtag.models.losses import (
    LOSSES,
    AMBinaryLoss,
    AsymmetricLoss,
    FocalLoss,
    build_loss,
    default_scale,
)

B, K, S = 4, 6, 10.0


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(B, K, generator=g)
    targets = (torch.rand(B, K, generator=g) < 0.4).float()
    return logits, targets


def bce(logits, targets):  # the common reduction: sum / batch size
    return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]


# every loss, plus the non-default branches of the focusing code
VARIANTS = {
    "bce": lambda: build_loss("bce"),
    "focal": lambda: build_loss("focal"),
    "focal-alpha": lambda: build_loss("focal", alpha=0.25),
    "asl": lambda: build_loss("asl"),
    "asl-grad": lambda: build_loss("asl", gamma_pos=1, disable_grad_focal=False),
    "am-binary": lambda: build_loss("am-binary", s=S),
    "am-binary-focal": lambda: build_loss("am-binary", s=S, gamma_pos=1, gamma_neg=2),
    "am-binary-focal-noclip": lambda: build_loss("am-binary", s=S, gamma_pos=0.5, gamma_neg=0.5, clip=0),
}


def test_registry():
    assert set(LOSSES) == {"bce", "focal", "asl", "am-binary"}
    with pytest.raises(ValueError, match="bce, focal, asl, am-binary"):
        build_loss("asll")
    assert isinstance(build_loss("AM_Binary", s=S), AMBinaryLoss)
    with pytest.raises(TypeError):
        build_loss("am-binary")  # s is required
    a = AsymmetricLoss()
    assert (a.gamma_neg, a.gamma_pos, a.clip, a.eps, a.disable_grad_focal) == (4, 0, 0.05, 1e-8, True)
    f = FocalLoss()
    assert (f.gamma, f.alpha) == (2, None)
    m = AMBinaryLoss(s=S)
    assert (m.m, m.k, m.gamma_pos, m.gamma_neg) == (0.0, 0.7, 0, 0)


def test_default_scale():
    assert default_scale(80) == pytest.approx(math.sqrt(5) * math.log(79))
    assert default_scale(2) == default_scale(3) == 7.0
    assert default_scale(10**6) == 30.0


def test_special_cases_equal_bce():
    logits, targets = data()
    ref = bce(logits, targets)
    torch.testing.assert_close(build_loss("bce")(logits, targets), ref)
    torch.testing.assert_close(build_loss("asl", gamma_neg=0, gamma_pos=0, clip=0)(logits, targets), ref)
    torch.testing.assert_close(build_loss("focal", gamma=0)(logits, targets), ref)


def test_asl_matches_official_formula():
    logits, targets = data(1)
    p = torch.sigmoid(logits)
    p_m = (p - 0.05).clamp(min=0)
    y = targets
    official = -(y * torch.log(p) + (1 - y) * p_m**4 * torch.log(1 - p_m)).sum() / B
    torch.testing.assert_close(build_loss("asl")(logits, targets), official)


def test_am_binary_identities():
    logits, targets = data(2)  # z = s * cos is just a logit here
    # m = 0, k = 0.5: (1/s) * 0.5 * BCE(z)
    loss = build_loss("am-binary", s=S, m=0.0, k=0.5)(logits, targets)
    torch.testing.assert_close(loss, 0.5 / S * bce(logits, targets))
    # general m, k: the DOR formula with p+ = sigmoid(z - s m), p- = sigmoid(-z - s m)
    m, k, y = 0.2, 0.7, targets
    p_pos, p_neg = torch.sigmoid(logits - S * m), torch.sigmoid(-logits - S * m)
    ref = -(k / S * y * torch.log(p_pos) + (1 - k) / S * (1 - y) * torch.log(p_neg)).sum() / B
    torch.testing.assert_close(build_loss("am-binary", s=S, m=m, k=k)(logits, targets), ref)
    # asymmetric focusing (DOR): p- shifted by clip, w = p-^g+ (positives), p+^g- (negatives)
    gp, gn, clip = 1.0, 2.0, 0.05
    p_neg_c = (p_neg + clip).clamp(max=1)
    w = torch.where(y > 0, p_neg_c**gp, p_pos**gn)
    ref = -((k / S * y * torch.log(p_pos) + (1 - k) / S * (1 - y) * torch.log(p_neg_c)) * w).sum() / B
    got = build_loss("am-binary", s=S, m=m, k=k, gamma_pos=gp, gamma_neg=gn, clip=clip)(logits, targets)
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_mask_excludes_entries(name):
    loss_fn = VARIANTS[name]()
    logits, targets = data(3)
    mask = torch.rand(B, K, generator=torch.Generator().manual_seed(4)) > 0.3
    x1 = logits.clone().requires_grad_(True)
    l1 = loss_fn(x1, targets, mask)
    l1.backward()
    # change masked logits and targets (even to garbage): nothing changes
    x2 = torch.where(mask, logits, -50 * logits).requires_grad_(True)
    t2 = torch.where(mask, targets, torch.full_like(targets, float("nan")))
    l2 = loss_fn(x2, t2, mask)
    l2.backward()
    torch.testing.assert_close(l1, l2)
    torch.testing.assert_close(x1.grad, x2.grad)
    assert (x1.grad[~mask] == 0).all() and x1.grad[mask].abs().sum() > 0
    # the value equals the loss over the kept entries only (sum / B, B unchanged)
    full = loss_fn(logits, targets, None)
    assert not torch.isclose(full, l1)
    zero = loss_fn(logits, targets, torch.zeros(B, K, dtype=torch.bool))
    assert zero == 0


@pytest.mark.parametrize("name", list(VARIANTS))
def test_extreme_logits_finite(name):
    loss_fn = VARIANTS[name]()
    logits = torch.tensor([[100.0, -100.0, 100.0, -100.0, 0.0, 30.0]]).repeat(2, 1)
    targets = torch.tensor([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 0.0, 1.0]])
    for x in (logits, logits.half()):
        x = x.clone().requires_grad_(True)
        loss = loss_fn(x, targets)
        loss.backward()
        assert loss.dtype == torch.float32 and torch.isfinite(loss), loss
        assert torch.isfinite(x.grad).all(), x.grad


@pytest.mark.parametrize("name", list(VARIANTS))
def test_loss_decreases_toward_targets(name):
    loss_fn = VARIANTS[name]()
    logits, targets = data(5)
    step = 0.5 * (2 * targets - 1)
    values = [float(loss_fn(logits + i * step, targets)) for i in range(4)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    # gradient points the same way
    x = logits.clone().requires_grad_(True)
    loss_fn(x, targets).backward()
    assert (x.grad * step).sum() < 0


@pytest.mark.parametrize("name", list(VARIANTS))
def test_reduction_is_sum_over_batch(name):
    loss_fn = VARIANTS[name]()
    logits, targets = data(6)
    one = loss_fn(logits, targets)
    torch.testing.assert_close(loss_fn(logits.repeat(3, 1), targets.repeat(3, 1)), one)  # per-image mean
    per_entry = sum(float(loss_fn(logits[:, j : j + 1], targets[:, j : j + 1])) for j in range(K))
    assert float(one) == pytest.approx(per_entry, rel=1e-5)  # sum over classes
    with pytest.raises(ValueError):
        loss_fn(logits, targets[:, :-1])
