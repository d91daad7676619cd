"""Issue 17's CPU table in one run: `imgtag tag` end to end vs model-only, per runtime × precision, on VOC07 val.

    nice -n 10 python benchmarks/cpu_table.py [--n 500] [--rounds 2] [--model lite2-448-keywords]
        [--today voc2007-lite2-448-csra-asl] [--sweep] [--json out.json]

Rows (all in this one run, taking turns ``--rounds`` times, best round each):
* **today's default**: ``--today`` model (448 px), ``--runtime onnx --precision fp32`` (ONNX Runtime fp32);
* ``--model`` on OpenVINO f32, OpenVINO int8, ONNX Runtime int8 (when the model ships that graph; else built
  into .cache/ with ``imgtag export --int8``'s recipe, speed only), and ONNX Runtime fp32;
* **new default**: ``--model`` with no ``--runtime``/``--precision`` (what a user gets).

Per row: ``imgtag tag`` run as a real subprocess on the first ``--n`` val images (``-T list -o out.jsonl``):
the images/s its summary line reports (decode workers + model + selection + writing, model loading excluded)
and the process's wall time (with start-up and model loading); model-only images/s of the same runner (the
Tagger the CLI builds, same threads and batch) on the first ``--model-n`` of the same images decoded beforehand;
today's row runs on all physical cores (``IMGTAG_THREADS``), as today's code did whatever the load; the overhead ratio
end-to-end / model-only (target ≥ 90 %); × today's default; mAP / CF1 at the row's own thresholds from the
card (``metrics.by_precision``, measured on all VOC07 val by tools/ship_precision.py). Then ``imgtag --help``:
median wall of ``--help-n`` runs, and whether the CLI import pulls torch. ``uptime`` before and after.
``--sweep``: model-only threads 1/2 (and 2 threads in 2 OpenVINO streams) × batch 4/8/16/32 for the new
default's runner, on 96 images.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = ROOT / ".cache" / "cpu_table"
VOC = os.environ.get("IMGTAG_VOC_ROOT", "/work/shared/data/VOCdevkit/VOC2007")


def uptime() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def val_paths(voc: str, n: int) -> list[str]:
    ids = (Path(voc) / "ImageSets/Main/val.txt").read_text().split()[:n]
    return [f"{voc}/JPEGImages/{i}.jpg" for i in ids]


def ort_int8_model(model: str, voc: str) -> str:
    """A copy of ``model``'s file set in .cache/ with an ONNX Runtime int8 graph (static QDQ, 300 VOC07 train
    images, seed 0), for its speed row; its thresholds are the fp32 ones (timing only: selection costs the same)."""
    import shutil

    from imgtag.card import read_card, resolve_model

    w, c = resolve_model(model)
    card = read_card(c)
    if card.graph_path("int8"):
        return model
    d = CACHE / "ort-int8"
    d.mkdir(parents=True, exist_ok=True)
    dst = d / c.name
    meta = json.loads(c.read_text())
    meta["thresholds_by_precision"] = {**meta.get("thresholds_by_precision", {}), "int8": meta["thresholds"]}
    meta["metrics"] = {k: v for k, v in meta.get("metrics", {}).items() if k != "by_precision"}
    dst.write_text(json.dumps(meta))
    if not dst.with_suffix(".safetensors").exists():
        shutil.copyfile(w, dst.with_suffix(".safetensors"))
    q8 = dst.with_suffix(".int8.onnx")
    if not q8.is_file():
        from imgtag.models.model import load_model
        from imgtag.runtime.onnx import quantize_int8

        ids = (Path(voc) / "ImageSets/Main/train.txt").read_text().split()
        net, card = load_model(str(dst))
        quantize_int8(net, card, q8, [f"{voc}/JPEGImages/{i}.jpg" for i in ids], n=300)
    return str(dst)


def tag_e2e(model: str, flags: list[str], listfile: Path, out: Path, env: dict | None = None) -> dict:
    """One ``imgtag tag`` subprocess: summary images/s, wall seconds, the 'runtime ...' line."""
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "imgtag", "tag", "-T", str(listfile), "-m", model, "-o", str(out), *flags]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "COLUMNS": "250", **(env or {})})
    wall = time.perf_counter() - t
    err = " ".join(r.stderr.split())
    m = re.search(r"(\d+) tagged.*? in ([\d.]+)s \(([\d.]+) images/s\)", err)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): {r.stderr[-800:]}")
    rt = re.search(r"runtime (\S+) \(([^)]*)\)", err)
    n = int(m.group(1))
    return {"img_s": n / float(m.group(2)), "wall_s": wall, "wall_img_s": n / wall,
            "runtime": f"{rt.group(1)} ({rt.group(2)})" if rt else "?", "records": sum(1 for _ in out.open())}


def model_only(tagger, px: np.ndarray, batch: int) -> float:
    """images/s of ``tagger.runner`` alone on pre-decoded uint8 batches (one warm-up batch)."""
    tagger.runner(px[:batch])
    t = time.perf_counter()
    for i in range(0, len(px), batch):
        tagger.runner(px[i:i + batch])
    return len(px) / (time.perf_counter() - t)


def make_tagger(model: str, flags: list[str], env: dict | None = None, **kw):
    from imgtag.runtime.tagger import Tagger

    if env and "IMGTAG_THREADS" in env:
        kw["threads"] = int(env["IMGTAG_THREADS"])

    rt = flags[flags.index("--runtime") + 1] if "--runtime" in flags else "auto"
    prec = flags[flags.index("--precision") + 1] if "--precision" in flags else None
    return Tagger(model, device="cpu", runtime=rt, precision=prec, workers=0, **kw)


def accuracy(model: str, runtime: str, precision: str) -> tuple[float | None, float | None]:
    from imgtag.card import read_card, resolve_model

    card = read_card(resolve_model(model)[1])
    by = card.metrics.get("by_precision") or {}
    key = f"{runtime}:{precision}" if f"{runtime}:{precision}" in by else precision
    m = by.get(key) or ({"mAP": card.metrics.get("mAP"), "CF1": (card.metrics.get("at_calibrated") or {}).get("CF1")}
                        if precision == "fp32" else {})
    return m.get("mAP"), m.get("CF1")


def help_time(n: int) -> dict:
    walls = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "imgtag", "--help"], stdout=subprocess.DEVNULL, cwd=ROOT, check=True)
        walls.append(time.perf_counter() - t)
    code = "import sys, imgtag.cli; print(int('torch' in sys.modules))"
    torch_in = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {"median_s": statistics.median(walls), "runs": n, "min_s": min(walls), "imports_torch": torch_in == "1"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--model", default=None, help="the new default model (default: the shipped default)")
    ap.add_argument("--today", default="voc2007-lite2-448-csra-asl", help="today's default model (ORT fp32)")
    ap.add_argument("--rows", default="today,ov-f32,ov-int8,ort-int8,new", help="also: ort-fp32 (the new model)")
    ap.add_argument("--model-n", type=int, default=200, help="images for the model-only rate (steady state)")
    ap.add_argument("--help-n", type=int, default=9)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--voc", default=VOC)
    ap.add_argument("--json")
    a = ap.parse_args()
    os.environ.setdefault("IMGTAG_CACHE", str(CACHE / "imgtag-cache"))  # a private graph cache

    from imgtag.card import default_model_name
    from imgtag.io.decode import load_resized

    new = a.model or default_model_name()
    start = {"uptime_before": uptime(), "time": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    print(f"load before: {start['uptime_before']}  ({os.cpu_count()} CPUs); new default model {new}", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = val_paths(a.voc, a.n)
    listfile = CACHE / f"val{a.n}.txt"
    listfile.write_text("\n".join(paths) + "\n")
    from imgtag.runtime.onnx import physical_cores

    # today's default ran ONNX Runtime fp32 on all physical cores whatever the load
    today_env = {"IMGTAG_THREADS": str(physical_cores())}
    rows = {"today": (a.today, ["--runtime", "onnx", "--precision", "fp32"], "today's default: ORT fp32"),
            "ort-fp32": (new, ["--runtime", "onnx", "--precision", "fp32"], "ORT fp32"),
            "ov-f32": (new, ["--runtime", "openvino", "--precision", "fp32"], "OpenVINO f32"),
            "ov-int8": (new, ["--runtime", "openvino", "--precision", "int8"], "OpenVINO int8 (NNCF)"),
            "ort-int8": (None, ["--runtime", "onnx", "--precision", "int8"], "ORT int8 (static QDQ)"),
            "new": (new, [], "new default (no flags)")}
    want = [r for r in a.rows.split(",") if r in rows]
    results: dict[str, dict] = {}
    taggers = {}
    for r in want:
        model, flags, label = rows[r]
        if r == "ort-int8":
            model = ort_int8_model(new, a.voc)
            rows[r] = (model, flags, label)
        try:
            taggers[r] = make_tagger(model, flags, today_env if r == "today" else None)
        except Exception as e:  # noqa: BLE001 - e.g. OpenVINO not installed: the row says so
            results[r] = {"label": label, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"}
    S = {int(t.size) for t in taggers.values()}
    px = {s: np.stack([load_resized(p, s).transpose(2, 0, 1) for p in paths[:max(a.model_n, 96)]]) for s in S}
    for k in range(a.rounds):
        for r, t in taggers.items():
            model, flags, label = rows[r]
            e2e = tag_e2e(model, flags, listfile, CACHE / f"{r}.jsonl", today_env if r == "today" else None)
            mo = model_only(t, px[int(t.size)][:a.model_n], t.batch_size)
            best = results.setdefault(r, {"label": label, "img_s": 0.0, "model_img_s": 0.0})
            best["img_s"] = max(best["img_s"], e2e["img_s"])
            best["model_img_s"] = max(best["model_img_s"], mo)
            best.update({k2: v for k2, v in e2e.items() if k2 != "img_s"}, batch=t.batch_size,
                        threads=getattr(t.runner, "threads", None), precision=t.precision, runtime_name=t.runtime)
            print(f"round {k + 1} {r}: e2e {e2e['img_s']:.2f} img/s (wall {e2e['wall_s']:.1f} s), model-only "
                  f"{mo:.2f} img/s, {e2e['runtime']}; load {uptime()}", flush=True)
    base = results.get("today", {}).get("img_s")
    for r, res in results.items():
        if "error" in res:
            continue
        res["overhead_ratio"] = res["img_s"] / res["model_img_s"]
        res["x_today"] = res["img_s"] / base if base else None
        res["mAP"], res["CF1"] = accuracy(a.today if r == "today" else new, res["runtime_name"], res["precision"])
    sweep = {}
    if a.sweep and "new" in taggers:
        t0 = taggers["new"]
        from imgtag.runtime.registry import get_runner

        cls = get_runner(t0.runtime)
        p = px[int(t0.size)][:96]
        settings = [(1, 1), (2, 1)] + ([(2, 2)] if t0.runtime == "openvino" else [])
        for th, st in settings:
            kw = {"streams": st} if t0.runtime == "openvino" else {}
            runner = cls(t0.net, t0.card, t0.device, precision=None if t0.precision == "fp32" else t0.precision,
                         threads=th, **kw)
            for b in (4, 8, 16, 32):
                name = f"t{th}{f's{st}' if st > 1 else ''}_b{b}"
                runner(p[:b])
                tt = time.perf_counter()
                for i in range(0, len(p), b):
                    runner(p[i:i + b])
                sweep[name] = len(p) / (time.perf_counter() - tt)
                print(f"sweep {t0.runtime} {t0.precision} threads {th} streams {st} batch {b}: {sweep[name]:.2f} "
                      f"img/s (load {uptime()})", flush=True)
    helpr = help_time(a.help_n)
    end = uptime()
    print(f"\nuptime before: {start['uptime_before']}; after: {end}; {a.n} VOC07 val images, {a.rounds} rounds (best)\n")
    print("| row | runtime (as the CLI reports it) | `imgtag tag` images/s | model-only images/s | end-to-end / model-only "
          "| × today's default | wall s (incl. start-up) | mAP | CF1 |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in want:
        res = results.get(r, {})
        if "error" in res or not res:
            print(f"| {rows[r][2]} | {res.get('error', 'not run')} | | | | | | | |")
            continue
        f = lambda x, d=2: "—" if x is None else f"{x:.{d}f}"  # noqa: E731
        print(f"| {res['label']} | {res['runtime']} | {res['img_s']:.2f} | {res['model_img_s']:.2f} | "
              f"{100 * res['overhead_ratio']:.0f} % | {f(res['x_today'])}× | {res['wall_s']:.1f} | {f(res['mAP'])} | "
              f"{f(res['CF1'])} |")
    print(f"\n`imgtag --help`: median {helpr['median_s']:.3f} s wall over {helpr['runs']} runs (min {helpr['min_s']:.3f}); "
          f"imports torch: {helpr['imports_torch']}")
    if sweep:
        print("\nmodel-only sweep (" + taggers["new"].runtime + " " + taggers["new"].precision + ", 96 images): "
              + ", ".join(f"{k} {v:.2f}" for k, v in sweep.items()))
    if a.json:
        Path(a.json).write_text(json.dumps({**start, "uptime_after": end, "rows": results, "help": helpr,
                                            "sweep": sweep}, indent=1, default=str))


if __name__ == "__main__":
    main()
