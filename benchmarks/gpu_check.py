"""One prepared check of the CUDA path, end to end, with a JSON report (≤ 8 minutes on an H100/H200).

On a GPU machine (the VOC copy is made here with the shared packer and travels in ``carry``):

    python ../shared/tools/device_pack.py .data/VOC2007 --splits train,val     # once, on the CPU box
    # device: run(command="PYTHONUNBUFFERED=1 python benchmarks/gpu_check.py --voc .data/VOC2007 --out $OUT/gpu_check.json",
    #             carry=[".data"], timeout_s=600)

On the CPU, as a test in the suite (tiny model, a tiny VOC folder made from tests/data, every step that can
run without CUDA; the CUDA-only ones are reported as "skipped"):

    python benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check.json

Checks (each one a report entry ``{"ok": bool | None, ...numbers}``; None = skipped, with ``why``):
1. ``nvjpeg``: a batch of VOC JPEGs decoded by :func:`imgtag.runtime.loader.decode_jpegs` on the device
   (torchvision nvjpeg; CPU libjpeg in the dry run) against the CPU path (PIL, :func:`read_chw`): mean |Δpixel|.
2. ``bf16_channels_last``: the torch runner's default on CUDA is bf16 autocast on a channels_last module; its
   logits against fp32 on the same device.
3. ``oom_backoff``: with the allocator capped (``set_per_process_memory_fraction``) a large batch runs out of
   memory, the runner halves it, records ``max_batch``, and the split result equals a small-batch run.
4. ``parity``: scores of ``imgtag``'s CUDA path (nvjpeg + bf16) and CUDA fp32 (CPU decode) against the CPU path
   (ONNX Runtime fp32 when installed, else torch) on 200 VOC val images; pass: max |Δscore| ≤ 1e-2.
5. ``tag_throughput``: ``imgtag tag`` images/s (the CLI, a subprocess, jsonl output) against a plain PIL +
   DataLoader baseline (16 workers, same model, bf16, channels_last) on the same files.
6. ``train_epoch``: one training epoch (the real ``imgtag.engine.train``; no pretrained download) images/s.
The exit status is 0 when every check that ran passed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's imgtag, also when not pip-installed (device machine)

PARITY_TOL = 1e-2


def tiny_setup(tmp: Path) -> tuple[str, str]:
    """Dry run: a randomly initialised Lite0 + GAP model (64 px, VOC's 20 labels) and a tiny VOC folder of the
    test photos (train = val = all of them). Returns (model card path, VOC root)."""
    import shutil

    import torch

    from imgtag.card import ModelCard, save_model
    from imgtag.data.voc import VOC_CLASSES
    from imgtag.models.model import MultiLabelModel

    voc = tmp / "VOC2007"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    photos = sorted((ROOT / "tests" / "data").glob("voc_*.jpg"))
    ids = []
    for p in photos:
        i = p.name.split("_")[1]
        shutil.copy(p, voc / "JPEGImages" / f"{i}.jpg")
        ids.append((i, set(p.stem.split("_")[2:])))
    for split in ("train", "val"):
        (voc / "ImageSets/Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i, _ in ids))
        for c in VOC_CLASSES:
            (voc / "ImageSets/Main" / f"{c}_{split}.txt").write_text(
                "".join(f"{i} {1 if c in labs else -1}\n" for i, labs in ids))
    torch.manual_seed(0)
    arch = {"backbone": "tf_efficientnet_lite0", "neck": "none", "neck_args": {}, "head": "gap", "head_args": {},
            "cosine": False, "scale": 1.0}
    model = MultiLabelModel(arch, len(VOC_CLASSES), pretrained=None).eval()
    card = ModelCard(name="gpucheck-tiny", labels=list(VOC_CLASSES), architecture=arch, input_size=64,
                     thresholds=[0.5] * len(VOC_CLASSES))
    _, c = save_model(model, card, tmp / "models" / "gpucheck-tiny")
    return str(c), str(voc)


def voc_paths(voc: str, split: str, n: int) -> list[str]:
    ids = (Path(voc) / "ImageSets/Main" / f"{split}.txt").read_text().split()
    return [str(Path(voc) / "JPEGImages" / f"{i}.jpg") for i in ids[:n] if (Path(voc) / "JPEGImages" / f"{i}.jpg").is_file()]


def check_nvjpeg(device, paths, size):
    import torch

    from imgtag.runtime.loader import ImageFiles, decode_jpegs, read_chw

    ds = ImageFiles(paths, size, jpeg_bytes=True)
    items = [ds[i] for i in range(len(ds))]
    jpegs = [it for it in items if it.jpeg is not None]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    out = decode_jpegs(jpegs, size, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    got = [o for o in out if o is not None]
    diffs = [float((o.cpu().float() - read_chw(paths[it.index], size).float()).abs().mean())
             for o, it in zip(out, jpegs) if o is not None]
    worst = max(diffs) if diffs else float("nan")
    # different decoders (nvjpeg/libjpeg-turbo IDCT, PIL draft mode) and resize kernels: a few levels per pixel
    return {"ok": len(got) == len(jpegs) > 0 and worst < 8.0, "images": len(jpegs), "decoded_on_device": len(got),
            "images_per_s": len(got) / dt if dt else None, "mean_abs_pixel_diff_worst": worst,
            "mean_abs_pixel_diff_mean": sum(diffs) / len(diffs) if diffs else None}


def check_bf16(device, net, card, paths):
    import numpy as np
    import torch

    from imgtag.runtime.loader import read_chw
    from imgtag.runtime.torch_runner import TorchRunner

    x = torch.stack([read_chw(p, int(card.input_size)) for p in paths])
    default = TorchRunner(net, card, device)
    fp32 = TorchRunner(net, card, device, precision="fp32")
    conv = next(m for m in default.module.modules() if isinstance(m, torch.nn.Conv2d))
    cl = conv.weight.is_contiguous(memory_format=torch.channels_last)
    a, b = default(x), fp32(x)
    diff = float(np.abs(1 / (1 + np.exp(-a)) - 1 / (1 + np.exp(-b))).max())
    want = "bf16" if device.type == "cuda" else "fp32"
    return {"ok": default.precision == want and cl and np.isfinite(a).all() and a.dtype == np.float32,
            "default_precision": default.precision, "channels_last": cl, "max_abs_score_diff_vs_fp32": diff}


def check_oom(device, net, card):
    import numpy as np
    import torch

    from imgtag.runtime.torch_runner import TorchRunner

    if device.type != "cuda":
        return {"ok": None, "why": "needs CUDA (out-of-memory is provoked with a capped allocator)"}
    S = int(card.input_size)
    runner = TorchRunner(net, card, device)
    g = torch.Generator().manual_seed(0)
    small = torch.randint(0, 256, (4, 3, S, S), dtype=torch.uint8, generator=g)
    ref = runner(small)
    torch.cuda.empty_cache()
    free, total = torch.cuda.mem_get_info(device)
    used = torch.cuda.memory_reserved(device)
    frac = min(1.0, (used + 2 * 2**30) / total)  # ~2 GiB above what the model holds
    torch.cuda.set_per_process_memory_fraction(frac, device)
    try:
        big = small.repeat(256, 1, 1, 1)  # 1024 images: far over 2 GiB of activations at bf16
        t = time.perf_counter()
        out = runner(big.to(device))
        dt = time.perf_counter() - t
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, device)
        torch.cuda.empty_cache()
    same = float(np.abs(out[:4] - ref).max())
    return {"ok": runner.max_batch is not None and runner.max_batch < 1024 and out.shape[0] == 1024 and same < 0.05,
            "max_batch_after_backoff": runner.max_batch, "seconds": dt, "max_abs_logit_diff_vs_small_batch": same,
            "memory_fraction": frac}


def check_parity(device, model, paths, workers):
    import numpy as np

    from imgtag.runtime.tagger import Tagger

    out = {}
    cpu = Tagger(model, device="cpu", runtime="auto", workers=workers)
    ref, err = cpu.score_paths(paths)
    out["cpu_runtime"] = cpu.runner.description
    rows = {"device_default": dict(runtime="torch"), "device_fp32_cpu_decode": dict(runtime="torch", precision="fp32", gpu_decode=False)}
    ok = True
    for name, kw in rows.items():
        t = Tagger(model, device=str(device), workers=workers, **kw)
        s, e = t.score_paths(paths)
        d = np.abs(s - ref)
        out[name] = {"runtime": t.runner.description, "gpu_decode": t.gpu_decode, "max_abs_score_diff": float(np.nanmax(d)),
                     "mean_abs_score_diff": float(np.nanmean(d)), "p99_abs_score_diff": float(np.nanpercentile(d, 99)),
                     "errors": len(e)}
        ok &= bool(np.nanmax(d) <= PARITY_TOL) and len(e) == len(err)
    return {"ok": ok, "images": len(paths), "tolerance": PARITY_TOL, **out}


def baseline_tag(model, paths, device, workers, batch):
    """PIL + DataLoader: the plain way (PIL decode+resize in workers, model in bf16 channels_last)."""
    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset

    from imgtag.models.model import TaggingModel, load_model

    net, card = load_model(model, "cpu")
    S = int(card.input_size)
    m = TaggingModel(net, card.mean, card.std).eval().to(device).to(memory_format=torch.channels_last)

    class Files(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            with Image.open(paths[i]) as im:
                a = np.array(im.convert("RGB").resize((S, S), Image.BILINEAR))
            return torch.from_numpy(a).permute(2, 0, 1).contiguous()

    dl = DataLoader(Files(), batch_size=batch, num_workers=workers, pin_memory=device.type == "cuda")
    t = time.perf_counter()
    n = 0
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for x in dl:
            s = torch.sigmoid(m(x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)).float()).cpu()
            n += len(s)
    return n / (time.perf_counter() - t)


def check_throughput(device, model, paths, workers, tmp: Path, runtime: str = "auto"):
    folder = tmp / "tagset"
    folder.mkdir(exist_ok=True)
    for p in paths:
        dst = folder / Path(p).name
        if not dst.exists():
            os.symlink(os.path.abspath(p), dst)
    out = tmp / "tags.jsonl"
    cmd = [sys.executable, "-m", "imgtag", "tag", str(folder), "--model", model, "--device", str(device.type),
           "--format", "jsonl", "-o", str(out), "--workers", str(workers), "--runtime", runtime]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t
    n = sum(1 for _ in out.open()) if out.is_file() else 0
    base = baseline_tag(model, paths, device, workers, 64 if device.type == "cuda" else 8)
    return {"ok": r.returncode == 0 and n == len(paths), "images": len(paths), "workers": workers,
            "imgtag_tag_images_per_s_incl_startup": n / dt, "pil_dataloader_images_per_s": base,
            "ratio": (n / dt) / base if base else None, "returncode": r.returncode,
            "stderr_tail": r.stderr[-600:], "command": " ".join(cmd)}


def check_train(device, voc, dry: bool, tmp: Path, workers):
    from imgtag.engine.train import TrainConfig, train

    n = len((Path(voc) / "ImageSets/Main/train.txt").read_text().split())
    cfg = TrainConfig(dataset="voc", root=voc, backbone="tf_efficientnet_lite0" if dry else "tf_efficientnet_lite2",
                      pretrained=None, head="gap" if dry else "csra", loss="asl", size=64 if dry else 448,
                      epochs=1, batch_size=4 if dry else 64, augment="flip", cache=False, device=str(device.type),
                      out=str(tmp / "train"), name="gpucheck", workers=workers)
    t = time.perf_counter()
    stem, metrics = train(cfg, progress=False)
    dt = time.perf_counter() - t
    return {"ok": Path(str(stem) + ".safetensors").is_file(), "train_images": n, "seconds_incl_val_and_save": dt,
            "images_per_s_incl_val": n / dt, "val_mAP": metrics.get("mAP")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voc", default=".data/VOC2007", help="VOC2007 folder (device_pack.py copy)")
    ap.add_argument("--model", default="default")
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, tiny VOC from tests/data")
    ap.add_argument("--parity-n", type=int, default=200)
    ap.add_argument("--tag-n", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--skip", default="", help="comma-separated check names to skip")
    a = ap.parse_args(argv)

    import torch

    t_all = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    os.environ.setdefault("IMGTAG_CACHE", str(tmp / "cache"))
    if a.dry_run:
        device = torch.device("cpu")
        model, voc = tiny_setup(tmp)
        workers, parity_n, tag_n = 0, 5, 5
    else:
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device (use --dry-run on the CPU)", file=sys.stderr)
            return 2
        device = torch.device("cuda")
        model, voc, workers, parity_n, tag_n = a.model, a.voc, a.workers, a.parity_n, a.tag_n
    from imgtag.models.model import load_model

    net, card = load_model(model, "cpu")
    val = voc_paths(voc, "val", max(parity_n, tag_n))
    report = {"dry_run": a.dry_run, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu",
              "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
              "model": card.name, "input_size": int(card.input_size), "voc": voc, "val_images_found": len(val),
              "checks": {}}
    checks = {
        "nvjpeg": lambda: check_nvjpeg(device, val[:64], int(card.input_size)),
        "bf16_channels_last": lambda: check_bf16(device, net, card, val[:16]),
        "oom_backoff": lambda: check_oom(device, net, card),
        "parity": lambda: check_parity(device, model, val[:parity_n], workers),
        # dry run: torch, so the test spends no time on an ONNX export the CUDA path does not use
        "tag_throughput": lambda: check_throughput(device, model, val[:tag_n], workers, tmp,
                                                   "torch" if a.dry_run else "auto"),
        "train_epoch": lambda: check_train(device, voc, a.dry_run, tmp, workers),
    }
    skip = set(filter(None, a.skip.split(",")))
    for name, fn in checks.items():
        t = time.perf_counter()
        if name in skip:
            r = {"ok": None, "why": "--skip"}
        else:
            try:
                r = fn()
            except Exception as e:  # noqa: BLE001 - one failed check must not hide the others
                r = {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
        r["check_seconds"] = round(time.perf_counter() - t, 2)
        report["checks"][name] = r
        print(f"{name}: {'skipped' if r['ok'] is None else 'ok' if r['ok'] else 'FAILED'} "
              + json.dumps({k: v for k, v in r.items() if k not in ("traceback", "stderr_tail")}, default=str)[:400], flush=True)
        Path(a.out).write_text(json.dumps(report, indent=1, default=str))  # partial report survives a timeout
    report["seconds"] = round(time.perf_counter() - t_all, 1)
    report["ok"] = all(r["ok"] is not False for r in report["checks"].values())
    Path(a.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"gpu_check: {'ok' if report['ok'] else 'FAILED'} in {report['seconds']} s; report {a.out}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
