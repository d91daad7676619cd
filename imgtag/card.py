"""A model is one file set: ``NAME.safetensors`` (weights) + ``NAME.json`` (the model card).

The card holds everything needed to rebuild and use the model: architecture, label names, input size,
normalisation, per-class thresholds, the training recipe and measured metrics. Weights are only ever read
with safetensors: a pickle file (``torch.save`` output) is refused, never unpickled.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save

from imgtag.io.atomic import atomic_write_bytes

CARD_VERSION = 1
SHIPPED_MODELS = Path(__file__).resolve().parent / "weights"  # package data: a wheel install carries them


class ModelFileError(Exception):
    """A model file is missing, unsafe or inconsistent; str() is one line naming the file."""


@dataclass
class ModelCard:
    name: str
    labels: list[str]
    architecture: dict[str, Any]
    input_size: int = 352
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    thresholds: list[float] | None = None
    paths: list[str] | None = None  # each label's hierarchy path ("Animals|Pets|dog"); None = the labels themselves
    #: thresholds calibrated on the scores of another graph/runtime than fp32, on the same validation data:
    #: key "int8" (the reference runtime's int8 graph) or "RUNTIME:PRECISION" (e.g. "openvino:int8") when a
    #: runtime's scores at that precision differ from the reference's. ``thresholds`` stays the fp32 set.
    thresholds_by_precision: dict[str, list[float]] = field(default_factory=dict)
    #: precision tagging uses on the CPU when none is asked for: "int8" only when the card's int8 graph scored
    #: within 0.3 mAP and 0.5 CF1 of fp32 on validation, each at its own thresholds (tools/ship_precision.py)
    cpu_precision: str = "fp32"
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    heads: list[dict[str, Any]] | None = None  # logits slices when the model has more than its main head
    vocabulary: dict[str, Any] | None = None  # keyword tree over the heads (imgtag/vocab/score.py)
    #: the model whose weights this one builds on ({"model": name or path, "weights_sha256"}): its safetensors
    #: then holds only what it adds (a model from `imgtag learn`: the "user" head); load_model merges both
    base: dict[str, Any] | None = None
    weights_sha256: str = ""
    weights_dtype: str = "float32"
    imgtag_version: str = ""
    card_version: int = CARD_VERSION
    #: where this card was read from ("" for a card built in memory); not written to the card file
    source: str = field(default="", compare=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def class_thresholds(self, default: float = 0.5, precision: str | None = None,
                         runtime: str | None = None) -> list[float]:
        """Per-class thresholds for scores of ``precision`` (None/"fp32": ``thresholds``) as run by ``runtime``:
        ``thresholds_by_precision["RUNTIME:PRECISION"]``, else ``["PRECISION"]``; KeyError when the card has
        none for a non-fp32 precision (thresholds calibrated on other scores would silently change F1)."""
        if precision and precision != "fp32":
            key = self.precision_key(precision, runtime)
            if key is None:
                raise KeyError(f"model {self.name} has no thresholds calibrated for {precision}"
                               + (f" on {runtime}" if runtime else ""))
            return list(self.thresholds_by_precision[key])
        return list(self.thresholds) if self.thresholds else [default] * self.num_classes

    def precision_key(self, precision: str, runtime: str | None = None) -> str | None:
        """The ``thresholds_by_precision`` key that serves ``precision`` on ``runtime``, or None."""
        for key in ([f"{runtime}:{precision}"] if runtime else []) + [precision]:
            if key in self.thresholds_by_precision:
                return key
        return None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("source")
        return d

    def graph_path(self, precision: str) -> Path | None:
        """The exported graph shipped beside the card for ``precision`` (``NAME.int8.onnx``), if there is one."""
        if not self.source:
            return None
        p = Path(self.source).with_suffix(f".{precision}.onnx")
        return p if p.is_file() else None

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "card") -> "ModelCard":
        known = {f.name for f in dataclasses.fields(cls)} - {"source"}
        missing = [k for k in ("name", "labels", "architecture") if k not in d]
        if missing:
            raise ModelFileError(f"{source}: model card lacks {', '.join(missing)}")
        card = cls(**{k: v for k, v in d.items() if k in known})
        if card.thresholds is not None and len(card.thresholds) != card.num_classes:
            raise ModelFileError(f"{source}: {len(card.thresholds)} thresholds for {card.num_classes} labels")
        if isinstance(card.input_size, bool) or not isinstance(card.input_size, int) or not 8 <= card.input_size <= 8192:
            raise ModelFileError(f"{source}: input_size must be a whole number of pixels from 8 to 8192, "
                                 f"not {card.input_size!r}")
        if card.paths is not None and len(card.paths) != card.num_classes:
            raise ModelFileError(f"{source}: {len(card.paths)} label paths for {card.num_classes} labels")
        if card.vocabulary is not None:
            if not card.heads or card.heads[0].get("size") != card.num_classes:
                raise ModelFileError(f"{source}: a vocabulary needs 'heads', the first one of {card.num_classes} outputs")
            from imgtag.vocab.score import Vocabulary

            try:
                Vocabulary(card.heads, card.vocabulary.get("keywords", []), card.vocabulary.get("separator", "|"),
                           card.vocabulary.get("veto"))
            except (ValueError, KeyError, TypeError) as e:
                raise ModelFileError(f"{source}: bad vocabulary ({e})") from e
        for key, thr in (card.thresholds_by_precision or {}).items():
            if len(thr) != card.num_classes:
                raise ModelFileError(f"{source}: {len(thr)} {key} thresholds for {card.num_classes} labels")
        return card

    @property
    def num_outputs(self) -> int:
        """Width of the model's logits row: all heads together."""
        return sum(int(h["size"]) for h in self.heads) if self.heads else self.num_classes


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def check_safetensors(path: str | Path) -> None:
    """Refuse anything that is not a safetensors file (pickle, zip, truncated) before it is parsed."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = path.stat().st_size
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror})") from e
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise ModelFileError(f"{path}: is a pickle/torch.save file; imgtag never loads pickle, convert it to safetensors")
    if len(head) < 9:
        raise ModelFileError(f"{path}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", head[:8])
    if head[8:9] != b"{" or n + 8 > size:
        raise ModelFileError(f"{path}: not a safetensors file (bad header)")


def save_model(model: torch.nn.Module, card: ModelCard, stem: str | Path, dtype: torch.dtype = torch.float32) -> tuple[Path, Path]:
    """Write ``stem.safetensors`` and ``stem.json`` atomically; returns both paths."""
    from imgtag import __version__

    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    wpath, cpath = stem.with_suffix(".safetensors"), stem.with_suffix(".json")
    sd = {k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(wpath, save(sd, metadata={"format": "pt", "imgtag_card": card.name}))
    card.weights_sha256 = sha256_file(wpath)
    card.weights_dtype = str(dtype).replace("torch.", "")
    card.imgtag_version = __version__
    atomic_write_bytes(cpath, (json.dumps(card.to_dict(), indent=2, ensure_ascii=False) + "\n").encode())
    return wpath, cpath


def portable_recipe(card: "ModelCard") -> "ModelCard":
    """The card with machine-specific absolute data paths in its recipe reduced to their last two parts
    (``/home/me/data/VOCdevkit/VOC2007`` → ``VOCdevkit/VOC2007``): a shipped card names no training machine."""
    recipe = dict(card.recipe)
    for key in ("root", "val_root"):
        v = recipe.get(key)
        if isinstance(v, str) and Path(v).is_absolute():
            recipe[key] = "/".join(Path(v).parts[-2:])
    return dataclasses.replace(card, recipe=recipe)


def user_models_dir() -> Path:
    """Where `imgtag learn --out NAME` saves a model: $IMGTAG_USER_MODELS, else the user data dir's models/."""
    from platformdirs import user_data_dir

    return Path(os.environ.get("IMGTAG_USER_MODELS") or Path(user_data_dir("imgtag")) / "models")


