"""``imgtag eval --report DIR``: the evaluation as one HTML page with figures (PNG) and thumbnails beside it.

DIR/index.html needs no server and no network: it shows

* a precision–recall curve per class with the card's threshold as the operating point (``pr_curves*.png``);
* AP per class as a sorted bar chart (``ap_per_class.png``);
* label co-occurrence and false co-firing: for each pair, how often class B fires wrongly on images that
  hold class A (``cofiring.png``), with the worst pairs as a table;
* a CF1/OF1 (and CP/CR/OP/OR) sweep over one global threshold, against the card's per-class thresholds
  (``threshold_sweep.png``);
* per class, thumbnails of the most confident false positives and of the most confident misses
  (``thumbs/``, cached by image content).

The report is built from the arrays the evaluation already computed (:class:`EvalArrays`) and never changes
the metrics dict it is given: the numbers on the page are the printed ones. Plots use matplotlib (Agg),
imported here only, so ``imgtag --help`` stays fast; install it with ``pip install 'imgtag[report]'``.
"""
from __future__ import annotations

import html
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template

import numpy as np

from imgtag.engine.metrics import threshold_metrics
from imgtag.io.atomic import atomic_open
from imgtag.io.thumbs import make_thumbnails

PR_PER_FIGURE = 40  # classes per PR-curve grid image
SWEEP = np.round(np.arange(0.02, 0.99, 0.01), 2)


class ReportUnavailable(RuntimeError):
    """matplotlib is not installed; str() is the one-line install hint."""


def _figure(w: float, h: float, margins: tuple[float, float, float, float] = (0.6, 0.2, 0.5, 0.35), **space):
    """A Figure w×h inches with fixed margins (left, right, bottom, top, in inches): constrained layout would
    cost more than the drawing itself."""
    try:
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ReportUnavailable("the HTML report needs matplotlib: pip install 'imgtag[report]'") from e
    fig = Figure(figsize=(w, h), dpi=100)
    left, right, bottom, top = margins
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, **space)
    return fig


@dataclass
class EvalArrays:
    """What an evaluation scored: rows are the images that decoded, columns the model's labels."""

    scores: np.ndarray      # N×K float, sigmoid scores
    targets: np.ndarray     # N×K bool, positive
    masks: np.ndarray       # N×K bool, counted (False: ignored, e.g. VOC difficult)
    paths: list[str]        # N image paths
    labels: list[str]       # K
    thresholds: np.ndarray  # K, the operating thresholds used for CP/CR/F1

    def __post_init__(self):
        self.scores = np.asarray(self.scores, np.float64)
        self.targets = np.asarray(self.targets) > 0.5
        self.masks = np.asarray(self.masks, bool)
        self.thresholds = np.broadcast_to(np.asarray(self.thresholds, np.float64), (len(self.labels),)).copy()
        self.paths = [str(p) for p in self.paths]
        n, k = len(self.paths), len(self.labels)
        for name in ("scores", "targets", "masks"):
            if getattr(self, name).shape != (n, k):
                raise ValueError(f"{name} {getattr(self, name).shape} does not match {n} images x {k} labels")

    def save(self, path: str | Path) -> Path:
        """An .npz (no pickle: strings are stored as unicode arrays)."""
        with atomic_open(path, "wb") as f:
            np.savez_compressed(f, scores=self.scores.astype(np.float32), targets=self.targets, masks=self.masks,
                                paths=np.array(self.paths, dtype=str), labels=np.array(self.labels, dtype=str),
                                thresholds=self.thresholds)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "EvalArrays":
        with np.load(path, allow_pickle=False) as z:
            return cls(z["scores"], z["targets"], z["masks"], z["paths"].tolist(), z["labels"].tolist(), z["thresholds"])


# ----------------------------------------------------------------------------- numbers behind the figures

