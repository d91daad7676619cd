"""A simulated photo library from VOC2007 for `imgtag learn`: keyworded like real people do, learned, measured.

The library (built in a temp folder; VOC itself is never written): every VOC2007 `train` image as a symlink, its
VOC labels as keywords, with realistic incompleteness:

* 30 % of the photos have no keywords at all (chosen by a hash of the image id);
* 15 % of each photo's keywords are dropped (seeded);
* keywords are hierarchical (`Animals|Pets|dog`, `Vehicles|car`, ...) except `person` and `bottle` (flat);
* styles: exiftool/Lightroom sidecars `photo.jpg.xmp` (dc:subject + lr:hierarchicalSubject), digiKam sidecars
  `photo.xmp` (digiKam:TagsList + dc:subject), and a few copies with the keywords embedded by exiftool
  (XMP in the JPEG, or IPTC Keywords only);
* a personal concept none of the built-in labels has: `Hobbies|Riding` on photos with a horse and a person.

100 keyworded train photos are held back; ``add`` puts them in as JPEG copies with the keywords embedded by
exiftool (new bytes: a re-learn must extract them). Steps (``imgtag learn`` itself runs from the shell, timed):

    python benchmarks/learn_voc.py build --lib L/library
    /usr/bin/time -v imgtag learn L/library --out L/voc-learned.json         # the first learn
    python benchmarks/learn_voc.py add --lib L/library
    /usr/bin/time -v imgtag learn L/library --out L/voc-learned.json         # the re-learn (+100 photos)
    python benchmarks/learn_voc.py measure --lib L/library --model L/voc-learned.json --json out.json

``measure`` scores VOC2007 `val` (full VOC labels, difficult ignored) with the learned head: mAP, CP/CR at the
calibrated thresholds, per keyword the precision/recall cross-validation promised vs what val gives, the riding
concept's precision at its threshold, and a few-shot curve (5/10/25/50 photos per keyword). Features come from
the content-keyed cache ($IMGTAG_CACHE); ``timing-library`` writes the 5,008-photo library (all of trainval,
every photo keyworded) for the from-scratch timing.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

VOC = Path(os.environ.get("IMGTAG_VOC_ROOT", Path(__file__).resolve().parents[2] / "shared/data/VOCdevkit/VOC2007"))
PATHS = {"aeroplane": "Vehicles|aeroplane", "bicycle": "Vehicles|bicycle", "bird": "Animals|bird",
         "boat": "Vehicles|boat", "bottle": "bottle", "bus": "Vehicles|bus", "car": "Vehicles|car",
         "cat": "Animals|Pets|cat", "chair": "Home|chair", "cow": "Animals|Farm|cow",
         "diningtable": "Home|dining table", "dog": "Animals|Pets|dog", "horse": "Animals|Farm|horse",
         "motorbike": "Vehicles|motorbike", "person": "person", "pottedplant": "Home|potted plant",
         "sheep": "Animals|Farm|sheep", "sofa": "Home|sofa", "train": "Vehicles|train", "tvmonitor": "Home|tv"}
RIDING = "Hobbies|Riding"


def h(s: str, salt: str = "") -> int:
    return int(hashlib.sha1((salt + s).encode()).hexdigest(), 16) % 100


def untagged(i: str) -> bool:
    return h(i) < 30


def voc_labels(split: str):
    from imgtag.data.voc import VOCDataset

    ds = VOCDataset(VOC, split, difficult="ignore")
    ids = [Path(p).stem for p in ds.paths]
    return ds, ids


def keywords_of(target, mask, classes, rng, drop: float = 0.15) -> list[str]:
    present = [c for c, t, m in zip(classes, target, mask) if t > 0.5 and m]
    kws = [PATHS[c] for c in present]
    if "horse" in present and "person" in present:
        kws.append(RIDING)
    return [k for k in kws if rng.random() >= drop]


def xmp(subject, hier=(), tags=()) -> str:
    def bag(tag, items, kind="Bag"):
        if not items:
            return ""
        return f"  <{tag}>\n   <rdf:{kind}>\n" + "".join(f"    <rdf:li>{i}</rdf:li>\n" for i in items) \
            + f"   </rdf:{kind}>\n  </{tag}>\n"

    return ("<?xpacket begin='\ufeff' id='W5M0MpCehiHzreSzNTczkc9d'?>\n<x:xmpmeta xmlns:x='adobe:ns:meta/'>\n"
            "<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\n <rdf:Description rdf:about=''\n"
            "  xmlns:dc='http://purl.org/dc/elements/1.1/'\n  xmlns:lr='http://ns.adobe.com/lightroom/1.0/'\n"
            "  xmlns:digiKam='http://www.digikam.org/ns/1.0/'>\n"
            + bag("dc:subject", subject) + bag("lr:hierarchicalSubject", hier) + bag("digiKam:TagsList", tags, "Seq")
            + " </rdf:Description>\n</rdf:RDF>\n</x:xmpmeta>\n<?xpacket end='w'?>\n")


def build_library(lib: Path, ids, ds, embedded: int = 40, seed: int = 0, untagged_ok: bool = True) -> dict:
    """Write the simulated library for the images ``ids`` (indices into ds) into ``lib``; returns counts.
    ``untagged_ok=False``: every photo keeps its keywords (the timing library: 5,000 photos to learn from)."""
    rng = np.random.default_rng(seed)
    lib.mkdir(parents=True, exist_ok=True)
    exif_args: list[str] = []
    counts = {"photos": 0, "untagged": 0, "exiftool_sidecar": 0, "digikam_sidecar": 0, "embedded_xmp": 0,
              "embedded_iptc": 0}
    n_emb = 0
    for i in ids:
        src = Path(ds.paths[i])
        name = src.stem
        kws = [] if untagged_ok and untagged(name) else keywords_of(ds.targets[i].numpy(), ds.masks[i].numpy(), ds.classes, rng,
                                                                 drop=0.15 if untagged_ok else 0.0)
        dst = lib / src.name
        counts["photos"] += 1
        if not kws:
            counts["untagged"] += 1
            os.symlink(src, dst)
            continue
        leaves = [k.rsplit("|", 1)[-1] for k in kws]
        style = h(name, "style")
        if n_emb < embedded and style < 6:  # a copy with the keywords inside the file (new bytes: new features)
            shutil.copyfile(src, dst)
            n_emb += 1
            if style < 3:
                exif_args += ["-overwrite_original", "-q", *[f"-XMP-dc:Subject={s}" for s in leaves],
                              *[f"-XMP-lr:HierarchicalSubject={k}" for k in kws if "|" in k], str(dst), "-execute"]
                counts["embedded_xmp"] += 1
            else:  # IPTC only, flat keywords (UTF-8 declared), resolved to the library's paths by imgtag
                exif_args += ["-overwrite_original", "-q", "-IPTC:CodedCharacterSet=UTF8",
                              *[f"-IPTC:Keywords={s}" for s in leaves], str(dst), "-execute"]
                counts["embedded_iptc"] += 1
            continue
        os.symlink(src, dst)
        if style < 55:
            (lib / f"{src.name}.xmp").write_text(xmp(leaves + [lv for k in kws for lv in k.split("|")[:-1]],
                                                      [k for k in kws if "|" in k]), "utf-8")
            counts["exiftool_sidecar"] += 1
        else:
            (lib / f"{name}.xmp").write_text(xmp(leaves, tags=[k.replace("|", "/") for k in kws]), "utf-8")
            counts["digikam_sidecar"] += 1
    if exif_args:
        argfile = lib.parent / f"{lib.name}.exiftool-args"
        argfile.write_text("\n".join(exif_args) + "\n", "utf-8")
        subprocess.run(["exiftool", "-@", str(argfile)], check=True, stdout=subprocess.DEVNULL)
        argfile.unlink()
    return counts


_EX = []


def extractor():
    from imgtag.engine.features import FeatureExtractor

    if not _EX:
        _EX.append(FeatureExtractor())
    return _EX[0]


def evaluate_head(head, keywords, thresholds, Xv, tv, mv, classes) -> dict:
    from imgtag.engine.learn import scores_of
    from imgtag.engine.metrics import evaluate_scores

    s = scores_of(Xv, head)
    cols = [keywords.index(PATHS[c]) if PATHS[c] in keywords else None for c in classes]
    have = [j for j, c in enumerate(cols) if c is not None]
    S = s[:, [cols[j] for j in have]]
    r = evaluate_scores(S, tv[:, have], mv[:, have], thresholds=np.array([thresholds[cols[j]] for j in have]))
    return {"mAP": r["mAP"], "CP": r["CP"], "CR": r["CR"], "CF1": r["CF1"], "OP": r["OP"], "OR": r["OR"],
            "classes": len(have), "AP": {classes[j]: round(a, 2) for j, a in zip(have, r["AP"])}}


def lib_split(base: Path):
    """The first library's photos and the 100 held back for the re-learn (indices into VOC train)."""
    dtr, ids_tr = voc_labels("train")
    tagged = [i for i in range(len(ids_tr)) if not untagged(ids_tr[i])]
    extra = tagged[-100:]
    first = [i for i in range(len(ids_tr)) if i not in set(extra)]
    return dtr, ids_tr, first, extra


