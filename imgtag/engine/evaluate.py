"""``imgtag eval``: score a model on a labelled dataset with the metrics papers report.

Protocol (documented choices; see engine/metrics.py): non-interpolated AP by default
(``ap_mode="11point"`` for the VOC2007 devkit, ``"interp"`` for Q2L's all-point interpolated AP), VOC
'difficult' entries ignored, CP/CR/CF1/OP/OR/OF1 at the model card's per-class thresholds (or a fixed
threshold) with CF1 = harmonic mean of CP and CR. Images that fail to decode are reported and left out.
"""
from __future__ import annotations

import numpy as np

from imgtag.data import build_dataset
from imgtag.engine.metrics import evaluate_scores
from imgtag.runtime.tagger import Tagger


def user_columns(card) -> tuple[list[str], list[int], list[float]] | None:
    """``(keyword paths, logits columns, thresholds)`` of a card's "user" head (a model from `imgtag learn`), in
    the head's column order, or None."""
    heads = card.heads or []
    if not card.vocabulary or not any(h["name"] == "user" for h in heads):
        return None
    start = 0
    for h in heads:
        if h["name"] == "user":
            break
        start += int(h["size"])
    col = {}
    for k in card.vocabulary["keywords"]:
        for j in k.get("classes", {}).get("user", []):
            col[j] = (k["path"], float(k.get("thresholds", {}).get("user", np.inf)))
    order = sorted(col)
    return [col[j][0] for j in order], [start + j for j in order], [col[j][1] for j in order]


def _user_scores(tagger: Tagger, paths, cols: list[int]) -> tuple[np.ndarray, list[str]]:
    """Sigmoid of the user head's logits (N×M; NaN rows for files that failed) and the error lines."""
    scores = np.full((len(paths), len(cols)), np.nan, np.float32)
    errors = []
    for i, p in enumerate(tagger.tag_paths(paths)):
        if p.error:
            errors.append(p.error)
        else:
            scores[i] = 1 / (1 + np.exp(-np.clip(np.asarray(p.logits)[cols], -60, 60)))
    return scores, errors


def evaluate(tagger: Tagger, dataset: str, root: str, split: str, ap_mode: str = "nonint",
             threshold: float | None = None, limit: int = 0, return_arrays: bool = False, **dataset_kw):
    """The metrics dict; with ``return_arrays`` also the scored arrays (:class:`~imgtag.engine.report.EvalArrays`,
    the images that decoded) that ``imgtag eval --report`` draws from: ``(metrics, arrays)``."""
    ds = build_dataset(dataset, root, split, **dataset_kw)
    if limit:
        ds = ds.subset(range(min(limit, len(ds))))
    names, cols = list(tagger.labels), None
    note = user = None
    if dataset == "library":  # the user's keywords: matched by their paths, on the keywords both sides know
        from imgtag.data.library import SPLIT_RULE, held_out_note

        note = held_out_note(getattr(tagger.card, "recipe", None), split)
        user = user_columns(tagger.card)
        if user is not None:  # a model from `imgtag learn`: its "user" head's keywords
            names, user_cols, user_thr = user
        else:
            names = list(getattr(tagger.card, "paths", None) or tagger.labels)
        cols = [j for j, k in enumerate(names) if k in set(ds.classes)]
        if not cols:
            raise ValueError(f"none of the model's keywords is in the library ({', '.join(names[:5])}, ...)")
        names = [names[j] for j in cols]
    else:
        missing = set(names) ^ set(ds.classes)
        if missing:
            raise ValueError(f"model labels and {dataset} classes differ: {', '.join(sorted(missing)[:8])}")
    targets, masks = ds.columns(names)
    if dataset == "library" and user is not None:
        scores, errors = _user_scores(tagger, ds.paths, user_cols)
        thr = np.full(len(user_cols), threshold) if threshold is not None else np.asarray(user_thr)
    else:
        scores, errors = tagger.score_paths(ds.paths)
        thr = np.full(len(tagger.labels), threshold) if threshold is not None else np.asarray(tagger.thresholds)
    if cols is not None:
        scores, thr = scores[:, cols], thr[cols]
        errors = list(getattr(ds, "problems", [])) + list(errors)
    ok = ~np.isnan(scores).any(1)
    r = evaluate_scores(scores[ok], targets[ok], masks[ok], thresholds=thr, ap_mode=ap_mode)
    result = {
        "model": tagger.card.name, "dataset": dataset, "split": split, "images": int(ok.sum()), "failed": errors,
        "ap_mode": ap_mode, "threshold": "per-class (model card)" if threshold is None else threshold,
        **{k: float(r[k]) for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")},
        "per_class_ap": {lab: float(a) for lab, a in zip(names, r["AP"])},
    }
    if dataset == "library":
        result["split_rule"] = SPLIT_RULE
        if note:
            result["warning"] = note
    if not return_arrays:
        return result
    from imgtag.engine.report import EvalArrays

    kept = [str(p) for p, good in zip(ds.paths, ok) if good]
    return result, EvalArrays(scores[ok], targets[ok], masks[ok], kept, names, thr)  # names: the columns scored