def models_dirs() -> list[Path]:
    """Where model names are looked up: $IMGTAG_MODELS (os.pathsep-separated), the user's models (imgtag learn),
    then the shipped models (imgtag/weights/)."""
    dirs = [Path(p) for p in os.environ.get("IMGTAG_MODELS", "").split(os.pathsep) if p]
    return dirs + [user_models_dir(), SHIPPED_MODELS]


def default_model_name() -> str:
    f = SHIPPED_MODELS / "DEFAULT"
    return f.read_text().strip() if f.exists() else "default"


def resolve_model(spec: str | Path | None) -> tuple[Path, Path]:
    """Find (weights, card) for a model given as a name, a .json/.safetensors path, a stem or a directory."""
    spec = str(spec) if spec else "default"
    if spec == "default":
        spec = default_model_name()
    p = Path(spec).expanduser()
    cands: list[Path] = []
    if p.is_dir():
        jsons = sorted(p.glob("*.json"))
        cands = [p / "model"] + ([jsons[0].with_suffix("")] if len(jsons) == 1 else [])
    elif p.suffix in (".json", ".safetensors"):
        cands = [p.with_suffix("")]
    else:
        cands = [p] + [d / spec for d in models_dirs()]
    for stem in cands:
        w, c = stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")
        if c.exists() and w.exists():
            return w, c
        if c.exists() or w.exists():
            raise ModelFileError(f"{stem}: model file set incomplete: need both {w.name} and {c.name}")
    raise ModelFileError(f"{spec}: no such model (looked for NAME.json + NAME.safetensors in {', '.join(str(d) for d in models_dirs())}); see `imgtag models`")


def read_card(path: str | Path) -> ModelCard:
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{path}: unreadable model card ({e})") from e
    card = ModelCard.from_dict(d, str(path))
    card.source = str(path)
    return card


def read_weights(path: str | Path, verify_sha256: str = "") -> dict[str, torch.Tensor]:
    check_safetensors(path)
    if verify_sha256 and sha256_file(path) != verify_sha256:
        raise ModelFileError(f"{path}: weights do not match the card's sha256 (file changed or wrong card)")
    try:
        sd = load_file(str(path), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises several types
        raise ModelFileError(f"{path}: corrupt safetensors file ({e})") from e
    return {k: (v.float() if v.is_floating_point() else v) for k, v in sd.items()}


def list_models() -> list[tuple[Path, ModelCard]]:
    seen, out = set(), []
    for d in models_dirs():
        for c in sorted(d.glob("*.json")) if d.is_dir() else []:
            if c.stem in seen or not c.with_suffix(".safetensors").exists():
                continue
            try:
                out.append((c, read_card(c)))
                seen.add(c.stem)
            except ModelFileError:
                continue
    return out
