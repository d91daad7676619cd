"""Time and size of `imgtag eval --report` beyond the eval itself, and of a review sheet; README screenshots.

The eval's scores are cached once in an .npz (EvalArrays), so the report can be rebuilt without the model:

    python benchmarks/bench_report.py --scores /tmp/voc_val.npz            # runs the eval once if the npz is missing
    python benchmarks/bench_report.py --scores /tmp/voc_val.npz --screenshots docs/

Prints: eval seconds (when it ran), report build seconds (fresh folder: figures + thumbnails + HTML), a rebuild
into the same folder (thumbnails cached), the report's size in MB and file count; the same for a review sheet of
``--review-n`` photos whose records are made from the cached scores exactly as `imgtag tag` selects labels.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def folder_mb(d: Path) -> tuple[float, int]:
    files = [p for p in d.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6, len(files)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scores", required=True, help="EvalArrays .npz (made by running the eval when missing)")
    ap.add_argument("--model", default=None)
    ap.add_argument("--review-n", type=int, default=200)
    ap.add_argument("--out", default=None, help="keep the report and sheet here (default: a temp folder)")
    ap.add_argument("--screenshots", default=None, help="write docs PNGs (report + review sheet) into this folder")
    ap.add_argument("--photos", default=None, help="also time a sheet of every photo in this folder (random labels)")
    a = ap.parse_args()

    import numpy as np

    from imgtag.engine.metrics import evaluate_scores
    from imgtag.engine.report import EvalArrays, write_report
    from imgtag.engine.review import write_review

    npz = Path(a.scores)
    if not npz.exists():
        from imgtag.data import build_dataset
        from imgtag.runtime.tagger import Tagger

        t = Tagger(a.model, device="cpu", runtime="auto")
        ds = build_dataset("voc", str(ROOT.parent / "shared/data/VOCdevkit/VOC2007"), "val", difficult="ignore")
        targets, masks = ds.columns(t.labels)
        t0 = time.time()
        scores, errors = t.score_paths(ds.paths)
        print(f"eval (scoring {len(ds.paths)} images): {time.time() - t0:.1f} s, {len(errors)} failed")
        ok = ~np.isnan(scores).any(1)
        EvalArrays(scores[ok], targets[ok], masks[ok], [str(p) for p, k in zip(ds.paths, ok) if k],
                   t.labels, t.thresholds).save(npz)
    d = EvalArrays.load(npz)
    r = evaluate_scores(d.scores, d.targets, d.masks, thresholds=d.thresholds)
    result = {"model": a.model or "default", "dataset": "voc", "split": "val", "images": len(d.paths), "failed": [],
              "ap_mode": "nonint", "threshold": "per-class (model card)",
              **{k: float(r[k]) for k in ("mAP", "CP", "CR", "CF1", "OP", "OR", "OF1")},
              "per_class_ap": dict(zip(d.labels, r["AP"]))}
    base = Path(a.out) if a.out else Path(tempfile.mkdtemp(prefix="imgtag-bench-report-"))
    rep = base / "report"
    shutil.rmtree(rep, ignore_errors=True)
    t0 = time.time()
    index = write_report(rep, result, d)
    fresh = time.time() - t0
    t0 = time.time()
    write_report(rep, result, d)
    again = time.time() - t0
    mb, n = folder_mb(rep)
    print(f"report: {len(d.paths)} images x {len(d.labels)} labels: {fresh:.1f} s fresh, {again:.1f} s rebuilt "
          f"(thumbnails cached); {mb:.2f} MB in {n} files; {index}")

    # a review sheet from the same scores: labels >= threshold, best first (what `imgtag tag` writes)
    recs = []
    for i in range(min(a.review_n, len(d.paths))):
        s = d.scores[i]
        idx = [k for k in np.argsort(-s, kind="stable") if s[k] >= d.thresholds[k]]
        recs.append({"path": d.paths[i], "labels": [{"label": d.labels[k], "score": round(float(s[k]), 4)} for k in idx]})
    rev = base / "review"
    shutil.rmtree(rev, ignore_errors=True)
    t0 = time.time()
    sheet = write_review(recs, rev, keywords=list(d.labels), thresholds=dict(zip(d.labels, d.thresholds.tolist())))
    fresh = time.time() - t0
    mb, n = folder_mb(rev)
    print(f"review sheet: {sheet.photos} photos, {sheet.keywords} keywords, {sheet.pages} pages: {fresh:.1f} s; "
          f"{mb:.2f} MB in {n} files; {sheet.index}")

    if a.photos:  # thousands of photos: fresh, then again into the same folder (thumbnails cached)
        import random

        from imgtag.io.discover import iter_image_paths

        rng = random.Random(0)
        kws = ["animal", "dog", "bird", "vehicle", "food", "plant", "person", "building"]
        recs = [{"path": str(p), "labels": [{"label": k, "score": round(rng.uniform(0.3, 1), 4)}
                                             for k in rng.sample(kws, rng.randint(0, 3))]} for p in iter_image_paths([a.photos])]
        big = base / "review-big"
        shutil.rmtree(big, ignore_errors=True)
        for run in ("fresh", "rebuilt"):
            t0 = time.time()
            sheet = write_review(recs, big)
            mb, n = folder_mb(big)
            print(f"review sheet ({run}): {sheet.photos} photos, {sheet.keywords} keywords, {sheet.pages} pages: "
                  f"{time.time() - t0:.1f} s; {mb:.2f} MB in {n} files")

    if a.screenshots:
        from browser import Browser

        docs = Path(a.screenshots)
        docs.mkdir(parents=True, exist_ok=True)
        with Browser(1280, 900) as b:
            b.goto(index.as_uri())
            b.images_loaded()
            shots = [("report_top.png", None), ("report_cofiring.png", "cofiring"), ("report_examples.png", "examples")]
            for name, anchor in shots:
                if anchor:
                    b.eval(f"document.getElementById('{anchor}').scrollIntoView()")
                    time.sleep(0.3)
                b.screenshot(docs / name)
            page = max(rev.glob("kw*-1.html"), key=lambda p: p.stat().st_size)  # the biggest keyword page
            b.goto(page.as_uri())
            b.images_loaded()
            b.eval("""(() => { const cs = document.querySelectorAll('.card');
                cs[1].querySelector('button.wrong').click(); cs[0].querySelector('button.right').click();
                const i = cs[2].querySelector('.miss input'); i.value = 'dog'; cs[2].querySelector('button.add').click(); })()""")
            b.screenshot(docs / "review_sheet.png")
            b.eval("localStorage.clear()")
            if b.errors:
                print("browser errors:", b.errors)
        for name in ("report_top.png", "report_cofiring.png", "report_examples.png", "review_sheet.png"):
            _shrink(docs / name)
            print(f"{docs / name}: {(docs / name).stat().st_size / 1e3:.0f} kB")


def _shrink(p: Path) -> None:
    """Quantise a screenshot to 128 colours (docs PNGs stay well under 300 kB)."""
    from PIL import Image

    with Image.open(p) as im:
        small = im.convert("RGB").quantize(128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    small.save(p, optimize=True)


if __name__ == "__main__":
    main()
