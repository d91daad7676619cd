"""Every failure ends in one clear line and nothing is lost: odd paths, closed streams, bad options,
full disks, signals, concurrent runs (issue 16). Process-level cases run `python -m imgtag` for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imgtag.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, ["tag", *map(str, args)], input=input)


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def error_lines(stderr: str) -> list[str]:
    """stderr lines other than the device line and the summary."""
    return [ln for ln in stderr.splitlines()
            if ln.startswith("imgtag: ") and "tagged," not in ln and not ln.startswith("imgtag: device")]


@pytest.fixture()
def two(tmp_path, photos):
    d = tmp_path / "two"
    d.mkdir()
    for name, src in (("a.jpg", photos[0]), ("b.jpg", photos[1])):
        (d / name).write_bytes(src.read_bytes())
    return d


def test_symlink_loop_does_not_stop_the_run(tiny_model, two):
    """F1: `ln -s self.jpg self.jpg` made the walk raise ELOOP: traceback, exit 1, 0 records."""
    os.symlink("self.jpg", two / "self.jpg")
    r = run(two, "-m", tiny_model, "--runtime", "torch")
    assert r.exit_code == 1, r.output
    assert [Path(x["path"]).name for x in records(r.stdout)] == ["a.jpg", "b.jpg"]
    assert error_lines(r.stderr) == [f"imgtag: {two / 'self.jpg'}: cannot read: too many levels of symbolic links"]
    assert "Traceback" not in r.output


def test_missing_listed_path_is_one_line(tiny_model, two, tmp_path):
    """F4: one missing path in --files-from stopped the whole run (exit 2) before anything was tagged."""
    lst = tmp_path / "list.txt"
    lst.write_text(f"{two / 'a.jpg'}\n{two / 'gone.jpg'}\n{two / 'b.jpg'}\n")
    r = run("-T", lst, "-m", tiny_model, "--runtime", "torch")
    assert r.exit_code == 1, r.output
    assert len(records(r.stdout)) == 2
    assert error_lines(r.stderr) == [f"imgtag: {two / 'gone.jpg'}: no such file or directory"]
    assert "2 tagged, 0 skipped, 1 failed of 3" in r.stderr
    r = run(two / "gone.jpg", "-m", tiny_model)  # a missing argument stays a usage error
    assert r.exit_code == 2 and "no such file or directory" in r.stderr


def test_files_from_problems_are_one_line(tiny_model, two, tmp_path):
    """F13/F3: `-T DIR` and a missing list gave tracebacks; a non-UTF-8 name in a -0 list too."""
    for bad in (two, tmp_path / "nolist.txt"):
        r = run("-T", bad, "-m", tiny_model)
        assert r.exit_code == 2 and "Traceback" not in r.output
        assert error_lines(r.stderr) == [error_lines(r.stderr)[0]] and f"--files-from {bad}: cannot read" in r.stderr