def pr_curve(score: np.ndarray, pos: np.ndarray, max_points: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) along the ranking by descending score, thinned to about ``max_points`` points."""
    order = np.argsort(-score, kind="stable")
    hits = pos[order]
    tp = np.cumsum(hits)
    n = np.arange(1, len(hits) + 1)
    rec, prec = tp / max(int(pos.sum()), 1), tp / n
    if len(rec) > max_points:
        keep = np.unique(np.r_[np.linspace(0, len(rec) - 1, max_points).astype(int), np.flatnonzero(hits)[:: max(1, int(hits.sum()) // max_points)]])
        rec, prec = rec[keep], prec[keep]
    return np.r_[0.0, rec], np.r_[prec[0] if len(prec) else 1.0, prec]


def per_class_stats(d: EvalArrays) -> list[dict]:
    """Per class at its operating threshold: positives, TP, FP, FN, precision, recall, F1, AP (non-interpolated)."""
    out = []
    for k, lab in enumerate(d.labels):
        m = d.masks[:, k]
        s, p = d.scores[m, k], d.targets[m, k]
        pred = s >= d.thresholds[k]
        tp, fp, fn = int((pred & p).sum()), int((pred & ~p).sum()), int((~pred & p).sum())
        prec = tp / max(tp + fp, 1)
        rec = tp / max(tp + fn, 1) if p.any() else float("nan")
        if p.any():
            order = np.argsort(-s, kind="stable")
            hits = p[order]
            ap = float((np.cumsum(hits) / np.arange(1, len(hits) + 1))[hits].mean())
        else:
            ap = float("nan")
        out.append({"label": lab, "positives": int(p.sum()), "tp": tp, "fp": fp, "fn": fn, "precision": prec,
                    "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec > 0 else 0.0, "ap": ap,
                    "threshold": float(d.thresholds[k])})
    return out


def cofiring(d: EvalArrays) -> tuple[np.ndarray, np.ndarray]:
    """(co-occurrence, false co-firing), both K×K counts of images.

    ``cooc[a, b]``: images holding both a and b. ``false[a, b]``: images that hold a and on which b fires
    although b is absent (b's false positives, attributed to each class present in the image).
    """
    present = (d.targets & d.masks).astype(np.int64)
    fp = ((d.scores >= d.thresholds) & ~d.targets & d.masks).astype(np.int64)
    cooc = present.T @ present
    np.fill_diagonal(cooc, 0)
    return cooc, present.T @ fp


def threshold_sweep(d: EvalArrays, grid: np.ndarray = SWEEP) -> dict[str, np.ndarray]:
    rows = [threshold_metrics(d.scores, d.targets, d.masks, float(t)) for t in grid]
    return {k: np.array([r[k] for r in rows]) for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")}


def hardest_examples(d: EvalArrays, k: int, n: int) -> tuple[list[int], list[int]]:
    """Row indices of class k's ``n`` most confident false positives (highest-scoring negatives at or above
    the threshold) and ``n`` most confident misses (lowest-scoring positives below it)."""
    m, s, p = d.masks[:, k], d.scores[:, k], d.targets[:, k]
    fp = np.flatnonzero(m & ~p & (s >= d.thresholds[k]))
    fn = np.flatnonzero(m & p & (s < d.thresholds[k]))
    return (fp[np.argsort(-s[fp], kind="stable")][:n].tolist(), fn[np.argsort(s[fn], kind="stable")][:n].tolist())


# ----------------------------------------------------------------------------- figures

def _save(fig, path: Path) -> str:
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path.name


def plot_pr_curves(d: EvalArrays, stats: list[dict], out: Path) -> list[str]:
    names = []
    K = len(d.labels)
    for part, start in enumerate(range(0, K, PR_PER_FIGURE)):
        ks = list(range(start, min(K, start + PR_PER_FIGURE)))
        cols = min(5, len(ks))
        rows = math.ceil(len(ks) / cols)
        fig = _figure(2.4 * cols, 2.2 * rows, (0.55, 0.1, 0.45, 0.3), wspace=0.12, hspace=0.35)
        axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
        for ax in axes.flat[len(ks):]:
            ax.set_axis_off()
        for ax, k in zip(axes.flat, ks):
            m = d.masks[:, k]
            st = stats[k]
            if st["positives"]:
                rec, prec = pr_curve(d.scores[m, k], d.targets[m, k])
                ax.plot(rec, prec, lw=1.2, color="#1f77b4")
                ax.plot([st["recall"]], [st["precision"]], "o", ms=5, color="#d62728")
                ax.annotate(f"t={st['threshold']:.2f}", (st["recall"], st["precision"]), fontsize=7,
                            xytext=(-4, -10), textcoords="offset points", ha="right", color="#d62728")
            ax.set_title(f"{d.labels[k]}  AP {100 * st['ap']:.1f}" if st["positives"] else f"{d.labels[k]}  (no positives)", fontsize=9)
            ax.set_xlim(0, 1.02)
            ax.set_ylim(0, 1.03)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=7, labelbottom=True)
        for c in range(cols):  # under the lowest plot of each column
            axes[(len(ks) - 1 - c) // cols if c > (len(ks) - 1) % cols else rows - 1, c].set_xlabel("recall", fontsize=8)
        for ax in axes[:, 0]:
            ax.set_ylabel("precision", fontsize=8)
        names.append(_save(fig, out / (f"pr_curves_{part + 1}.png" if K > PR_PER_FIGURE else "pr_curves.png")))
    return names


def plot_ap_bars(stats: list[dict], mAP: float, out: Path, ap_mode: str = "nonint") -> str:
    st = sorted((s for s in stats if s["positives"]), key=lambda s: s["ap"])
    width = max(len(s["label"]) for s in st) * 0.075 + 0.3 if st else 1
    fig = _figure(6.5, 1.0 + 0.2 * len(st), (width, 0.2, 0.5, 0.1))
    ax = fig.add_subplot()
    ap = [100 * s["ap"] for s in st]
    ax.barh(range(len(st)), ap, color=["#d62728" if a < mAP else "#1f77b4" for a in ap], height=0.7)
    ax.set_yticks(range(len(st)), [s["label"] for s in st], fontsize=8 if len(st) <= 40 else 6)
    ax.axvline(mAP, color="k", ls="--", lw=1)
    ax.text(mAP, len(st) - 0.4, f" mAP {mAP:.2f}", fontsize=8, va="bottom")
    ax.set_xlim(min(ap + [mAP]) - 5 if ap else 0, 100)
    ax.set_xlabel(f"AP ({ap_mode}); red: below mAP", fontsize=8)
    ax.set_ylim(-0.6, len(st) - 0.4 + 0.8)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out / "ap_per_class.png")


def plot_cofiring(d: EvalArrays, cooc: np.ndarray, false: np.ndarray, out: Path, max_classes: int = 40) -> str:
    K = len(d.labels)
    ks = np.arange(K)
    if K > max_classes:  # the classes most involved in false co-firing
        ks = np.sort(np.argsort(-(false.sum(0) + false.sum(1)), kind="stable")[:max_classes])
    names = [d.labels[k] for k in ks]
    n = len(ks)
    width = max(len(x) for x in names) * 0.075 + 0.3
    side = max(2.8, 0.22 * n)
    fig = _figure(2 * (side + width) + 0.6, side + width + 0.5, (width, 0.2, width, 0.4), wspace=(width + 0.4) / side)
    for i, (mat, title, cmap) in enumerate(((cooc, "co-occurrence\n(images holding both)", "Blues"),
                                            (false, "false co-firing: column fires\nwrongly on images holding row", "Reds"))):
        ax = fig.add_subplot(1, 2, i + 1)
        sub = mat[np.ix_(ks, ks)]
        ax.imshow(sub, cmap=cmap, interpolation="nearest")
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        ax.set_title(title, fontsize=9)
        if n <= 25:
            top = sub.max() or 1
            for a in range(n):
                for b in range(n):
                    if sub[a, b]:
                        ax.text(b, a, str(int(sub[a, b])), ha="center", va="center", fontsize=5.5,
                                color="white" if sub[a, b] > 0.6 * top else "black")
    return _save(fig, out / "cofiring.png")


def plot_sweep(sweep: dict, at_card: dict, out: Path) -> str:
    fig = _figure(7, 3.8, (0.6, 0.15, 0.5, 0.15))
    ax = fig.add_subplot()
    style = {"CF1": ("#1f77b4", "-", 2), "OF1": ("#d62728", "-", 2), "CP": ("#1f77b4", ":", 1), "CR": ("#1f77b4", "--", 1),
             "OP": ("#d62728", ":", 1), "OR": ("#d62728", "--", 1)}
    for key, (c, ls, lw) in style.items():
        ax.plot(SWEEP, sweep[key], color=c, ls=ls, lw=lw, label=key)
    for key in ("CF1", "OF1"):
        best = int(np.argmax(sweep[key]))
        ax.plot([SWEEP[best]], [sweep[key][best]], "o", color=style[key][0], ms=5)
        ax.annotate(f"best {sweep[key][best]:.1f} @ {SWEEP[best]:.2f}", (SWEEP[best], sweep[key][best]), fontsize=7,
                    xytext=(4, 6), textcoords="offset points", color=style[key][0])
        ax.axhline(at_card[key], color=style[key][0], lw=0.8, alpha=0.6)
        x, ha = (0.015, "left") if key == "CF1" else (0.985, "right")
        ax.text(x, at_card[key], f"{key} {at_card[key]:.1f} (per-class thresholds)", fontsize=7, ha=ha,
                va="bottom", color=style[key][0], transform=ax.get_yaxis_transform())
    ax.set_xlabel("one global threshold")
    ax.set_ylabel("%")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=6, loc="lower center")
    return _save(fig, out / "threshold_sweep.png")


# ----------------------------------------------------------------------------- the page

def _template(name: str) -> Template:
    from importlib.resources import files

    return Template(files("imgtag").joinpath("templates", name).read_text(encoding="utf-8"))


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _fmt(x: float, scale: float = 100) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{scale * x:.1f}"


def write_report(out_dir: str | Path, result: dict, data: EvalArrays, examples: int = 6, thumb_size: int = 128,
                 errors: list[str] | None = None) -> Path:
    """Write DIR/index.html with its PNG figures and thumbnails; returns the page's path.

    ``result`` is the metrics dict of :func:`imgtag.engine.evaluate.evaluate` (read only); ``data`` the arrays
    it was computed from. Thumbnails that cannot be made are left out and noted in ``errors``.
    """
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stats = per_class_stats(data)
    printed = result.get("per_class_ap") or {}
    for st in stats:  # the page shows the printed AP (whatever --ap mode), not a recomputation
        if st["label"] in printed:
            st["ap"] = float(printed[st["label"]]) / 100
    cooc, false = cofiring(data)
    sweep = threshold_sweep(data)
    at_card = {k: float(result[k]) for k in ("CF1", "OF1")}
    figs = {"pr": plot_pr_curves(data, stats, out), "ap": plot_ap_bars(stats, float(result["mAP"]), out, str(result.get("ap_mode", "nonint"))),
            "co": plot_cofiring(data, cooc, false, out), "sweep": plot_sweep(sweep, at_card, out)}

    hard = [hardest_examples(data, k, examples) for k in range(len(data.labels))]
    rows_needed = sorted({i for fp, fn in hard for i in fp + fn})
    thumbs = make_thumbnails([data.paths[i] for i in rows_needed], out / "thumbs", thumb_size, errors=errors)

    def labels_of(i: int, which: str) -> str:
        if which == "true":
            labs = [data.labels[k] for k in np.flatnonzero(data.targets[i] & data.masks[i])]
        else:
            labs = [data.labels[k] for k in np.flatnonzero(data.scores[i] >= data.thresholds)]
        return ", ".join(labs) or "nothing"

    def tiles(rows: list[int], k: int, kind: str) -> str:
        if not rows:
            return '<p class="none">none</p>'
        parts = []
        for i in rows:
            name = thumbs.get(data.paths[i])
            img = (f'<img src="thumbs/{name}" alt="{_e(Path(data.paths[i]).name)}" loading="lazy">' if name
                   else '<div class="nothumb">no thumbnail</div>')
            note = f"holds: {labels_of(i, 'true')}" if kind == "fp" else f"tagged: {labels_of(i, 'pred')}"
            parts.append(f'<figure class="tile {kind}" title="{_e(data.paths[i])}">{img}<figcaption>'
                         f'<b>{data.scores[i, k]:.2f}</b> {_e(Path(data.paths[i]).name)}<br><span>{_e(note)}</span>'
                         f'</figcaption></figure>')
        return "".join(parts)

    class_rows, sections = [], []
    for k, st in sorted(enumerate(stats), key=lambda kv: (math.isnan(kv[1]["ap"]), kv[1]["ap"])):
        lab = _e(st["label"])
        class_rows.append(
            f'<tr><td><a href="#c{k}">{lab}</a></td><td>{_fmt(st["ap"])}</td><td>{st["threshold"]:.2f}</td>'
            f'<td>{_fmt(st["precision"])}</td><td>{_fmt(st["recall"])}</td><td>{_fmt(st["f1"])}</td>'
            f'<td>{st["positives"]}</td><td>{st["fp"]}</td><td>{st["fn"]}</td></tr>')
        fp, fn = hard[k]
        sections.append(
            f'<section class="cls" id="c{k}"><h3>{lab} <small>AP {_fmt(st["ap"])} · threshold {st["threshold"]:.2f} · '
            f'{st["fp"]} false positives · {st["fn"]} misses</small></h3>'
            f'<h4>most confident false positives (score ≥ threshold, {lab} absent)</h4><div class="tiles">{tiles(fp, k, "fp")}</div>'
            f'<h4>most confident misses ({lab} present, score &lt; threshold)</h4><div class="tiles">{tiles(fn, k, "fn")}</div></section>')

    pairs = [(int(false[a, b]), a, b) for a in range(len(data.labels)) for b in range(len(data.labels)) if false[a, b]]
    pairs.sort(key=lambda t: -t[0])
    own_fp = {k: stats[k]["fp"] for k in range(len(stats))}
    pair_rows = "".join(
        f"<tr><td>{_e(data.labels[b])}</td><td>{_e(data.labels[a])}</td><td>{n}</td>"
        f"<td>{100 * n / max(own_fp[b], 1):.0f} %</td></tr>" for n, a, b in pairs[:15]) or '<tr><td colspan="4">none</td></tr>'

    metric_keys = ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")
    metrics = "".join(f"<th>{k}</th>" for k in metric_keys)
    values = "".join(f"<td>{float(result[k]):.2f}</td>" for k in metric_keys)
    page = _template("report.html").substitute(
        title=_e(f"{result.get('model', '?')} on {result.get('dataset', '?')}:{result.get('split', '?')}"),
        images=int(result.get("images", len(data.paths))), ap_mode=_e(result.get("ap_mode", "nonint")),
        threshold=_e(result.get("threshold", "per-class (model card)")), failed=len(result.get("failed", []) or []),
        metric_heads=metrics, metric_values=values,
        pr_figs="".join(f'<img class="fig" src="{n}" alt="precision-recall curves">' for n in figs["pr"]),
        ap_fig=figs["ap"], co_fig=figs["co"], sweep_fig=figs["sweep"],
        best_cf1=f"{sweep['CF1'].max():.2f} at {SWEEP[int(np.argmax(sweep['CF1']))]:.2f}",
        best_of1=f"{sweep['OF1'].max():.2f} at {SWEEP[int(np.argmax(sweep['OF1']))]:.2f}",
        pair_rows=pair_rows, class_rows="".join(class_rows), sections="".join(sections), examples=examples,
        generated=_e(time.strftime("%Y-%m-%d %H:%M:%S %Z")), seconds=f"{time.time() - t0:.1f}",
        data_json=json.dumps({"labels": data.labels, "images": len(data.paths)}).replace("</", "<\\/"),
    )
    index = out / "index.html"
    with atomic_open(index, "w") as f:
        f.write(page)
    return index
