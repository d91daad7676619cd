"""Metrics: hand-computed cases and an independent brute-force AP reference."""
import numpy as np
import pytest
import torch

from imgtag.engine.metrics import (average_precision, calibrate_thresholds, evaluate_scores,
                                   threshold_metrics)


# ---- independent slow references (definitions, no cumsum / envelope tricks) -----------------------
def ref_points(score, pos):
    """(precision, recall) at every cut-off rank, by counting; assumes no tied scores."""
    n_pos = sum(pos)
    pts = []
    for s in score:
        above = [p for x, p in zip(score, pos) if x >= s]
        pts.append((sum(above) / len(above), sum(above) / n_pos))
    return pts


def ref_nonint(score, pos):
    precs = [sum(p for x, p in zip(score, pos) if x >= s) / sum(1 for x in score if x >= s)
             for s, q in zip(score, pos) if q]
    return sum(precs) / len(precs)


def ref_interp(score, pos):
    pts, n_pos = ref_points(score, pos), sum(pos)
    return sum(max(p for p, r in pts if r >= k / n_pos - 1e-12) for k in range(1, n_pos + 1)) / n_pos


def ref_11point(score, pos):
    pts = ref_points(score, pos)
    return sum(max([p for p, r in pts if r >= t / 10 - 1e-12] or [0.0]) for t in range(11)) / 11


@pytest.mark.parametrize("mode,ref", [("nonint", ref_nonint), ("interp", ref_interp),
                                      ("11point", ref_11point)])
def test_ap_matches_bruteforce_reference(mode, ref):
    rng = np.random.default_rng(0)
    scores = rng.random((60, 5))
    targets = (rng.random((60, 5)) < [0.05, 0.2, 0.5, 0.8, 0.3]).astype(float)
    targets[0] = 1  # every class has a positive
    ap = average_precision(scores, targets, mode=mode)
    want = [ref(list(scores[:, k]), [bool(v) for v in targets[:, k]]) for k in range(5)]
    np.testing.assert_allclose(ap, want, rtol=0, atol=1e-12)


def test_ap_hand_cases():
    ap = average_precision([0.9, 0.8, 0.7], [1, 0, 1])
    assert ap[0] == pytest.approx((1 / 1 + 2 / 3) / 2)
    # ranking hits 1 0 0 1 1: precisions at positives 1, 2/4, 3/5; envelope 1, 3/5, 3/5
    s, t = [0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 0, 1, 1]
    assert average_precision(s, t, mode="nonint")[0] == pytest.approx((1 + 0.5 + 0.6) / 3)
    assert average_precision(s, t, mode="interp")[0] == pytest.approx((1 + 0.6 + 0.6) / 3)
    # 11-point: recall 1/3 at rank 1 (p 1), 2/3 at rank 4, 1 at rank 5 (envelope 0.6):
    # t=0..0.3 -> 1 (4 levels), t=0.4..1.0 -> 0.6 (7 levels)
    assert average_precision(s, t, mode="11point")[0] == pytest.approx((4 * 1 + 7 * 0.6) / 11)
    assert average_precision([0.9, 0.8, 0.7], [1, 0, 1], mode="11point")[0] == pytest.approx(
        (6 + 5 * 2 / 3) / 11)


def test_perfect_ranking_and_no_positive_class():
    scores = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.3]])
    targets = np.array([[1, 0], [1, 0], [0, 0]])
    for mode in ("nonint", "interp", "11point"):
        ap = average_precision(scores, targets, mode=mode)
        assert ap[0] == 1.0 and np.isnan(ap[1])
    res = evaluate_scores(scores, targets)
    assert res["mAP"] == 100.0 and res["num_classes_evaluated"] == 1 and np.isnan(res["AP"][1])


def test_mask_removes_entries():
    s, t = np.array([0.9, 0.8, 0.7]), np.array([1, 0, 1])
    masked = average_precision(s, t, mask=[True, False, True])
    assert masked[0] == 1.0  # the negative ranked above a positive is ignored
    assert average_precision(s, t, mask=[False, True, True])[0] == pytest.approx(0.5)
    assert np.isnan(average_precision(s, t, mask=[False, False, False])[0])
    # torch tensors are accepted
    assert average_precision(torch.tensor(s), torch.tensor(t))[0] == pytest.approx(5 / 6)


def test_ties_follow_input_order():
    # stable sort: tied rows keep input order
    assert average_precision([0.5, 0.5], [1, 0])[0] == 1.0
    assert average_precision([0.5, 0.5], [0, 1])[0] == 0.5


