"""Multi-label evaluation metrics (numpy, float64).

Inputs are ``scores[N, K]`` (probabilities for the threshold metrics), ``targets[N, K]`` (> 0.5 =
positive, anything else negative) and an optional ``mask[N, K]`` (False = entry ignored: e.g. VOC
"difficult"). Every metric is computed per class over that class's unmasked rows only. Torch tensors
(any device) and lists are accepted.

Protocol choices (they decide whether numbers are comparable with published ones):

* **AP** default ``"nonint"``: non-interpolated, the mean over positives of the precision at the
  positive's rank (ASL, ML-Decoder, CSRA, ML-GCN, DOR). ``"interp"``: VOC2010+ all-point interpolated AP
  on the monotone precision envelope (Q2L's ``voc_mAP``), >= nonint. ``"11point"``: VOC2007 11-point
  AP, recall levels exactly 0, 0.1, ..., 1 (``np.arange(11) / 10``).
* **Ties** in score: rows are ordered by a *stable* descending sort, so tied rows keep their input
  order (deterministic, but a tie between a positive and a negative scores as if the earlier row came
  first; there is no tie averaging).
* A class with no positive among its counted rows has AP NaN; mAP is the mean over the other classes.
* **Threshold metrics** predict ``score >= threshold`` (inclusive, as CSRA / ML-GCN). A class with no
  predicted positive has precision 0 (CSRA's ``predict_num[predict_num == 0] = 1``). CP / CR are
  averaged over the classes with at least one counted positive (recall is undefined otherwise; the same
  classes as mAP); OP / OR / OF1 sum over all counted entries. CF1 = ``2·CP·CR / (CP + CR)`` (ML-GCN,
  CSRA, the usual tables); ``cf1="mean"`` gives ASL's mean of per-class F1 instead. All ×100.
"""
from __future__ import annotations

import numpy as np

AP_MODES = ("nonint", "interp", "11point")


def _arr(x, dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=dtype)
    return a.reshape(-1, 1) if a.ndim == 1 else a


def _inputs(scores, targets, mask):
    s, t = _arr(scores), _arr(targets) > 0.5
    m = np.ones_like(t) if mask is None else _arr(mask, bool)
    if s.ndim != 2 or s.shape != t.shape or s.shape != m.shape:
        raise ValueError(f"scores {s.shape}, targets {t.shape} and mask {m.shape} must be equal [N, K]")
    return s, t, m


def _ap_one(score: np.ndarray, pos: np.ndarray, mode: str) -> float:
    n_pos = int(pos.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-score, kind="stable")
    hits = pos[order]
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    if mode == "nonint":
        return float(precision[hits].mean())
    envelope = np.maximum.accumulate(precision[::-1])[::-1]  # best precision at this rank or deeper
    if mode == "interp":
        return float(envelope[hits].mean())  # recall grows by 1/n_pos exactly at each positive
    recall = tp / n_pos
    first = np.searchsorted(recall, np.arange(11) / 10, side="left")  # first rank reaching recall t
    return float(envelope[first].mean())  # recall reaches 1, so every level is reached


def average_precision(scores, targets, mask=None, mode: str = "nonint") -> np.ndarray:
    """Per-class AP, float64 array [K] in [0, 1]; NaN for a class without counted positives."""
    if mode not in AP_MODES:
        raise ValueError(f"mode must be one of {AP_MODES}, got {mode!r}")
    s, t, m = _inputs(scores, targets, mask)
    return np.array([_ap_one(s[m[:, k], k], t[m[:, k], k], mode) for k in range(s.shape[1])])


def _counts(s, t, m, thresholds):
    thr = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (s.shape[1],))
    pred = (s >= thr) & m
    gt = t & m
    return (pred & gt).sum(0).astype(np.float64), pred.sum(0).astype(np.float64), gt.sum(0).astype(np.float64)


def _f1(p, r):
    return np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)


