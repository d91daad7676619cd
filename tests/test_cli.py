"""The CLI is built from the registries and from TrainConfig; ``imgtag --help`` imports no torch."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import typer
from typer.testing import CliRunner

from imgtag.cli import app
from imgtag.engine.config import TrainConfig
from imgtag.io.writers import WRITERS


def test_help_imports_no_torch():
    code = ("import sys; from typer.testing import CliRunner; from imgtag.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
            "r = CliRunner().invoke(app, ['tag', '--help']); assert r.exit_code == 0, r.output; "
            "heavy = sorted(m for m in ('torch', 'numpy', 'PIL', 'rich') if m in sys.modules); "
            "assert not heavy, heavy")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_train_options_are_trainconfig_fields_with_its_defaults():
    cmd = typer.main.get_command(app).commands["train"]
    params = {p.name: p for p in cmd.params}
    fields = [f for f in dataclasses.fields(TrainConfig) if f.metadata.get("cli", True)]
    assert sorted(params) == sorted(f.name for f in fields)
    for f in fields:
        if f.default_factory is dict:
            assert params[f.name].multiple and f.metadata["flag"] in params[f.name].opts
        elif f.name != "root":  # root: None on the command line, then the dataset's default folder
            assert params[f.name].default == f.default, f.name
    assert "--cache" in params["cache"].opts and "--no-cache" in params["cache"].secondary_opts
    assert "-b" in params["batch_size"].opts


def test_train_help_lists_registry_choices_and_bad_choices_exit_2(tmp_path):
    from imgtag.models.heads import HEADS
    from imgtag.models.losses import LOSSES

    r = CliRunner().invoke(app, ["train", "--help"], terminal_width=400)
    assert r.exit_code == 0
    assert " | ".join(HEADS) in r.output and " | ".join(LOSSES) in r.output
    r = CliRunner().invoke(app, ["train", "--head", "unicorn", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "unicorn" in r.stderr and "csra" in r.stderr
    r = CliRunner().invoke(app, ["train", "--head-opt", "no-equals-sign", "--root", str(tmp_path)])
    assert r.exit_code == 2 and "key=value" in r.stderr


def test_tag_choices_come_from_the_registries(tmp_path):
    r = CliRunner().invoke(app, ["tag", str(tmp_path), "--format", "xml"])
    assert r.exit_code == 2 and all(f in r.stderr for f in WRITERS)
    r = CliRunner().invoke(app, ["tag", str(tmp_path), "--on-existing", "keep"])
    assert r.exit_code == 2 and "skip, merge, overwrite" in r.stderr
