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

Then `imgtag learn` runs on it (features from the content-keyed cache: extract once with
``IMGTAG_CACHE=... python benchmarks/learn_voc.py extract``), and the learned head is measured on VOC2007 `val`
with the full VOC labels (difficult ignored): mAP, CP/CR at the calibrated thresholds, the riding concept's
precision at its threshold; plus a few-shot curve (5/10/25/50 photos per keyword) and an incremental re-learn
(+100 photos). Only images whose features are cached are used when ``--cached-only`` (a busy machine).

    IMGTAG_CACHE=/tmp/learn-cache python benchmarks/learn_voc.py run --cached-only --json out.json
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
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


def cached_mask(paths) -> np.ndarray:
    from imgtag.engine.features import file_sha256

    store = extractor().store()
    return np.array([store.get(file_sha256(p)) is not None for p in paths])


def val_features(ds, idx):
    from imgtag.engine.features import photo_features

    X, ok, st = photo_features([ds.paths[i] for i in idx], extractor())
    return X, ok


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("step", choices=["run", "build", "timing-library"])
    ap.add_argument("--cached-only", action="store_true", help="use only images whose features are cached")
    ap.add_argument("--lib", default="", help="library folder (default: a temp folder, removed after)")
    ap.add_argument("--json", default="")
    ap.add_argument("--embedded", type=int, default=40)
    a = ap.parse_args()

    from imgtag.engine.learn import (LearnConfig, collect, cross_validate, fit_head, keyword_table, run_learn,
                                     scores_of)
    from imgtag.engine.features import FeatureExtractor, photo_features

    if a.step == "timing-library":  # all of VOC2007 trainval (5,011 photos), every photo keyworded, sidecars only
        lib = Path(a.lib)
        for split in ("train", "val"):
            ds, ids = voc_labels(split)
            print(f"{split}: {build_library(lib, range(len(ids)), ds, embedded=0, untagged_ok=False)}",
                  file=sys.stderr)
        return
    t = time.perf_counter()
    extractor()
    t_model = time.perf_counter() - t
    dtr, ids_tr = voc_labels("train")
    dva, ids_va = voc_labels("val")
    tr = [i for i in range(len(ids_tr)) if untagged(ids_tr[i])] + [i for i in range(len(ids_tr)) if not untagged(ids_tr[i])]
    va = list(range(len(ids_va)))
    if a.cached_only:
        cm = cached_mask([dtr.paths[i] for i in range(len(ids_tr))])
        tagged_cached = [i for i in range(len(ids_tr)) if not untagged(ids_tr[i]) and cm[i]]
        n_untag = int(round(len(tagged_cached) * 0.3 / 0.7))
        tr = [i for i in range(len(ids_tr)) if untagged(ids_tr[i])][:n_untag] + tagged_cached
        cv = cached_mask([dva.paths[i] for i in va])
        va = [i for i in va if cv[i]]
    # +100 photos for the incremental re-learn: held back from the first learn
    extra = [i for i in tr if not untagged(ids_tr[i])][-100:]
    first = [i for i in tr if i not in set(extra)]
    base = Path(a.lib) if a.lib else Path(tempfile.mkdtemp(prefix="voclib-"))
    lib = base / "library"
    counts = build_library(lib, sorted(first), dtr, embedded=a.embedded)
    print(f"library: {counts}", file=sys.stderr)
    if a.step == "build":
        return
    models = base / "models"
    cfg = LearnConfig(out=str(models / "voc-learned"))
    print(f"extractor ready ({extractor().runtime})", file=sys.stderr, flush=True)
    t = time.perf_counter()
    s1 = run_learn([lib], cfg, progress=False, log=lambda s: print("  " + s, file=sys.stderr), extractor=extractor())
    t_first = time.perf_counter() - t
    print(f"learn: {t_first:.1f} s, features {s1['features']}", file=sys.stderr)
    # incremental: 100 more keyworded photos
    c2 = build_library(lib, sorted(extra), dtr, embedded=0, seed=1)
    t = time.perf_counter()
    s2 = run_learn([lib], cfg, progress=False, log=lambda s: None, extractor=extractor())
    t_incr = time.perf_counter() - t
    print(f"re-learn +{c2['photos']}: {t_incr:.1f} s, features {s2['features']}", file=sys.stderr)

    from imgtag.card import read_card, read_weights

    card = read_card(Path(s2["model"]).with_suffix(".json"))
    sd = read_weights(Path(s2["model"]).with_suffix(".safetensors"))
    head = (sd["head.fc.weight"].numpy(), sd["head.fc.bias"].numpy())
    Xv, okv = val_features(dva, va)
    va_idx = np.array(va)[okv]
    Xv = Xv[okv]
    tv, mv = dva.targets.numpy()[va_idx], dva.masks.numpy()[va_idx]
    res = {"library": counts, "incremental_photos": c2["photos"], "val_images": int(len(va_idx)),
           "model_load_s": round(t_model, 1), "learn_s": round(t_first, 1), "features_first": s1["features"], "relearn_s": round(t_incr, 1),
           "features_relearn": s2["features"], "photos_labelled": s2["photos_labelled"],
           "photos_unlabelled": s2["photos_unlabelled"], "table": s2["table"]}
    res["val"] = evaluate_head(head, card.paths, card.thresholds, Xv, tv, mv, dva.classes)
    # the riding concept on val: horse and person present
    ci = [dva.classes.index("horse"), dva.classes.index("person")]
    riding = (tv[:, ci] > 0.5).all(1)
    j = card.paths.index(RIDING)
    sj = scores_of(Xv, head)[:, j]
    pred = sj >= card.thresholds[j]
    from imgtag.engine.metrics import average_precision

    row = next(r for r in s2["table"] if r["keyword"] == RIDING)
    res["riding"] = {"train_photos": row["photos"], "threshold": card.thresholds[j],
                     "val_positives": int(riding.sum()), "val_predicted": int(pred.sum()),
                     "val_precision": float((pred & riding).sum() / max(pred.sum(), 1)),
                     "val_recall": float((pred & riding).sum() / max(riding.sum(), 1)),
                     "val_AP": 100 * float(average_precision(sj[:, None], riding[:, None].astype(float))[0]),
                     "horse_without_person_predicted": int((pred & (tv[:, ci[0]] > 0.5) & ~riding).sum())}
    # the shipped model on the same val images, when the report helper's cached scores exist
    rep = Path("/tmp/rep/voc_val_scores.npz")
    if rep.exists():
        from imgtag.engine.metrics import evaluate_scores

        z = np.load(rep)
        pos = {Path(p).stem: n for n, p in enumerate(z["paths"])}
        rows = [pos[Path(dva.paths[i]).stem] for i in va_idx]
        r = evaluate_scores(z["scores"][rows], z["targets"][rows], z["masks"][rows], thresholds=z["thresholds"])
        res["shipped_same_val"] = {k: r[k] for k in ("mAP", "CP", "CR", "CF1")}
    # few-shot: n positive photos per keyword (the others' positives unknown), learned and measured the same way
    labels = collect([lib], LearnConfig(out="x", min_examples=2))
    X, ok, _ = photo_features(labels.photos, extractor())
    Y, W = labels.targets[ok], labels.weights[ok]
    X = X[ok]
    rng = np.random.default_rng(0)
    res["few_shot"] = {}
    for n in (5, 10, 25, 50):
        Wn = W.copy()
        for j in range(Y.shape[1]):
            p = np.flatnonzero(Y[:, j] > 0.5)
            if len(p) > n:
                Wn[rng.choice(p, len(p) - n, replace=False), j] = 0
        keep = Wn.sum(1) > 0
        oof = cross_validate(X[keep], Y[keep], Wn[keep], folds=min(3, n))
        from imgtag.engine.learn import Labels

        lab = Labels([], labels.keywords, Y[keep] * (Wn[keep] > 0), Wn[keep],
                     {k: n for k in labels.keywords}, {}, 0, [])
        tab = keyword_table(oof, lab, 0.9)
        hd = fit_head(X[keep], Y[keep], Wn[keep])
        ev = evaluate_head(hd, labels.keywords, [r["threshold"] for r in tab], Xv, tv, mv, dva.classes)
        res["few_shot"][n] = {k: ev[k] for k in ("mAP", "CP", "CR", "classes")} | {
            "keywords_reaching_0.9": sum(r["reached"] for r in tab)}
        print(f"few-shot {n}: {res['few_shot'][n]}", file=sys.stderr)
    out = json.dumps(res, indent=1, default=float)
    if a.json:
        Path(a.json).write_text(out)
    print(out)
    if not a.lib:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