def threshold_metrics(scores, targets, mask=None, thresholds=0.5, cf1: str = "harmonic") -> dict:
    """CP, CR, CF1, OP, OR, OF1 (×100) at ``score >= thresholds`` (a float or one per class).

    See the module docstring for the conventions; ``cf1`` is ``"harmonic"`` (default) or ``"mean"``.
    """
    if cf1 not in ("harmonic", "mean"):
        raise ValueError(f"cf1 must be 'harmonic' or 'mean', got {cf1!r}")
    s, t, m = _inputs(scores, targets, mask)
    tp, n_pred, n_gt = _counts(s, t, m, thresholds)
    has = n_gt > 0
    p_c = tp / np.maximum(n_pred, 1)
    r_c = tp / np.maximum(n_gt, 1)
    if not has.any():
        cp = cr = c_f1 = 0.0
    else:
        cp, cr = float(p_c[has].mean()), float(r_c[has].mean())
        c_f1 = float(_f1(cp, cr)) if cf1 == "harmonic" else float(_f1(p_c, r_c)[has].mean())
    op = tp.sum() / max(n_pred.sum(), 1)
    o_r = tp.sum() / max(n_gt.sum(), 1)
    return {"CP": 100 * cp, "CR": 100 * cr, "CF1": 100 * c_f1,
            "OP": 100 * float(op), "OR": 100 * float(o_r), "OF1": 100 * float(_f1(op, o_r))}


def evaluate_scores(scores, targets, mask=None, thresholds=0.5, ap_mode: str = "nonint",
                    cf1: str = "harmonic") -> dict:
    """All metrics in one dict: ``mAP`` (×100, mean over classes with positives), ``AP`` (list [K], ×100,
    NaN where undefined), ``CP CR CF1 OP OR OF1`` (×100), ``num_images``, ``num_classes_evaluated``,
    ``ap_mode``."""
    ap = average_precision(scores, targets, mask, ap_mode)
    valid = ~np.isnan(ap)
    out = {"mAP": 100 * float(ap[valid].mean()) if valid.any() else float("nan"),
           "AP": (100 * ap).tolist()}
    out.update(threshold_metrics(scores, targets, mask, thresholds, cf1))
    out.update(num_images=_arr(scores).shape[0], num_classes_evaluated=int(valid.sum()), ap_mode=ap_mode)
    return out


def calibrate_thresholds(scores, targets, mask=None, min_threshold: float = 0.05,
                         default: float = 0.5, tolerance: float = 0.01) -> np.ndarray:
    """Per-class threshold with (near-)maximal F1 on the given (validation) scores: array [K].

    Candidates are the midpoints between adjacent distinct counted scores (so predictions on these
    scores do not depend on float rounding at the cut), floored at ``min_threshold``, plus
    ``min_threshold`` itself (predict everything at or above it); a threshold below ``min_threshold`` is
    never returned, which keeps near-zero thresholds learnt from a few stray positives out.

    F1 against the threshold is a noisy plateau for a well-separated class, and its exact argmax often sits at
    the plateau's upper edge (one more true positive at a high score). A threshold there drops clear
    positives of new images just under it (a 0.91 cat under a 0.93 threshold). So the threshold returned is
    the median of all candidates whose F1 is within ``tolerance`` (absolute) of the best; ``tolerance=0``
    gives the highest argmax. A class without counted positives, or whose best F1 is 0, gets ``default``
    (0.5). Calibrate on validation data, never on the data you report.
    """
    s, t, m = _inputs(scores, targets, mask)
    out = np.full(s.shape[1], float(default))
    for k in range(s.shape[1]):
        sk, pk = s[m[:, k], k], t[m[:, k], k]
        n_pos = int(pk.sum())
        if n_pos == 0:
            continue
        u = np.unique(sk)  # ascending
        cand = np.unique(np.maximum(np.append((u[:-1] + u[1:]) / 2, min_threshold), min_threshold))
        srt, pos_srt = np.sort(sk), np.sort(sk[pk])
        n_pred = len(srt) - np.searchsorted(srt, cand, side="left")  # count of scores >= cand
        tp = len(pos_srt) - np.searchsorted(pos_srt, cand, side="left")
        f1 = 2 * tp / (n_pred + n_pos)
        if f1.max() > 0:
            near = np.flatnonzero(f1 >= f1.max() - tolerance)  # ascending thresholds
            out[k] = cand[near[len(near) // 2]] if tolerance > 0 else cand[near[-1]]
    return out