def add_embedded(lib: Path, idx, ds, seed: int = 1) -> dict:
    """The re-learn's 100 new photos: copies with their keywords written INTO the JPEG by exiftool (XMP dc:subject
    + lr:hierarchicalSubject), as Lightroom does on "save metadata to file": new bytes, so not in the cache."""
    rng = np.random.default_rng(seed)
    args, n = [], 0
    for i in idx:
        src = Path(ds.paths[i])
        kws = keywords_of(ds.targets[i].numpy(), ds.masks[i].numpy(), ds.classes, rng)
        if not kws:
            continue
        dst = lib / f"new_{src.name}"
        shutil.copyfile(src, dst)
        args += ["-overwrite_original", "-q", *[f"-XMP-dc:Subject={k.rsplit('|', 1)[-1]}" for k in kws],
                 *[f"-XMP-lr:HierarchicalSubject={k}" for k in kws if "|" in k], str(dst), "-execute"]
        n += 1
    argfile = lib.parent / "add.exiftool-args"
    argfile.write_text("\n".join(args) + "\n", "utf-8")
    subprocess.run(["exiftool", "-@", str(argfile)], check=True, stdout=subprocess.DEVNULL)
    argfile.unlink()
    return {"new_photos": n}


def measure(lib: Path, model: str, folds: int = 5, cached_only: bool = False, few_shot: bool = True) -> dict:
    """The learned model on VOC2007 val; the riding concept; CV vs val per keyword; the few-shot curve."""
    from imgtag.engine.features import photo_features
    from imgtag.engine.learn import (Labels, LearnConfig, apply_platt, calibrate, collect, cross_validate,
                                     fit_head, read_learned, scores_of)
    from imgtag.engine.metrics import average_precision

    dva, ids_va = voc_labels("val")
    keywords, head, thresholds, table = read_learned(model)
    vpaths = list(dva.paths)
    if cached_only:  # a busy machine: only the val photos whose features are cached (said in the output)
        from imgtag.card import sha256_file

        store = extractor().store()
        vpaths = [p if store.get(sha256_file(p)) is not None else None for p in vpaths]
    keep = [i for i, p in enumerate(vpaths) if p is not None]
    Xk, okk, _ = photo_features([vpaths[i] for i in keep], extractor())
    Xv = np.zeros((len(vpaths), Xk.shape[1]), np.float32)
    okv = np.zeros(len(vpaths), bool)
    Xv[keep], okv[keep] = Xk, okk
    va_idx = np.flatnonzero(okv)
    Xv = Xv[okv]
    tv, mv = dva.targets.numpy()[va_idx], dva.masks.numpy()[va_idx]
    res: dict = {"val_images": int(len(va_idx)), "model": model}
    res["val"] = evaluate_head(head, keywords, thresholds, Xv, tv, mv, dva.classes)
    # per keyword: what cross-validation promised vs what val gives, at the calibrated threshold
    sv = scores_of(Xv, head)
    per = []
    for row in table:
        k = row["keyword"]
        j = keywords.index(k)
        if k == RIDING:
            ci = [dva.classes.index("horse"), dva.classes.index("person")]
            truth, known = (tv[:, ci] > 0.5).all(1), np.ones(len(tv), bool)
        else:
            c = next((c for c, pth in PATHS.items() if pth == k), None)
            if c is None:
                continue
            truth, known = tv[:, dva.classes.index(c)] > 0.5, mv[:, dva.classes.index(c)] > 0
        pred = (sv[:, j] >= thresholds[j]) & known
        tp = int((pred & truth).sum())
        per.append({"keyword": k, "train_photos": row["photos"], "cv_ap": row["ap"], "threshold": thresholds[j],
                    "reached": row["reached"], "cv_precision": row["precision"], "cv_recall": row["recall"],
                    "val_positives": int((truth & known).sum()), "val_suggested": int(pred.sum()),
                    "val_precision": round(tp / max(int(pred.sum()), 1), 4) if pred.any() else None,
                    "val_recall": round(tp / max(int((truth & known).sum()), 1), 4),
                    "val_ap": round(100 * float(average_precision(sv[known, j][:, None],
                                                                  truth[known][:, None].astype(float))[0]), 2)})
    res["per_keyword"] = per
    res["riding"] = next(p for p in per if p["keyword"] == RIDING)
    ci = [dva.classes.index("horse"), dva.classes.index("person")]
    j = keywords.index(RIDING)
    res["riding"]["horse_without_person_suggested"] = int(
        ((sv[:, j] >= thresholds[j]) & (tv[:, ci[0]] > 0.5) & ~(tv[:, ci[1]] > 0.5)).sum())
    reached = [p for p in per if p["reached"] and p["val_precision"] is not None]
    res["val_at_thresholds"] = {
        "keywords_reaching_target_in_cv": sum(p["reached"] for p in per), "keywords": len(per),
        "mean_val_precision": round(float(np.mean([p["val_precision"] for p in reached])), 4),
        "mean_val_recall": round(float(np.mean([p["val_recall"] for p in reached])), 4),
        "keywords_val_precision_ge_0.85": sum(p["val_precision"] >= 0.85 for p in reached)}
    # few-shot: n positive photos per keyword (the others' labels for it unknown), learned and measured the same way
    if not few_shot:
        return res
    labels = collect([lib], LearnConfig(out="x", min_examples=2))
    X, ok, _ = photo_features(labels.photos, extractor())
    Y, W, X = labels.targets[ok], labels.weights[ok], X[ok]
    rng = np.random.default_rng(0)
    res["few_shot"] = {}
    for n in (5, 10, 25, 50):
        Wn = W.copy()
        for j in range(Y.shape[1]):
            p = np.flatnonzero(Y[:, j] > 0.5)
            if len(p) > n:
                Wn[rng.choice(p, len(p) - n, replace=False), j] = 0
        keep = Wn.sum(1) > 0
        f = min(folds, n)
        oof = cross_validate(X[keep], Y[keep], Wn[keep], folds=f)
        lab = Labels([], labels.keywords, Y[keep] * (Wn[keep] > 0), Wn[keep], {}, {}, 0, [])
        tab, ab = calibrate(oof, lab, 0.9)
        hd = apply_platt(fit_head(X[keep], Y[keep], Wn[keep]), ab)
        ev = evaluate_head(hd, labels.keywords, [r["threshold"] for r in tab], Xv, tv, mv, dva.classes)
        res["few_shot"][n] = {k: ev[k] for k in ("mAP", "CP", "CR", "classes")} | {
            "folds": f, "keywords_reaching_0.9": sum(r["reached"] for r in tab if r["keyword"] in
                                                    set(PATHS.values()) | {RIDING})}
        print(f"few-shot {n}: {res['few_shot'][n]}", file=sys.stderr)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["build", "add", "measure", "timing-library"])
    ap.add_argument("--lib", required=True, help="the library folder (written by build/add; VOC is never written)")
    ap.add_argument("--model", default="", help="measure: the learned model (json)")
    ap.add_argument("--json", default="")
    ap.add_argument("--embedded", type=int, default=40)
    ap.add_argument("--cached-only", action="store_true", help="measure: only val photos whose features are cached")
    ap.add_argument("--no-few-shot", action="store_true")
    a = ap.parse_args()
    lib = Path(a.lib)
    if a.step == "timing-library":  # all of VOC2007 trainval (5,011 photos), every photo keyworded, sidecars only
        for split in ("train", "val"):
            ds, ids = voc_labels(split)
            print(f"{split}: {build_library(lib, range(len(ids)), ds, embedded=0, untagged_ok=False)}",
                  file=sys.stderr)
        return
    dtr, ids_tr, first, extra = lib_split(lib)
    if a.step == "build":
        res = build_library(lib, first, dtr, embedded=a.embedded)
    elif a.step == "add":
        res = add_embedded(lib, extra, dtr)
    else:
        res = measure(lib, a.model, cached_only=a.cached_only, few_shot=not a.no_few_shot)
    out = json.dumps(res, indent=1, default=float)
    if a.json:
        Path(a.json).write_text(out)
    print(out)


if __name__ == "__main__":
    main()
