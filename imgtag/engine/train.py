"""Training: one readable loop for every head × loss, in the spirit of nanoGPT's train.py.

Recipe (defaults follow Query2Label / ASL):
AdamW (weight decay 1e-4, none on norms and biases), OneCycle (pct_start 0.2) stepped per iteration, EMA of
the weights (the better of regular/EMA on validation mAP is kept, as in Q2L), bf16 autocast on CUDA,
early stopping on validation mAP, per-class thresholds calibrated on the validation scores.

CPU recipe: ``freeze_stages=k`` freezes the first k backbone stages (eval-mode BatchNorm, no grad). Their output is
computed once and cached (engine/features.py) for a fixed set of views of each training image: the image and its
mirror for "flip"; with ``views=N`` and "randaugment", N views (the image, its mirror, N-2 seeded RandAugment +
erasing draws). Each epoch shows every image once, in one of its views at random, and runs only the remaining
stages, the neck and the head. A fixed pool of views is weaker than fresh augmentation every epoch, but it keeps
the frozen stages out of the loop (about half of Lite2's compute at ``freeze_stages=5``).

Distributed: launched by ``torchrun`` (WORLD_SIZE > 1) it uses DDP (NCCL on CUDA, Gloo on CPU); rank 0
evaluates, saves and logs.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from imgtag.card import ModelCard, save_model
from imgtag.data import build_dataset
from imgtag.engine.config import TrainConfig  # noqa: F401 - the options, here for imports of old
from imgtag.engine.features import cached_features
from imgtag.engine.metrics import calibrate_thresholds, evaluate_scores
from imgtag.io.atomic import atomic_write_bytes
from imgtag.models.backbone import pretrained_config
from imgtag.models.heads import HEADS, cooccurrence_probability
from imgtag.models.losses import AM_BINARY_SCALE, build_loss
from imgtag.models.model import MultiLabelModel, normalize
from imgtag.runtime.device import pick_device
from imgtag.runtime.loader import Augment, ImageFiles, View, iter_batches, loader as image_loader
from imgtag.runtime.memory import keep_freed_memory


def cache_views(cfg: TrainConfig) -> int:
    """How many views of each training image the frozen-stage cache holds (0: augment live, no cache)."""
    most = {"none": 1, "flip": 2, "randaugment": None}[cfg.augment]
    if cfg.views < 0 or (most is not None and cfg.views > most):
        raise ValueError(f"--views {cfg.views}: --augment {cfg.augment} has {most} distinct view(s); "
                         "use --augment randaugment for more")
    return cfg.views or (most or 0)


def log(msg: str) -> None:
    if int(os.environ.get("RANK", 0)) == 0:
        print(msg, file=sys.stderr, flush=True)


class EMA:
    """Exponential moving average of a module's float state (parameters and BN statistics), with warm-up."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.steps = decay, 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for e, m in zip(self.module.state_dict().values(), model.state_dict().values()):
            if e.is_floating_point():
                e.lerp_(m.detach(), 1 - d)
            else:
                e.copy_(m)


def _progress_bar(title: str, total: int):
    """A transient rich progress bar on stderr, shown only when stderr is a terminal."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    if not console.is_terminal:
        return None
    bar = Progress(TextColumn(title), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console, transient=True)
    bar.add_task(title, total=total)
    bar.start()
    return bar


def _with_targets(b, ds) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A decoded training batch with its targets and masks; a training image that fails stops the run."""
    bad = [e for e in b.errors if e]
    if bad:
        raise RuntimeError(f"{len(bad)} training image(s) failed to decode, e.g. {bad[0]}")
    idx = torch.as_tensor(b.indices)
    return b.images, ds.targets[idx], ds.masks[idx]


def param_groups(model: MultiLabelModel, cfg: TrainConfig) -> list[dict]:
    groups: dict[tuple[bool, bool], list] = {}
    for n, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((n.startswith("backbone."), p.ndim <= 1), []).append(p)
    return [{"params": ps, "lr": cfg.lr * (cfg.backbone_lr_mult if bb else 1.0), "weight_decay": 0.0 if nd else cfg.weight_decay}
            for (bb, nd), ps in groups.items()]


@torch.inference_mode()
def predict_scores(fn: nn.Module, loader, device, autocast: bool) -> np.ndarray:
    fn.eval()
    out = []
    for x in loader:
        x = x[0] if isinstance(x, (list, tuple)) else x
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            x = x.to(device)
            out.append(torch.sigmoid(fn(x.float() if x.dtype == torch.float16 else x).float()).cpu())
    return torch.cat(out).numpy()


