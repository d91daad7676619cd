"""The runner registry: a new runtime is one class, registered, and the Tagger and the CLI take it unchanged."""
from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from imgtag.cli import app
from imgtag.runtime.registry import RUNNERS, get_runner, register_runner, runner_names
from imgtag.runtime.tagger import Tagger


@pytest.fixture()
def brightness_runner():
    """A trivial runner: label k's logit is channel k's mean brightness, centred (so scores follow colour)."""

    @register_runner("brightness-test")
    class Brightness:
        precisions = ("fp32", "int8")
        auto_priority = -1

        @classmethod
        def available(cls, device):
            return None if device.type == "cpu" else "CPU only"

        def __init__(self, net, card, device, precision=None, gain=1.0):
            self.k, self.gain, self.precision = card.num_classes, gain, precision or "fp32"
            self.description = f"brightness test runner, {self.precision}"

        def __call__(self, images):
            x = np.asarray(images, dtype=np.float32).mean(axis=(2, 3)) / 255.0 - 0.5  # N×3
            return (self.gain * 20 * np.resize(x, (len(x), self.k))).astype(np.float32)

    yield Brightness
    RUNNERS.pop("brightness-test")


def test_a_registered_runner_tags_through_the_tagger(tiny_model, data_dir, brightness_runner):
    assert "brightness-test" in runner_names() and get_runner("brightness-test") is brightness_runner
    t = Tagger(str(tiny_model), runtime="brightness-test", workers=0, threshold=0.5, gain=2.0, precision="int8")
    assert t.runtime == "brightness-test" and t.runner.gain == 2.0
    assert "brightness test runner, int8" in t.description
    red = next(p for p in sorted(data_dir.iterdir()) if p.suffix.lower() in (".jpg", ".png"))
    (pred,) = t.tag_paths([red])
    assert pred.error is None and pred.scores.shape == (3,)
    assert [lab.label for lab in pred.labels] == [t.labels[i] for i in np.argsort(-pred.scores) if pred.scores[i] >= 0.5]
    with pytest.raises(ValueError, match="runs fp32, int8, not 'bf16'"):
        Tagger(str(tiny_model), runtime="brightness-test", workers=0, precision="bf16")


def test_the_cli_takes_a_registered_runner_unchanged(tiny_model, photos, brightness_runner):
    r = CliRunner().invoke(app, ["tag", str(photos[0]), "-m", str(tiny_model), "--runtime", "brightness-test", "-t", "0"])
    assert r.exit_code == 0, r.stderr
    assert "runtime brightness-test (brightness test runner, fp32)" in " ".join(r.stderr.split())  # rich wraps
    assert len(json.loads(r.stdout)["labels"]) == 3
    r = CliRunner().invoke(app, ["tag", str(photos[0]), "-m", str(tiny_model), "--runtime", "nope"])
    assert r.exit_code == 2 and "brightness-test" in r.stderr and "onnx" in r.stderr


def test_auto_falls_back_past_a_runner_that_fails(tiny_model):
    @register_runner("failing-test")
    class Failing:
        auto_priority = 1000  # auto tries it first on the CPU

        @classmethod
        def available(cls, device):
            return None

        def __init__(self, net, card, device, precision=None):
            raise RuntimeError("cannot express this model\nsecond line")

    try:
        t = Tagger(str(tiny_model), device="cpu", runtime="auto", workers=0)
        assert t.runtime != "failing-test"
        assert t.fallback == "failing-test failed (RuntimeError: cannot express this model)"
        with pytest.raises(RuntimeError, match="--runtime failing-test: RuntimeError: cannot express this model$"):
            Tagger(str(tiny_model), device="cpu", runtime="failing-test", workers=0)
    finally:
        RUNNERS.pop("failing-test")


def test_registering_a_taken_name_fails(brightness_runner):
    with pytest.raises(ValueError, match="already registered"):
        register_runner("brightness-test")(type("Other", (), {}))
