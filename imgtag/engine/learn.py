"""``imgtag learn``: learn the user's own keywords from the photos they have already keyworded.

Pipeline (each step a function, so the benchmarks and tests can use them one by one):

1. :func:`collect` harvests the keywords (imgtag/io/keywords.py: sidecars, embedded XMP, IPTC) and turns them
   into labels, honestly for incomplete tagging:

   * a photo without any keyword is **unlabelled**: left out (not a negative, and its features are not even
     extracted);
   * a keyword absent from a keyworded photo is a **weak negative** with weight ``negative_weight``
     (default 0.3: people tag what they notice, not everything that is in the photo; in the VOC-simulated
     library 15 % of the true keywords are missing, see benchmarks/RESULTS.md), a keyword present is a positive
     with weight 1;
   * corrections from the review page (``--corrections FILE``, JSON Lines ``{"path", "keyword", "keyword_path",
     "verdict"}``): ``wrong`` is a **hard negative** (weight 1), ``missing`` and ``right`` are positives;
   * keywords with fewer than ``min_examples`` positive photos are listed as "not learnable yet".

2. :func:`photo_features` (imgtag/engine/features.py) gives each labelled photo's pooled backbone feature
   of the base model (the shipped default), from the content-keyed cache where possible.

3. :func:`fit_head` trains one linear layer on the standardised features (weighted BCE + the L2 of a C=1
   logistic regression, L-BFGS, 50 iterations: seconds). :func:`cross_validate` gives out-of-fold scores for every photo (k folds),
   from which each keyword gets its average precision and a **threshold calibrated to a precision target**
   (:func:`precision_threshold`). A keyword that cannot reach the target gets threshold 2.0 (never suggested)
   and is reported. Weak negatives count as negatives here, so the measured precision is a lower bound when
   the user's tagging is incomplete.

4. The final head is trained on all photos and saved as a model (safetensors + card): the base model's backbone
   with a ``pooled`` head (or a ``stack`` of the base head and it, ``with_default``), so ``imgtag tag --model
   NAME`` runs one backbone pass and emits the user's keywords, each with its own hierarchy path (card.paths).
"""
from __future__ import annotations

import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from imgtag.io.keywords import SEP, PhotoKeywords, harvest, orphan_sidecars

CORRECTION_VERDICTS = ("wrong", "missing", "right")


@dataclass
class LearnConfig:
    out: str
    min_examples: int = 8
    precision: float = 0.9
    keywords: list[str] = field(default_factory=list)
    exclude_keywords: list[str] = field(default_factory=list)
    negative_weight: float = 0.3
    corrections: str | None = None
    folds: int = 5
    steps: int = 50  # L-BFGS iterations
    lr: float = 1.0
    weight_decay: float = 0.0
    base_model: str | None = None
    with_default: bool = False
    embedded: bool = True
    runtime: str = "auto"  # feature extraction: auto (ONNX Runtime on a CPU) | onnx | torch
    workers: int | None = None  # decode processes (None: 1 beside ONNX Runtime)
    hold_out: bool = False  # learn from the library's "train" split only (imgtag/data/library.py)
    seed: int = 0


@dataclass
class Labels:
    photos: list[Path]  # the labelled photos
    keywords: list[str]  # learnable keyword paths (columns)
    targets: np.ndarray  # N×K float32 1/0
    weights: np.ndarray  # N×K float32: 1 positive / hard negative, negative_weight weak negative, 0 unknown
    counts: dict[str, int]  # positives per keyword path, every keyword seen
    not_learnable: dict[str, int]  # keyword -> positives, below min_examples
    unlabelled: int  # photos without any keyword (left out)
    problems: list[str]


def _match(k: str, patterns) -> bool:
    """A keyword path matches a pattern equal (case-insensitively) to it, to its leaf, or to one of its
    ancestors' paths (so excluding "Family" excludes "Family|Kids|Mia")."""
    kl = k.lower()
    for p in patterns:
        pl = p.lower().replace("/", SEP) if SEP not in p and "/" in p else p.lower()
        if kl == pl or kl.rsplit(SEP, 1)[-1] == pl or kl.startswith(pl + SEP):
            return True
    return False


