"""Ship a model's int8 graph with thresholds calibrated for it, and record what the CPU default precision is.

    nice -n 10 python tools/ship_precision.py imgtag/weights/lite2-448-keywords.json --voc VOC2007_ROOT \
        [--calib-n 300] [--preset mixed] [--ignore head,stem] [--fast-bias-correction] [--ort-int8] [--dry-run]

Needs ``pip install 'imgtag[quantize]'`` (NNCF, Apache-2.0): only here, at ship time; tagging needs OpenVINO only.

1. **Quantise** (NNCF post-training quantisation, OpenVINO backend) the model's fp32 ONNX graph (the one ``imgtag
   tag --runtime onnx`` runs) on ``--calib-n`` VOC07 *train* images (seed 0), decoded exactly as tagging decodes
   them, ``--preset mixed`` (symmetric weights, asymmetric activations), the stem convolution and the classifier
   head(s) left in float (``--ignore``). Written as OpenVINO IR beside the card: ``NAME.openvino-int8.xml/.bin``
   (package data: a wheel install runs it offline; no calibration data is needed at tag time). The IR carries the
   weights' sha256 (``rt_info imgtag/weights_sha256``) so a retrained model never runs a stale graph.
   ``--ort-int8`` also writes ``NAME.int8.onnx`` (ONNX Runtime static QDQ, ``imgtag export --int8``).
2. **Score** VOC07 val with every (runtime, precision) that has a graph: ORT fp32 (the reference), OpenVINO f32,
   OpenVINO int8, ORT int8; each key's val logits are cached under ``.cache/precision/`` by graph hash.
3. **Calibrate** per-class thresholds on each key's OWN val scores with the card's rule
   (:func:`imgtag.engine.metrics.calibrate_thresholds`, as ``thresholds`` were for fp32) into
   ``thresholds_by_precision`` (``openvino:int8``, ``int8``); metrics per key go to ``metrics["by_precision"]``
   with the model-only speed measured here (images per CPU-second, 1 thread, all keys alternating in one
   process, same batches: CPU time is what a shared box does not distort).
4. **cpu_precision**: the fastest key whose mAP is within 0.3 and CF1 within 0.5 of fp32 (each at its own
   thresholds) and that is ≥ 1.1× fp32 on this CPU class; fp32 when none qualifies. ``imgtag.runtime.precision``
   reads the same metrics at run time (speeds per CPU class: ``avx2``, ``vnni``, ``amx``...), so the choice is
   data, not code; run this tool on a VNNI/AMX machine to add that class's speeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / ".cache" / "precision"

#: ONNX node name patterns (OpenVINO keeps them) left in float by --ignore
IGNORE = {"head": r".*/model/(head|extra_heads)/.*", "stem": r".*/conv_stem/.*", "conv_head": r".*/conv_head/.*"}


def load_avg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def decode(paths: list[str], size: int, name: str) -> np.ndarray:
    """uint8 N×3×S×S, decoded once exactly as tagging does (load_resized), cached as a memmap in .cache/."""
    f = CACHE / f"{name}_{size}_{len(paths)}_{hashlib.sha1(''.join(paths).encode()).hexdigest()[:8]}.u8"
    shape = (len(paths), 3, size, size)
    if f.is_file() and f.stat().st_size == int(np.prod(shape)):
        return np.memmap(f, np.uint8, "r", shape=shape)
    from imgtag.io.decode import load_resized

    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".part")
    mm = np.memmap(tmp, np.uint8, "w+", shape=shape)
    t = time.perf_counter()
    for i, p in enumerate(paths):
        mm[i] = load_resized(p, size).transpose(2, 0, 1)
    mm.flush()
    del mm
    tmp.rename(f)
    print(f"decoded {len(paths)} {name} images in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return np.memmap(f, np.uint8, "r", shape=shape)


def calib_paths(voc: str, n: int, seed: int = 0) -> list[str]:
    ids = (Path(voc) / "ImageSets/Main/train.txt").read_text().split()
    pick = sorted(np.random.default_rng(seed).choice(len(ids), min(n, len(ids)), replace=False))
    return [f"{voc}/JPEGImages/{ids[i]}.jpg" for i in pick]


def quantize_openvino(fp32_onnx: Path, calib: np.ndarray, xml: Path, sha: str, preset: str = "mixed",
                      ignore: list[str] = ("head", "stem"), fast_bias_correction: bool = True) -> dict:
    """NNCF PTQ of the fp32 ONNX graph → OpenVINO IR ``xml`` (+ .bin); returns the recipe recorded in rt_info."""
    import nncf
    import openvino as ov

    model = ov.Core().read_model(str(fp32_onnx))
    patterns = [IGNORE[k] for k in ignore if k]
    recipe = {"method": "nncf.quantize", "nncf": nncf.__version__, "openvino": ov.__version__.split("-")[0],
              "preset": preset, "calibration": f"{len(calib)} VOC07 train images, seed 0",
              "ignored": patterns, "fast_bias_correction": bool(fast_bias_correction)}
    q = nncf.quantize(model, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]),
                      preset=getattr(nncf.QuantizationPreset, preset.upper()), subset_size=len(calib),
                      fast_bias_correction=fast_bias_correction,
                      ignored_scope=nncf.IgnoredScope(patterns=patterns, validate=False) if patterns else None)
    q.set_rt_info(sha, ["imgtag", "weights_sha256"])
    q.set_rt_info(json.dumps(recipe), ["imgtag", "recipe"])
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp = xml.with_name(xml.stem + ".part.xml")
    ov.save_model(q, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
    tmp.replace(xml)
    return recipe


def file_hash(*files: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def make_run(key: str, graph: Path, threads: int):
    """``f(uint8 N×3×S×S) -> float32 logits`` for a thresholds key, with the runners' own settings."""
    if key in ("fp32", "int8"):
        import onnxruntime as ort

        from imgtag.runtime.onnx import _session

        sess = _session(ort, graph, threads)
        name = sess.get_inputs()[0].name
        return lambda x: sess.run(None, {name: np.ascontiguousarray(x)})[0]
    from imgtag.runtime.openvino import compile_graph

    req = compile_graph(graph, "fp32" if key == "openvino:fp32" else "int8", threads).create_infer_request()
    return lambda x: req.infer({0: np.ascontiguousarray(x)}, share_inputs=True)[0].copy()