def test_threshold_metrics_hand_case():
    scores = np.array([[0.9, 0.6], [0.4, 0.7], [0.8, 0.2]])
    targets = np.array([[1, 0], [1, 1], [0, 1]])
    r = threshold_metrics(scores, targets, thresholds=0.5)
    # class 0: pred rows {0,2}, tp 1, gt 2 -> P 1/2, R 1/2; class 1: pred {0,1}, tp 1, gt 2 -> 1/2, 1/2
    assert r["CP"] == pytest.approx(50) and r["CR"] == pytest.approx(50) and r["CF1"] == pytest.approx(50)
    assert r["OP"] == pytest.approx(50) and r["OR"] == pytest.approx(50) and r["OF1"] == pytest.approx(50)
    r = threshold_metrics(scores, targets, thresholds=[0.85, 0.5])
    # class 0: pred {0}, tp 1 -> P 1, R 1/2; class 1 unchanged (1/2, 1/2); overall tp 2, pred 3, gt 4
    assert r["CP"] == pytest.approx(75) and r["CR"] == pytest.approx(50)
    assert r["CF1"] == pytest.approx(100 * 2 * 0.75 * 0.5 / 1.25)
    assert r["OP"] == pytest.approx(200 / 3) and r["OR"] == pytest.approx(50)
    f1_0, f1_1 = 2 * 1 * 0.5 / 1.5, 0.5
    assert threshold_metrics(scores, targets, thresholds=[0.85, 0.5], cf1="mean")["CF1"] == \
        pytest.approx(100 * (f1_0 + f1_1) / 2)
    # no predictions at all -> precision 0 (CSRA convention), recall 0
    r = threshold_metrics(scores, targets, thresholds=0.95)
    assert r["CP"] == 0 and r["CR"] == 0 and r["CF1"] == 0 and r["OF1"] == 0
    # inclusive threshold, masked entries not counted
    r = threshold_metrics([[0.5]], [[1]], thresholds=0.5)
    assert r["CP"] == 100
    r = threshold_metrics([[0.9], [0.9]], [[1], [0]], mask=[[True], [False]])
    assert r["OP"] == 100


def test_calibrate_thresholds():
    scores = np.array([[0.9, 0.3, 0.2], [0.7, 0.2, 0.1], [0.6, 0.1, 0.9], [0.2, 0.02, 0.8]])
    targets = np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0]])
    thr = calibrate_thresholds(scores, targets, min_threshold=0.05)
    assert thr[0] == pytest.approx(0.65)  # separates {0.9, 0.7} from {0.6, 0.2}: F1 = 1
    # class 1: positives 0.3 and 0.02 -> best is predicting all (F1 0.8) but the floor 0.05 limits it:
    # at 0.05 F1 = 2*1/(3+2) = 0.4; at 0.25 F1 = 2*1/(1+2) = 0.667 -> 0.25
    assert thr[1] == pytest.approx(0.25)
    assert thr[2] == 0.5  # no positives: fallback
    preds = scores >= thr
    assert (preds[:, 0] == targets[:, 0].astype(bool)).all()
    # masked positive is ignored -> class 2 still has no positive
    assert calibrate_thresholds(scores, np.c_[targets[:, :2], [1, 0, 0, 0]],
                                mask=np.c_[np.ones((4, 2), bool), [False, True, True, True]])[2] == 0.5


def test_shape_errors():
    with pytest.raises(ValueError):
        average_precision(np.zeros((3, 2)), np.zeros((3, 3)))
    with pytest.raises(ValueError):
        average_precision(np.zeros((3, 2)), np.zeros((3, 2)), mode="voc")


def test_calibration_takes_the_middle_of_the_f1_plateau():
    """50 positives at 0.95..0.99, then 5 positives and 6 negatives mixed in 0.70..0.90, 1000 negatives below 0.5.
    Cutting above the mixed band (F1 0.952) narrowly beats cutting below it (0.948): the exact argmax sits at the
    band's top, where a new positive at 0.9 is lost. The calibrated threshold must stay within 0.01 F1 of the best
    and keep that positive."""
    rng = np.random.default_rng(0)
    pos = np.r_[np.linspace(0.95, 0.99, 50), [0.71, 0.75, 0.79, 0.83, 0.87]]
    neg = np.r_[rng.uniform(0.0, 0.5, 1000), [0.72, 0.76, 0.80, 0.84, 0.88, 0.90]]
    s = np.r_[pos, neg][:, None]
    t = np.r_[np.ones(len(pos)), np.zeros(len(neg))][:, None]

    def f1(th):
        pred = s[:, 0] >= th
        return 2 * (pred & (t[:, 0] == 1)).sum() / (pred.sum() + len(pos))

    exact, robust = calibrate_thresholds(s, t, tolerance=0)[0], calibrate_thresholds(s, t)[0]
    assert exact > 0.9 and f1(exact) == pytest.approx(100 / 105)
    assert robust < 0.9 and f1(robust) >= f1(exact) - 0.01