def read_corrections(path: str | Path, problems: list[str]) -> dict[str, dict[str, str]]:
    """{abs photo path: {keyword path: verdict}} from a review-page corrections file (JSON Lines); bad lines are
    reported and skipped. Relative photo paths are relative to the file's folder. A later line wins."""
    path = Path(path)
    out: dict[str, dict[str, str]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot read corrections ({e})") from e
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            verdict = d["verdict"]
            kw = d.get("keyword_path") or d["keyword"]
            photo = d["path"]
            if verdict not in CORRECTION_VERDICTS or not isinstance(kw, str) or not isinstance(photo, str):
                raise ValueError(f"verdict must be one of {', '.join(CORRECTION_VERDICTS)}")
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{path}:{n}: bad correction line ({e}): skipped")
            continue
        p = Path(photo)
        p = p if p.is_absolute() else path.parent / p
        out.setdefault(os.path.abspath(p), {})[kw.replace("/", SEP) if SEP not in kw else kw] = verdict
    return out


def collect(inputs, cfg: LearnConfig, recursive: bool = True) -> Labels:
    """Harvest keywords under ``inputs`` and build the label matrices (see the module docstring)."""
    from imgtag.io.discover import iter_image_paths

    problems: list[str] = []
    for p in inputs:  # a missing argument is a usage error; problems inside the folders are one line each
        if not os.path.lexists(p):
            raise FileNotFoundError(f"no such file or directory: {p}")
    paths = all_paths = list(iter_image_paths(inputs, recursive=recursive,
                                              on_error=lambda p, why: problems.append(f"{p}: {why}")))
    if cfg.hold_out:
        from imgtag.data.library import in_split

        paths = [p for p in paths if in_split(p, "train")]
    photos = harvest(paths, problems, embedded=cfg.embedded)

    problems += [f"{sc}: sidecar without a photo next to it: skipped"
                 for sc in orphan_sidecars(inputs, all_paths, recursive)]
    corr = read_corrections(cfg.corrections, problems) if cfg.corrections else {}
    rows: list[tuple[Path, set[str], dict[str, str]]] = []
    unlabelled = 0
    seen = set()
    for ph in photos:
        key = os.path.abspath(ph.path)
        seen.add(key)
        c = corr.get(key, {})
        if not ph.keywords and not c:
            unlabelled += 1
            continue
        rows.append((ph.path, set(ph.keywords), c))
    for key, c in corr.items():  # corrected photos that were not among the inputs' keyworded photos
        if key not in seen and Path(key).is_file():
            rows.append((Path(key), set(), c))
    counts: Counter = Counter()
    for _, kws, c in rows:
        pos = (kws - {k for k, v in c.items() if v == "wrong"}) | {k for k, v in c.items() if v != "wrong"}
        counts.update(pos)
    chosen = [k for k in sorted(counts) if (not cfg.keywords or _match(k, cfg.keywords))
              and not _match(k, cfg.exclude_keywords)]
    learnable = [k for k in chosen if counts[k] >= cfg.min_examples]
    not_learnable = {k: counts[k] for k in chosen if counts[k] < cfg.min_examples}
    col = {k: j for j, k in enumerate(learnable)}
    n, K = len(rows), len(learnable)
    Y = np.zeros((n, K), np.float32)
    W = np.zeros((n, K), np.float32)
    for i, (_, kws, c) in enumerate(rows):
        if kws:  # a keyworded photo: every learnable keyword is known, absent ones weakly
            W[i] = cfg.negative_weight
        for k in kws:
            if k in col:
                Y[i, col[k]], W[i, col[k]] = 1, 1
        for k, v in c.items():
            if k in col:
                Y[i, col[k]], W[i, col[k]] = (0.0 if v == "wrong" else 1.0), 1.0
    keep = W.sum(1) > 0
    return Labels([r[0] for r, m in zip(rows, keep) if m], learnable, Y[keep], W[keep], dict(counts),
                  not_learnable, unlabelled, problems)


# ----------------------------------------------------------------------------- head training and calibration


def fit_head(X: np.ndarray, Y: np.ndarray, W: np.ndarray, steps: int = 50, lr: float = 1.0,
             weight_decay: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A linear layer on the features: returns ``(weight K×D, bias K)`` acting on the raw features (the
    standardisation used in training is folded in). Weighted BCE, averaged per keyword over its counted photos."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small full-batch steps: one thread is as fast, and far faster on a busy machine
    try:
        return _fit_head(X, Y, W, steps, lr, weight_decay, seed)
    finally:
        torch.set_num_threads(threads)


def _fit_head(X, Y, W, steps, lr, weight_decay, seed):
    # L-BFGS on the convex objective (weighted BCE + L2): converges in tens of iterations where Adam needed
    # hundreds of steps, to the same optimum whatever the seed, so the cross-validation heads and the final head
    # are fitted alike (the calibration learned on the first holds for the second). ``steps``: its iterations.
    x = torch.from_numpy(np.ascontiguousarray(X, np.float32))
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-4)
    z = (x - mu) / sd
    y, w = torch.from_numpy(np.ascontiguousarray(Y, np.float32)), torch.from_numpy(np.ascontiguousarray(W, np.float32))
    D, K = z.shape[1], y.shape[1]
    wt = torch.zeros(K, D, requires_grad=True)
    prior = ((y * w).sum(0) / w.sum(0).clamp_min(1e-6)).clamp(1e-3, 1 - 1e-3)
    b = torch.log(prior / (1 - prior)).clone().requires_grad_(True)
    denom = w.sum(0).clamp_min(1e-6)
    # L2 as in a C=1 logistic regression (0.5 ||w||^2 / n, times ``weight_decay`` when set): keeps the logits finite
    # on separable keywords
    l2 = 0.5 * (weight_decay or 1.0) / len(z)
    opt = torch.optim.LBFGS([wt, b], lr=lr, max_iter=steps, history_size=10, line_search_fn="strong_wolfe",
                            tolerance_grad=1e-6, tolerance_change=1e-10)

    def closure():
        opt.zero_grad()
        loss = (torch.nn.functional.binary_cross_entropy_with_logits(z @ wt.T + b, y, reduction="none") * w).sum(0)
        loss = (loss / denom).mean() + l2 * (wt ** 2).sum(1).mean()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        w_raw = wt / sd
        b_raw = b - (w_raw * mu).sum(1)
    return w_raw.numpy(), b_raw.numpy()


def logits_of(X: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    wt, b = head
    return X @ wt.T + b


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))  # no overflow warnings for large |z|