def logits_of(run, px: np.ndarray, batch: int = 16) -> np.ndarray:
    return np.concatenate([run(px[i:i + batch]) for i in range(0, len(px), batch)])


def speeds(runs: dict, px: np.ndarray, batch: int, rounds: int = 3) -> dict[str, float]:
    """Model-only images per CPU-second per key (this process's CPU time, so other jobs on a shared box hardly
    move it): the keys take turns (``rounds``), the best round each; one warm-up batch."""
    best = dict.fromkeys(runs, 0.0)
    for run in runs.values():
        run(px[:batch])
    for _ in range(rounds):
        for k, run in runs.items():
            t = time.process_time()
            for i in range(0, len(px), batch):
                run(px[i:i + batch])
            best[k] = max(best[k], len(px) / (time.process_time() - t))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("card")
    ap.add_argument("--voc", default=os.environ.get("IMGTAG_VOC_ROOT", "/work/shared/data/VOCdevkit/VOC2007"))
    ap.add_argument("--calib-n", type=int, default=300)
    ap.add_argument("--preset", default="mixed", choices=["mixed", "performance"])
    ap.add_argument("--ignore", default="head,stem", help=f"comma list of {', '.join(IGNORE)} (or empty)")
    ap.add_argument("--no-fast-bias-correction", action="store_true", help="NNCF's slower full bias correction")
    ap.add_argument("--ort-int8", action="store_true", help="also ship NAME.int8.onnx (ONNX Runtime static QDQ)")
    ap.add_argument("--out", help="write the graph(s) and card here instead of beside the card (experiments)")
    ap.add_argument("--speed-n", type=int, default=96)
    ap.add_argument("--threads", type=int, default=2, help="threads for the scoring passes")
    ap.add_argument("--speed-threads", type=int, default=1, help="threads for the speed rounds (CPU time)")
    ap.add_argument("--dry-run", action="store_true", help="print the metrics, write no card")
    ap.add_argument("--requantize", action="store_true", help="quantise again even when the card's IR was made "
                    "from these weights")
    ap.add_argument("--no-parity", action="store_true", help="skip the OpenVINO f32 parity pass (256 val images)")
    ap.add_argument("--no-speed", action="store_true", help="skip the model-only speed rounds")
    a = ap.parse_args()

    from imgtag.card import read_card
    from imgtag.data import build_dataset
    from imgtag.engine.metrics import calibrate_thresholds, evaluate_scores
    from imgtag.models.model import load_model
    from imgtag.runtime.onnx import export_bytes, quantize_int8, weights_id
    from imgtag.runtime.openvino import ir_weights_sha256 as ir_sha
    from imgtag.runtime.precision import MAX_CF1_DROP, MAX_MAP_DROP, MIN_SPEEDUP, choose_cpu_key, cpu_class

    print(f"load before: {load_avg()}", flush=True)
    card = read_card(a.card)
    net, _ = load_model(a.card)
    sha = weights_id(net, card)
    out = Path(a.out) if a.out else Path(a.card).parent
    S, K = int(card.input_size), card.num_classes
    CACHE.mkdir(parents=True, exist_ok=True)
    data = export_bytes(net, card, dynamic_hw=False)
    fp32 = CACHE / f"{card.name}-fp32-{hashlib.sha256(data).hexdigest()[:16]}.onnx"
    fp32.write_bytes(data)
    cal = calib_paths(a.voc, a.calib_n)
    calib = decode(cal, S, "voc_train_calib")
    xml = out / f"{card.name}.openvino-int8.xml"
    src_xml = Path(a.card).with_suffix(".openvino-int8.xml")
    t = time.perf_counter()
    if not a.requantize and src_xml.is_file() and ir_sha(src_xml) == sha:  # made from these weights: keep it
        import openvino as ov

        recipe = json.loads(ov.Core().read_model(str(src_xml)).get_rt_info(["imgtag", "recipe"]).astype(str))
        if src_xml != xml:
            import shutil

            shutil.copyfile(src_xml, xml)
            shutil.copyfile(src_xml.with_suffix(".bin"), xml.with_suffix(".bin"))
        print(f"openvino int8: kept {src_xml} (made from these weights; --requantize to make it again)", flush=True)
    else:
        recipe = quantize_openvino(fp32, np.asarray(calib), xml, sha, a.preset, a.ignore.split(","),
                                   not a.no_fast_bias_correction)
    print(f"openvino int8: {xml} ({(xml.stat().st_size + xml.with_suffix('.bin').stat().st_size) / 2**20:.1f} MiB, "
          f"{time.perf_counter() - t:.0f} s) {json.dumps(recipe)}", flush=True)
    # OpenVINO int8 first (the pass that matters), then the fp32 reference, then the rest
    graphs: dict[str, Path] = {"openvino:int8": xml, "fp32": fp32}
    if not a.no_parity:
        graphs["openvino:fp32"] = fp32
    if a.ort_int8:
        q8 = out / f"{card.name}.int8.onnx"
        quantize_int8(net, card, q8, cal, n=a.calib_n)
        graphs["int8"] = q8

    ds = build_dataset("voc", a.voc, "val")
    targets, mask = ds.columns(card.labels)
    px = decode([str(p) for p in ds.paths], S, "voc_val")
    logits = {}
    for key, g in graphs.items():
        # fp32 scores depend on the weights and size only (the export is checked against torch); int8 on the IR
        gid = file_hash(g, g.with_suffix(".bin")) if g.suffix == ".xml" else f"{sha[:16]}-{S}"
        f = CACHE / f"{card.name}-{key.replace(':', '-')}-{gid}.npy"
        if f.is_file():
            logits[key] = np.load(f)
            continue
        if key == "openvino:fp32":  # parity: 256 images are enough (the full pass equals fp32 to ~5e-6)
            logits[key] = logits_of(make_run(key, g, a.threads), px[:256])
        else:
            t = time.perf_counter()
            logits[key] = logits_of(make_run(key, g, a.threads), px)
            print(f"{key}: {len(px)} val images in {time.perf_counter() - t:.0f} s (load {load_avg()})", flush=True)
        np.save(f, logits[key])
    ref = logits["fp32"]
    by_thr, by_metrics = dict(card.thresholds_by_precision), {}
    for key, lg in logits.items():
        d = float(np.abs(lg - ref[:len(lg)]).max())
        if len(lg) < len(ref):
            by_metrics[key] = {"max_abs_dlogit_vs_fp32": d, "parity_images": len(lg)}
            print(f"{key}: max |Δlogit| vs ORT fp32 {d:.2g} on {len(lg)} images")
            continue
        s = 1 / (1 + np.exp(-lg[:, :K].astype(np.float64)))
        thr = calibrate_thresholds(s, targets, mask)
        r = evaluate_scores(s, targets, mask, thresholds=thr)
        rc = evaluate_scores(s, targets, mask, thresholds=np.asarray(card.class_thresholds()))
        by_metrics[key] = {"mAP": r["mAP"], "CF1": r["CF1"], "OF1": r["OF1"], "CF1_at_fp32_thresholds": rc["CF1"],
                           "max_abs_dlogit_vs_fp32": d, "dataset": "voc:val"}
        if key != "fp32":
            by_thr[key] = [float(x) for x in thr]
        print(f"{key}: mAP {r['mAP']:.2f} CF1 {r['CF1']:.2f} OF1 {r['OF1']:.2f} (own thresholds; CF1 at fp32's "
              f"{rc['CF1']:.2f}) max |Δlogit| {d:.3g}", flush=True)
    runs = {k: make_run(k, g, a.speed_threads) for k, g in graphs.items()}
    sp = {} if a.no_speed else speeds(runs, np.asarray(px[:a.speed_n]), 16)
    cpu = cpu_class()
    for k, v in sp.items():  # per CPU class: int8 pays off with VNNI/AMX only (merged with earlier classes)
        old = (card.metrics.get("by_precision") or {}).get(k, {}).get("speed_vs_fp32")
        by_metrics[k]["speed_vs_fp32"] = {**(old if isinstance(old, dict) else {}), cpu: round(v / sp["fp32"], 3)}
        by_metrics[k]["model_img_per_cpu_s"] = {cpu: round(v, 2)}
    note = "not measured" if a.no_speed else (f"model-only images per CPU-second, batch 16, {a.speed_threads} thread(s), {a.speed_n} val images, "
                                              f"best of 3 alternating rounds, CPU class {cpu_class()}, load {load_avg()}")
    print(f"speed ({note}): " + ", ".join(f"{k} {v:.1f}" for k, v in sp.items()), flush=True)
    by_metrics["_speed"] = note
    by_metrics["_recipe_openvino:int8"] = recipe
    cpu = choose_cpu_key(by_metrics) or "fp32"
    print(f"cpu default here ({cpu_class()}): {cpu} (the fastest within {MAX_MAP_DROP} mAP and {MAX_CF1_DROP} CF1 "
          f"of fp32 and ≥ {MIN_SPEEDUP}× its speed)")
    print(f"load after: {load_avg()}")
    if a.dry_run:
        return
    from imgtag.io.atomic import atomic_write_bytes

    card = dataclasses.replace(card, thresholds_by_precision=by_thr, cpu_precision=cpu.split(":")[-1],
                               metrics={**card.metrics, "by_precision": by_metrics})
    atomic_write_bytes(out / f"{card.name}.json", (json.dumps(card.to_dict(), indent=2, ensure_ascii=False) + "\n").encode())
    print(f"wrote {out / f'{card.name}.json'}")


if __name__ == "__main__":
    main()