def _save_checkpoint(path: Path, model, ema, opt, sched, state: dict) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors |= {f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.module.state_dict().items()}
    osd = opt.state_dict()
    for pid, st in osd["state"].items():
        for k, v in st.items():
            tensors[f"opt.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    meta = {"state": state, "sched": sched.state_dict(), "opt_groups": osd["param_groups"], "ema_steps": ema.steps}
    atomic_write_bytes(path, save(tensors, metadata={"meta": json.dumps(meta, default=float)}))


def _load_checkpoint(path: Path, model, ema, opt, sched) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = json.loads(f.metadata()["meta"])
    t = load_file(str(path))
    model.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    ema.module.load_state_dict({k[4:]: v for k, v in t.items() if k.startswith("ema.")})
    ema.steps = meta["ema_steps"]
    state: dict = {}
    for k, v in t.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    opt.load_state_dict({"state": state, "param_groups": meta["opt_groups"]})
    sched.load_state_dict(meta["sched"])
    return meta["state"]


def train(cfg: TrainConfig, progress: bool = True) -> tuple[Path, dict]:
    """Train a model; returns (path stem of the saved model, final metrics)."""
    keep_freed_memory()
    distributed = int(os.environ.get("WORLD_SIZE", 1)) > 1
    device = pick_device(cfg.device)
    if distributed:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    else:
        rank, world = 0, 1
    torch.manual_seed(cfg.seed + rank), random.seed(cfg.seed + rank), np.random.seed(cfg.seed + rank)
    autocast = device.type == "cuda"
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)

    train_ds = build_dataset(cfg.dataset, cfg.root, cfg.train_split)
    val_ds = build_dataset(cfg.dataset, cfg.val_root or cfg.root, cfg.val_split)
    if cfg.limit:
        train_ds, val_ds = train_ds.subset(range(min(cfg.limit, len(train_ds)))), val_ds.subset(range(min(cfg.limit, len(val_ds))))
    classes = list(train_ds.classes)
    K = len(classes)
    norm = pretrained_config(cfg.backbone, cfg.pretrained)
    arch = cfg.architecture(K)
    adjacency = cooccurrence_probability(train_ds.targets, train_ds.masks) if cfg.head == "gcn" else None
    model = MultiLabelModel(arch, K, pretrained=cfg.pretrained, adjacency=adjacency)
    loss_args = dict(cfg.loss_args)
    if cfg.loss == "am-binary":
        loss_args["s"] = arch["scale"]
    criterion = build_loss(cfg.loss, **loss_args)
    log(f"imgtag train: {cfg.backbone} + {cfg.neck} + {cfg.head} / {cfg.loss} on {cfg.dataset}:{cfg.train_split} "
        f"({len(train_ds)} images, {K} classes) → val {len(val_ds)}; device {device}")

    prefix, rest = model.split(cfg.freeze_stages)
    prefix.requires_grad_(False).eval()
    n_views = cache_views(cfg)
    use_cache = cfg.cache and cfg.freeze_stages != 0 and n_views > 0
    workers = cfg.workers
    if use_cache:
        key = {"backbone": cfg.backbone, "pretrained": str(cfg.pretrained)}
        stages, k = model.stage_list(), model.frozen_count(cfg.freeze_stages)
        kw = dict(batch_size=max(cfg.batch_size, 32), workers=workers, device=str(device))

        def cache(paths, view: int) -> torch.Tensor:
            return cached_features(stages, k, paths, cfg.size, norm["mean"], norm["std"], View(view, cfg.augment), key_parts=key, **kw)

        feats = [cache(train_ds.paths, v) for v in range(n_views)]
        val_feats = cache(val_ds.paths, 0)
        log(f"cached frozen features {tuple(feats[0].shape[1:])} for {len(feats)}×{len(train_ds)} train + {len(val_ds)} val images")
        train_set = TensorDataset(torch.cat(feats), train_ds.targets.repeat(len(feats), 1), train_ds.masks.repeat(len(feats), 1))
        sampler_len = len(train_ds)  # one epoch = each image once, in a random variant
        val_loader = DataLoader(TensorDataset(val_feats), batch_size=64)
        stem_fn = lambda x: x.float()  # noqa: E731
    else:
        train_set = ImageFiles(train_ds.paths, cfg.size, view=Augment(cfg.augment))
        sampler_len = len(train_set)
        val_loader = None
        stem_fn = prefix
    model.to(device)
    if device.type == "cuda" or not use_cache:
        model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=(0.9, 0.999))
    steps_per_epoch = math.ceil(sampler_len / (cfg.batch_size * world))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=cfg.epochs * steps_per_epoch, pct_start=0.2)
    ema = EMA(model, cfg.ema)
    ddp_rest = nn.parallel.DistributedDataParallel(rest) if distributed else rest

    state = {"epoch": 0, "best_map": -1.0, "best_epoch": -1, "history": [], "epochs": cfg.epochs}
    ckpt = out / "last.safetensors"
    if cfg.resume and ckpt.exists():
        state = _load_checkpoint(ckpt, model, ema, opt, sched)
        if state.get("epochs", cfg.epochs) != cfg.epochs:
            raise ValueError(f"{ckpt}: was trained with --epochs {state['epochs']}; resume with the same schedule")
        log(f"resumed from {ckpt} at epoch {state['epoch']}")
    first_epoch = state["epoch"]

    def sample_indices(epoch: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        idx = torch.randperm(sampler_len, generator=g)
        if use_cache and n_views > 1:  # pick one of the cached views of each image
            idx = idx + sampler_len * torch.randint(0, n_views, (sampler_len,), generator=g)
        return idx[rank::world]

    def val_scores(m: MultiLabelModel) -> np.ndarray:
        p, r = m.split(cfg.freeze_stages)
        if use_cache:
            return predict_scores(r, val_loader, device, autocast)
        loader = (normalize(b.images, norm["mean"], norm["std"]) for b in iter_batches(val_ds.paths, cfg.size, 32, workers))
        return predict_scores(m, loader, device, autocast)

    vt, vm = val_ds.targets.numpy(), val_ds.masks.numpy()
    best_scores = None
    for epoch in range(state["epoch"], cfg.epochs):
        rest.train()
        prefix.eval()
        t0, total, seen = time.time(), 0.0, 0
        idx = sample_indices(epoch)
        if use_cache:  # index the cached tensors directly: no per-sample collation
            batches = (tuple(t[idx[i:i + cfg.batch_size]] for t in train_set.tensors) for i in range(0, len(idx), cfg.batch_size))
        else:
            decoded = image_loader(train_set, cfg.batch_size, workers if workers is not None else min(4, os.cpu_count() or 1),
                                   sampler=idx.tolist(), prefetch=2)
            batches = (_with_targets(b, train_ds) for b in decoded)
        bar = _progress_bar(f"epoch {epoch + 1}/{cfg.epochs}", steps_per_epoch) if progress and rank == 0 else None
        for xb, yb, mb in batches:
            if bar:
                bar.advance(bar.task_ids[0])
            xb, yb, mb = xb.to(device, non_blocking=True), yb.to(device), mb.to(device)
            if not use_cache:
                xb = normalize(xb, norm["mean"], norm["std"]).contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                with torch.no_grad():
                    feats = stem_fn(xb)
                logits = ddp_rest(feats)
            loss = criterion(logits.float(), yb, mb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            ema.update(model)
            total += loss.item() * len(xb)
            seen += len(xb)
        if bar:
            bar.stop()
        state["epoch"] = epoch + 1
        if rank == 0:
            s_reg, s_ema = val_scores(model), val_scores(ema.module)
            m_reg = evaluate_scores(s_reg, vt, vm)["mAP"]
            m_ema = evaluate_scores(s_ema, vt, vm)["mAP"]
            better = max(m_reg, m_ema)
            state["history"].append({"epoch": epoch + 1, "loss": total / max(seen, 1), "map": m_reg, "map_ema": m_ema, "seconds": time.time() - t0})
            log(f"epoch {epoch + 1}/{cfg.epochs} loss {total / max(seen, 1):.4f} val mAP {m_reg:.2f} (EMA {m_ema:.2f}) {time.time() - t0:.0f}s")
            if better > state["best_map"]:
                state["best_map"], state["best_epoch"] = better, epoch + 1
                src = ema.module if m_ema >= m_reg else model
                best_scores = s_ema if m_ema >= m_reg else s_reg
                atomic_write_bytes(out / "best.safetensors", save({k: v.detach().cpu().contiguous() for k, v in src.state_dict().items()}))
            _save_checkpoint(ckpt, model, ema, opt, sched, state)
        stop = torch.tensor([epoch + 1 - state.get("best_epoch", 0) > cfg.patience], dtype=torch.int)
        if distributed:
            dist.broadcast(stop, 0)
        if stop.item():
            log(f"early stop: no val mAP gain for {cfg.patience} epochs")
            break
        if cfg.stop_after and epoch + 1 - first_epoch >= cfg.stop_after:
            log(f"stopping after {cfg.stop_after} epochs as asked; continue with --resume")
            break

    result: dict = {}
    stem = out / (cfg.name or "model")
    if rank == 0:
        model.load_state_dict(load_file(str(out / "best.safetensors")))
        if best_scores is None:
            best_scores = val_scores(model)
        thresholds = calibrate_thresholds(best_scores, vt, vm)
        at_half = evaluate_scores(best_scores, vt, vm, thresholds=0.5)
        at_cal = evaluate_scores(best_scores, vt, vm, thresholds=np.asarray(thresholds))
        result = {
            "dataset": f"{cfg.dataset}:{cfg.val_split}", "mAP": at_half["mAP"], "ap_mode": "non-interpolated",
            "at_0.5": {k: at_half[k] for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")},
            "at_calibrated": {k: at_cal[k] for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")},
            "per_class_ap": dict(zip(classes, [float(a) for a in at_half["AP"]])),
            "best_epoch": state["best_epoch"], "history": state["history"],
        }
        recipe = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in ("out", "resume", "workers", "command")}
        card = ModelCard(name=cfg.name or stem.name, labels=classes, architecture=arch, input_size=cfg.size,
                         mean=norm["mean"], std=norm["std"], thresholds=[float(t) for t in thresholds],
                         recipe={"command": cfg.command, **recipe}, metrics=result,
                         description=f"{cfg.backbone} + {cfg.head} head, {cfg.loss} loss, trained on {cfg.dataset}:{cfg.train_split}")
        save_model(model, card, stem)
        log(f"saved {stem}.safetensors + {stem}.json: val mAP {result['mAP']:.2f}, CF1 {at_cal['CF1']:.2f}, OF1 {at_cal['OF1']:.2f} (calibrated thresholds)")
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return stem, result