def scores_of(X: np.ndarray, head: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return sigmoid(logits_of(X, head))


def cross_validate(X, Y, W, folds: int = 5, seed: int = 0, **kw) -> np.ndarray:
    """Out-of-fold logits (N×K): each photo scored by a head trained on the other folds."""
    n = len(X)
    folds = max(2, min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    out = np.zeros(Y.shape, np.float32)
    for f in range(folds):
        test = order[f::folds]
        train = np.setdiff1d(order, test)
        out[test] = logits_of(X[test], fit_head(X[train], Y[train], W[train], seed=seed, **kw))
    return out


def platt(z: np.ndarray, pos: np.ndarray, iters: int = 100) -> tuple[float, float]:
    """Platt scaling: ``(a, c)`` with ``P(keyword) = sigmoid(a·z + c)`` fitted on held-out logits ``z`` by Newton's
    method, with Platt's smoothed targets ((N₊+1)/(N₊+2) and 1/(N₋+2)), so a keyword the head separates perfectly
    gets a finite slope instead of probabilities of exactly 0 and 1 (Lin, Lin & Weng 2007). ``a`` is kept > 0:
    calibration never reverses the ranking."""
    z = np.asarray(z, np.float64)
    pos = np.asarray(pos, bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    t = np.where(pos, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    a, c = 1.0, float(np.log((n1 + 1) / (n0 + 1)))

    def loss(a, c):
        f = a * z + c
        return float(np.sum(np.logaddexp(0, f) - t * f))

    cur = loss(a, c)
    for _ in range(iters):
        p = sigmoid(a * z + c)
        g, d = p - t, p * (1 - p) + 1e-12
        grad = np.array([np.sum(g * z), np.sum(g)])
        H = np.array([[np.sum(d * z * z), np.sum(d * z)], [np.sum(d * z), np.sum(d)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(H, grad)
        lr = 1.0
        while lr >= 1e-10:  # backtracking (Armijo): Newton on a nearly separable set can overshoot
            na, nc = a - lr * step[0], c - lr * step[1]
            new = loss(na, nc)
            if new <= cur - 1e-4 * lr * float(grad @ step):
                break
            lr /= 2
        if lr < 1e-10:
            break
        a, c = na, nc
        done = cur - new < 1e-10 * max(1.0, abs(cur))
        cur = new
        if done:
            break
    a = max(float(a), 1e-3)
    return a, float(c)


NEVER = 2.0  # the threshold of a keyword that cannot reach the precision target: a probability never reaches it
MIN_SUPPORT = 5  # a threshold's precision must be measured on at least this many suggested photos


MIN_PROBABILITY = 0.5  # a suggestion at the threshold must be at least as likely right as wrong (calibrated)


def precision_threshold(scores: np.ndarray, pos: np.ndarray, target: float, min_support: int = MIN_SUPPORT,
                        floor: float = MIN_PROBABILITY) -> dict:
    """The lowest threshold whose suggestions (score ≥ threshold) have precision ≥ ``target``, measured on at
    least ``min(min_support, positives)`` suggested photos (a precision seen on two photos is no evidence), and
    not below ``floor`` (scores are calibrated probabilities: at the threshold a suggestion is at least as likely
    right as wrong); ``{"threshold", "precision", "recall", "suggested", "reached"}``. The cut lies half way
    between two neighbouring scores, in logit space. Unreachable: threshold :data:`NEVER` and the best precision
    seen with that support."""
    o = np.argsort(-scores, kind="stable")
    s, p = np.asarray(scores, np.float64)[o], np.asarray(pos, bool)[o]
    tp = np.cumsum(p)
    k = np.arange(1, len(s) + 1)
    prec = tp / k
    npos = max(int(p.sum()), 1)
    # a cut between two equal scores is no cut: only the last index of each run of ties counts; and no cut below
    # the floor: where a keyword's held-out scores leave a wide empty gap (a backbone that has seen these very
    # photos separates them perfectly), the cumulative rule alone would put the threshold deep in the gap, where
    # new photos' suggestions are mostly wrong (VOC-simulated library: val precision 0.71 on the worst keyword)
    valid = np.append(s[1:] < s[:-1], True) & (k >= min(min_support, npos)) & (s >= floor)
    ok = np.flatnonzero(valid & (prec >= target))
    if len(ok) == 0:
        best = float(prec[valid].max()) if valid.any() else 0.0
        return {"threshold": NEVER, "precision": best, "recall": 0.0, "suggested": 0, "reached": False}
    i = ok[-1]
    lo = s[i + 1] if i + 1 < len(s) else s[i] - 1e-3
    zi, zl = _logit(s[i]), _logit(lo)
    thr = float(sigmoid(np.float64((zi + zl) / 2))) if i + 1 < len(s) else float(sigmoid(zi - 0.05))
    thr = max(thr, floor)
    return {"threshold": thr, "precision": float(prec[i]), "recall": float(tp[i] / npos), "suggested": int(k[i]),
            "reached": True}


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-12), 1 - 1e-12)
    return float(np.log(p / (1 - p)))


def calibrate(oof_logits: np.ndarray, labels: Labels, target: float,
              min_support: int = MIN_SUPPORT) -> tuple[list[dict], np.ndarray]:
    """Per keyword, from the out-of-fold logits: Platt scaling (:func:`platt`), then the threshold on the calibrated
    probabilities that reaches the precision ``target`` (:func:`precision_threshold`), with the AP, precision
    and recall there. Every photo whose label is known counts, weak negatives as negatives: with incomplete
    tagging the precision is a lower bound. Returns ``(table rows, platt K×2)``."""
    from imgtag.engine.metrics import average_precision

    known = labels.weights > 0
    pos = (labels.targets > 0.5) & known
    ap = average_precision(oof_logits, labels.targets, known)
    rows, ab = [], np.zeros((len(labels.keywords), 2), np.float64)
    for j, k in enumerate(labels.keywords):
        m = known[:, j]
        a, c = platt(oof_logits[m, j], pos[m, j])
        ab[j] = a, c
        t = precision_threshold(sigmoid(a * oof_logits[m, j].astype(np.float64) + c), pos[m, j], target, min_support)
        rows.append({"keyword": k, "photos": int(pos[:, j].sum()), "ap": round(100 * float(ap[j]), 2),
                     "threshold": round(t["threshold"], 4), "precision": round(t["precision"], 4),
                     "recall": round(t["recall"], 4), "suggested": t["suggested"], "reached": t["reached"]})
    return rows, ab


def keyword_table(oof_logits: np.ndarray, labels: Labels, target: float) -> list[dict]:
    """Per keyword: photos, AP (out-of-fold), calibrated threshold, precision and recall there (:func:`calibrate`)."""
    return calibrate(oof_logits, labels, target)[0]


def apply_platt(head: tuple[np.ndarray, np.ndarray], ab: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fold the Platt scaling into the linear head: its sigmoid outputs are then the calibrated probabilities the
    thresholds were chosen on."""
    wt, b = head
    a, c = ab[:, 0].astype(np.float32), ab[:, 1].astype(np.float32)
    return wt * a[:, None], b * a + c


# ----------------------------------------------------------------------------- the model file


USER_HEAD = "user"


def user_vocabulary(keywords: list[str], thresholds: list[float], base: list[dict] = ()) -> list[dict]:
    """The vocabulary keywords of a learned model: ``base`` (the base model's keywords, with_default) and the user's
    keyword paths, column j of the "user" head each, with their parents (a parent the user never used as a keyword
    gets no class: it is emitted only as the path of a keyword below it). A user path equal to a base keyword's
    path is that keyword (it gains the user class). A name must be unique: the leaf, or the whole path where
    another keyword already has that leaf as its name."""
    out = [dict(k, classes=dict(k.get("classes", {})), thresholds=dict(k.get("thresholds", {}))) for k in base]
    by_path = {k["path"]: k for k in out}
    names = {k["name"] for k in out}
    leaves = Counter(p.rsplit(SEP, 1)[-1] for p in keywords)

    def ensure(path: str) -> dict:
        if path in by_path:
            return by_path[path]
        if SEP in path:
            ensure(path.rsplit(SEP, 1)[0])
        leaf = path.rsplit(SEP, 1)[-1]
        name = leaf if leaf not in names and leaves.get(leaf, 0) <= 1 else path
        k = {"name": name, "path": path, "classes": {}, "thresholds": {}}
        out.append(k)
        by_path[path] = k
        names.add(name)
        return k

    for j, (path, t) in sorted(enumerate(zip(keywords, thresholds)), key=lambda x: x[1][0]):
        k = ensure(path)
        k["classes"].setdefault(USER_HEAD, []).append(j)
        k["thresholds"][USER_HEAD] = float(t)
    return out


def _base_reference(bcard) -> str:
    """How the learned card names its base: by name when the name finds the same file (a shipped or models-folder
    model: survives moving the user's files and reinstalling), else by absolute path."""
    from imgtag.card import ModelFileError, resolve_model

    src = Path(bcard.source).resolve()
    try:
        if resolve_model(src.stem)[1].resolve() == src:
            return src.stem
    except ModelFileError:
        pass
    return str(src)


def save_learned(cfg: LearnConfig, keywords: list[str], head: tuple[np.ndarray, np.ndarray], thresholds: list[float],
                 table: list[dict], recipe: dict) -> tuple[Path, Path]:
    """Write the learned model: the base model's card plus a "user" head (a linear layer on the avg+max pooled
    backbone map, the features it was trained on), one backbone pass for both. The safetensors holds only that
    head; the card names the base model (``base``: name + weights sha256), whose weights load_model merges in.
    The vocabulary holds the user's keywords with their paths (and, ``with_default``, the base's labels or
    vocabulary too); the base's first head stays the card's ``labels``/``thresholds`` (eval of the base task)."""
    import dataclasses

    from imgtag.card import save_model
    from imgtag.models.model import MultiLabelModel, load_model

    _, bcard = load_model(cfg.base_model)
    wt, b = head
    K = len(keywords)
    arch = dict(bcard.architecture)
    if any(h.get("name") == USER_HEAD for h in arch.get("extra_heads", [])):
        raise ValueError(f"{bcard.name} already has a {USER_HEAD!r} head: learn from a shipped model")
    arch["extra_heads"] = [*arch.get("extra_heads", []), {"name": USER_HEAD, "size": K, "pool": "avg+max"}]
    first = (bcard.heads or [{"name": "base"}])[0]["name"]
    heads = [dict(h) for h in bcard.heads] if bcard.heads else [{"name": first, "size": bcard.num_classes,
                                                                  "activation": "sigmoid"}]
    heads.append({"name": USER_HEAD, "size": K, "activation": "sigmoid"})
    base_kw: list[dict] = []
    if cfg.with_default:
        if bcard.vocabulary:
            base_kw = list(bcard.vocabulary.get("keywords", []))
        else:  # a flat base model: its labels as top-level keywords of its first head
            paths = bcard.paths or bcard.labels
            base_kw = [{"name": lab, "path": pth, "classes": {first: [i]}, "thresholds": {first: float(t)}}
                       for i, (lab, pth, t) in enumerate(zip(bcard.labels, paths, bcard.class_thresholds()))]
            base_kw = user_vocabulary([], [], base_kw)  # (no parents needed for flat labels)
    vocab = user_vocabulary(list(keywords), list(thresholds), base_kw)
    net = MultiLabelModel(arch, bcard.num_classes, pretrained=None)
    lin = net.extra_heads[USER_HEAD]
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(wt, np.float32)))
        lin.bias.copy_(torch.from_numpy(np.ascontiguousarray(b, np.float32)))
    stem = output_stem(cfg.out)
    card = dataclasses.replace(
        bcard, name=stem.name, architecture=arch, heads=heads,
        vocabulary={"separator": SEP, "keywords": vocab}, base={"model": _base_reference(bcard),
                                                                "weights_sha256": bcard.weights_sha256},
        recipe=recipe, metrics={"keywords": table, "precision_target": cfg.precision,
                                 "below_target": [r["keyword"] for r in table if not r.get("reached", True)],
                                 "base": bcard.metrics},
        thresholds_by_precision={k: v for k, v in bcard.thresholds_by_precision.items()},
        cpu_precision="fp32",  # the base's int8 graph does not have the user head
        description=f"learned by `imgtag learn` from the user's keyworded photos: {K} keywords on the backbone "
                    f"of {bcard.name}" + (" (with its own keywords)" if cfg.with_default else ""))

    class Head(torch.nn.Module):  # what the file holds: only the user head, under its name in the full model
        def __init__(self):
            super().__init__()
            self.extra_heads = torch.nn.ModuleDict({USER_HEAD: lin})

    return save_model(Head(), card, stem)


def output_stem(out: str | Path) -> Path:
    """Where ``--out`` saves the model (``STEM.json`` + ``STEM.safetensors``): a bare NAME goes to imgtag's user
    models folder, anything else is a path (a ``.json``/``.safetensors`` suffix is dropped)."""
    out = Path(out)
    if len(out.parts) == 1 and out.suffix == "":
        from imgtag.card import user_models_dir

        return user_models_dir() / out.name
    return out.with_suffix("") if out.suffix in (".json", ".safetensors") else out


def check_out(out: str | Path) -> None:
    """``--out`` can be written: its folder is made if missing (as saving would) and takes a new file. Checked
    before the long harvest + feature extraction, so a bad path fails at once naming the user's path, not after
    minutes of work. Raises io.writers.OutputError."""
    from imgtag.io.writers import OutputError, check_output, reason_of

    card = output_stem(out).with_suffix(".json")
    try:
        card.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(card, reason_of(e)) from None
    check_output(card)


def read_learned(model: str | Path) -> tuple[list[str], tuple[np.ndarray, np.ndarray], list[float], list[dict]]:
    """``(keyword paths, (weight, bias) on the pooled features, thresholds, the card's keyword table)`` of a model
    `imgtag learn` saved: what the benchmarks score cached features with (no backbone pass)."""
    from imgtag.card import read_card, read_weights

    cpath = Path(model).with_suffix(".json")
    card = read_card(cpath)
    sd = read_weights(cpath.with_suffix(".safetensors"))
    table = list((card.metrics or {}).get("keywords", []))
    keywords = [r["keyword"] for r in table]
    col = {}
    for k in card.vocabulary["keywords"]:
        for j in k.get("classes", {}).get(USER_HEAD, []):
            col[j] = (k["path"], k["thresholds"][USER_HEAD])
    assert [col[j][0] for j in range(len(col))] == keywords, "card table and user head disagree"
    wt = sd[f"extra_heads.{USER_HEAD}.weight"].float().numpy()
    b = sd[f"extra_heads.{USER_HEAD}.bias"].float().numpy()
    return keywords, (wt, b), [col[j][1] for j in range(len(col))], table


# ----------------------------------------------------------------------------- the command


def run_learn(inputs, cfg: LearnConfig, recursive: bool = True, progress: bool = True, log=None,
              extractor=None) -> dict:
    """Learn and save; returns a summary dict (see the CLI for how it is printed). ``extractor``: a
    FeatureExtractor of ``cfg.base_model`` to reuse (benchmarks)."""
    from imgtag.data.library import SPLIT_RULE
    from imgtag.engine.features import FeatureExtractor, photo_features

    log = log or (lambda s: None)
    check_out(cfg.out)
    t0 = time.perf_counter()
    labels = collect(inputs, cfg, recursive)
    for p in labels.problems:
        log(p)
    t_harvest = time.perf_counter() - t0
    summary = {"folds": cfg.folds, "photos_labelled": len(labels.photos), "photos_unlabelled": labels.unlabelled,
               "keywords": labels.keywords, "not_learnable": labels.not_learnable, "problems": len(labels.problems),
               "harvest_s": round(t_harvest, 2)}
    if not labels.keywords:
        summary["error"] = (f"nothing to learn: no keyword has {cfg.min_examples} or more photos "
                            f"({len(labels.photos)} keyworded photos)")
        return summary
    ex = extractor or FeatureExtractor(cfg.base_model, runtime=cfg.runtime)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(labels.photos), desc="features", unit="photo", leave=False, dynamic_ncols=True)
    X, ok, st = photo_features(labels.photos, ex, workers=cfg.workers, progress=bar.update if bar else None, on_error=log)
    if bar:
        bar.close()
    X, Y, W = X[ok], labels.targets[ok], labels.weights[ok]
    t1 = time.perf_counter()
    kw = dict(steps=cfg.steps, lr=cfg.lr, weight_decay=cfg.weight_decay)
    oof = cross_validate(X, Y, W, cfg.folds, cfg.seed, **kw)
    lab_ok = Labels([p for p, o in zip(labels.photos, ok) if o], labels.keywords, Y, W, labels.counts,
                    labels.not_learnable, labels.unlabelled, labels.problems)
    table, ab = calibrate(oof, lab_ok, cfg.precision)
    head = apply_platt(fit_head(X, Y, W, seed=cfg.seed, **kw), ab)
    t_fit = time.perf_counter() - t1
    recipe = {"command": "imgtag learn", "base_model": ex.card.name, "base_weights_sha256": ex.weights_sha256,
              "photos": int(ok.sum()), "unlabelled_photos": labels.unlabelled, "min_examples": cfg.min_examples,
              "negative_weight": cfg.negative_weight, "folds": cfg.folds, "steps": cfg.steps, "lr": cfg.lr,
              "weight_decay": cfg.weight_decay, "feature": "avg+max pooled backbone features",
              "not_learnable": labels.not_learnable, "with_default": cfg.with_default,
              "corrections": bool(cfg.corrections),
              "held_out": {"split": "test", "rule": SPLIT_RULE} if cfg.hold_out else None}
    wpath, cpath = save_learned(cfg, labels.keywords, head, [r["threshold"] for r in table], table, recipe)
    summary.update(table=table, model=str(cpath.with_suffix("")), runtime=ex.runtime,
                   features={k: (round(v, 2) if isinstance(v, float) else v) for k, v in st.items()},
                   fit_s=round(t_fit, 2), total_s=round(time.perf_counter() - t0, 2))
    return summary
