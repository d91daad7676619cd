"""Precision as a property of the exported graph: per-precision thresholds in the card, the OpenVINO runner
(skipped without openvino), ``--precision``/``--runtime auto``, a light ``imgtag --help`` and the GPU check's
CPU dry run."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from imgtag.card import ModelCard, ModelFileError, read_card

ROOT = Path(__file__).resolve().parents[1]


def _card(**kw) -> ModelCard:
    return ModelCard(name="c", labels=["a", "b"], architecture={}, thresholds=[0.5, 0.6], **kw)


def test_thresholds_by_precision_round_trip_and_lookup(tmp_path):
    card = _card(thresholds_by_precision={"int8": [0.4, 0.7], "openvino:int8": [0.3, 0.8]})
    f = tmp_path / "c.json"
    f.write_text(json.dumps(card.to_dict()))
    back = read_card(f)
    assert "source" not in card.to_dict() and back.source == str(f)
    assert back.class_thresholds() == [0.5, 0.6] == back.class_thresholds(precision="fp32", runtime="openvino")
    assert back.class_thresholds(precision="int8") == [0.4, 0.7]
    assert back.class_thresholds(precision="int8", runtime="onnx") == [0.4, 0.7]
    assert back.class_thresholds(precision="int8", runtime="openvino") == [0.3, 0.8]
    with pytest.raises(KeyError, match="bf16"):
        back.class_thresholds(precision="bf16")


def test_thresholds_by_precision_length_checked(tmp_path):
    d = _card().to_dict()
    d["thresholds_by_precision"] = {"int8": [0.5]}
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(d))
    with pytest.raises(ModelFileError, match="1 int8 thresholds for 2 labels"):
        read_card(f)


def test_cli_import_is_light():
    """`imgtag --help` must not import torch (timing: benchmarks/bench_help.py; a busy box makes wall time flaky)."""
    code = ("import sys, imgtag.cli; heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'numpy', 'PIL') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f"imported at CLI import: {r.stdout.strip()} {r.stderr[-500:]}"

