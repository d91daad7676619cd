"""Every failure ends in one clear line and nothing is lost: odd paths, closed streams, bad options,
full disks, signals, concurrent runs (issue 16). Process-level cases run `python -m imgtag` for real."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shlex
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


# ----------------------------------------------------------------------------- decoding


def test_16bit_decode_memory_is_bounded(tmp_path):
    """F9: a 16-bit image went through int64 (~25 bytes per pixel: 4.1 GB for a legal 13000x13000 PNG)."""
    import tracemalloc

    import numpy as np
    from PIL import Image

    from imgtag.io.decode import load_pil, load_resized

    w, h = 3000, 2000
    a = np.tile(np.linspace(0, 65535, w).astype(np.uint16), (h, 1))
    Image.fromarray(a).save(tmp_path / "deep.png")
    for load in (lambda: load_resized(tmp_path / "deep.png", 64), lambda: load_pil(tmp_path / "deep.png")):
        tracemalloc.start()
        try:
            img = load()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        px = np.asarray(img)
        assert px[0, 0, 0] <= 4 and px[0, -1, 0] >= 251  # full range to full range still
        extra = 3 * w * h if not isinstance(img, np.ndarray) else 0  # load_pil returns full-size RGB
        band = 12 * 2**20  # one band of rows in flight (~1 M pixels in uint16 and uint32)
        assert peak - extra < w * h + band, f"{peak / (w * h):.1f} bytes per pixel"  # the 8-bit copy + one band


def test_broken_exif_warns_nothing(tmp_path, capfd):
    """Minor: a bad EXIF block printed Pillow's warning, naming no file; the block is ignored, as documented."""
    import struct
    import warnings

    from PIL import Image

    from imgtag.io.decode import load_pil, load_resized

    ifd = struct.pack("<H", 1) + struct.pack("<HHII", 0x010F, 2, 100, 5000) + b"\0\0\0\0"  # data past the end
    Image.new("RGB", (32, 32)).save(tmp_path / "x.jpg", exif=b"Exif\0\0II*\0" + struct.pack("<I", 8) + ifd)
    from imgtag.runtime.loader import exif_orientation  # the GPU path's probe

    # recorded, not raised: the readers catch their own exceptions, so an "error" filter could not fail this test
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert load_resized(tmp_path / "x.jpg", 16).shape == (16, 16, 3)
        assert load_pil(tmp_path / "x.jpg").size == (32, 32)
        assert exif_orientation((tmp_path / "x.jpg").read_bytes()) == 1
    assert not seen, [str(w.message) for w in seen]


# ----------------------------------------------------------------------------- outputs and standard streams


def test_output_checked_before_the_model_loads(tmp_path, two, read_only_dir):
    """F11: -o into a missing or read-only directory failed only after the model loaded, naming the temp file."""
    for out, reason in ((tmp_path / "nodir" / "o.jsonl", f"no such directory: {tmp_path / 'nodir'}"),
                        (read_only_dir / "o.jsonl", "(permission denied|read-only file system)")):
        r = run(two, "-o", out, "-m", tmp_path / "no-such-model.json")  # the model would fail: the output fails first
        assert r.exit_code == 1
        assert re.fullmatch(f"imgtag: error: cannot write {re.escape(str(out))}: {reason}", r.stderr.strip()), r.stderr
        assert ".tmp" not in r.stderr


def test_foreign_existing_output_fails_before_the_model_loads(tmp_path, two):
    """F10: a foreign file given as -o failed after the model loaded, with a message naming no file."""
    out = tmp_path / "o.jsonl"
    out.write_text("path,labels\na.jpg,dog\n")
    r = run(two, "-o", out, "-m", tmp_path / "no-such-model.json")
    assert r.exit_code == 2 and r.stderr.startswith(f"imgtag: error: {out}: line 1 is not a JSON record")
    assert len(r.stderr.strip().splitlines()) == 1
    assert out.read_text() == "path,labels\na.jpg,dog\n"  # untouched


def test_cut_off_existing_output_is_resumed(tiny_model, two, tmp_path):
    """F10: the cut-off last line a killed run leaves gave "Expecting value" and no file name; it is now tolerated."""
    out = tmp_path / "o.jsonl"
    a = str(two / "a.jpg")
    out.write_text(json.dumps({"path": a, "labels": []}) + '\n{"path": "' + str(two))
    r = run(two, "-o", out, "--on-existing", "skip", "-m", tiny_model, "--runtime", "torch")
    assert r.exit_code == 0, r.output
    assert error_lines(r.stderr) == [f"imgtag: {out}: line 2 is incomplete (an interrupted run?); ignored"]
    assert "1 tagged, 1 skipped" in r.stderr
    assert sorted(x["path"] for x in records(out.read_text())) == [a, str(two / "b.jpg")]


def imgtag(*args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, shell_redirect="", env=None,
           timeout=300):
    """`python -m imgtag ARGS` from the worktree root as a real process; shell_redirect (e.g. "2>&-") via sh."""
    cmd = " ".join(["exec", shlex.quote(sys.executable), "-m", "imgtag", *map(shlex.quote, map(str, args)), shell_redirect])
    return subprocess.run(["sh", "-c", cmd], cwd=ROOT, stdin=stdin, stdout=stdout, stderr=stderr,
                          env={**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1", **(env or {})}, timeout=timeout)


@pytest.mark.slow
def test_closed_stderr_does_not_corrupt_stdout(tiny_model, two):
    """F13: with `2>&-`, error lines and the summary went into stdout, inside the JSONL."""
    (two / "bad.jpg").write_text("not an image")
    p = imgtag("tag", two, "-m", tiny_model, "--runtime", "torch", "-j", "0", shell_redirect="2>&-", stderr=None)
    assert p.returncode == 1
    recs = records(p.stdout.decode())  # every line is JSON
    assert sorted(Path(r["path"]).name for r in recs) == ["a.jpg", "b.jpg", "bad.jpg"]


@pytest.mark.slow
def test_closed_or_full_stdout_is_one_line(tiny_model, two):
    """F13/F7: `>&-` gave "RuntimeError: writer is not open"; `> /dev/full` a traceback."""
    p = imgtag("tag", two, "-m", tiny_model, shell_redirect=">&-", stdout=None)
    assert p.returncode == 1 and p.stderr.decode().strip() == "imgtag: error: cannot write standard output: it is closed"
    with open("/dev/full", "wb") as full:  # always there on Linux
        p = imgtag("tag", two, "-m", tiny_model, "--runtime", "torch", "-j", "0", "-q", stdout=full)
    assert p.returncode == 1
    assert p.stderr.decode().strip() == "imgtag: error: cannot write standard output: no space left on device"


def test_closed_stdin_with_files_from_is_one_line(tiny_model):
    """F13: `-T - <&-` gave a traceback."""
    p = imgtag("tag", "-T", "-", "-m", tiny_model, shell_redirect="<&-", stdin=None, timeout=120)
    assert p.returncode == 2
    assert p.stderr.decode().strip() == "imgtag: error: --files-from -: cannot read: standard input is closed"


@pytest.mark.slow
def test_full_disk_output_is_one_line(tiny_model, two, small_fs):
    """F7: `-o` on a full disk gave a traceback and left the hidden temp file."""
    with open(small_fs / "filler", "wb", buffering=0) as f:  # fill the disk but for one block
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)
    os.truncate(small_fs / "filler", os.path.getsize(small_fs / "filler") - 4096)
    out = small_fs / "o.jsonl"
    for i in range(40):  # 42 records with long names: more than the block left
        (two / (f"{i:03d}" + "x" * 200 + ".jpg")).write_bytes((two / "a.jpg").read_bytes())
    p = imgtag("tag", two, "-o", out, "-m", tiny_model, "--runtime", "torch", "-j", "0", "-q", "-t", "0")  # a real process
    assert p.returncode == 1, p.stderr
    assert p.stderr.decode().strip() == f"imgtag: error: cannot write {out}: no space left on device"
    assert sorted(os.listdir(small_fs)) == ["filler"]  # no temp file, no lock file


@pytest.mark.slow
def test_sidecars_on_a_full_disk_stop_with_one_line(tiny_model, small_fs, photos):
    """F7: `-f xmp` on a full disk gave a traceback and left temp files."""
    for i in range(8):
        (small_fs / f"p{i:02d}.jpg").write_bytes(photos[0].read_bytes())
    with open(small_fs / "filler", "wb", buffering=0) as f:  # fill the disk up to the last byte
        for size in (4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\0" * size)
    p = imgtag("tag", small_fs, "-f", "xmp", "-m", tiny_model, "--runtime", "torch", "-j", "0", "-t", "0")  # a real process
    assert p.returncode == 1, p.stderr
    last = p.stderr.decode().strip().splitlines()[-1]
    assert re.fullmatch(f"imgtag: error: cannot write {re.escape(str(small_fs))}/p0\\d.jpg.xmp: no space left on device", last)
    assert not [p for p in os.listdir(small_fs) if p.endswith(".tmp")]


@pytest.mark.slow
def test_nothing_left_outside_imgtags_cache(tiny_model, two, tmp_path):
    """F16: a run made $TMPDIR/torchinductor_$USER (torch._dynamo, imported by timm) and onnxruntime's
    ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}; only imgtag's own cache may appear."""
    tmp, cache, home = tmp_path / "tmp", tmp_path / "cache", tmp_path / "home"
    tmp.mkdir()
    home.mkdir()
    env = {"TMPDIR": str(tmp), "IMGTAG_CACHE": str(cache), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
    os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    runtimes = ["torch"] + (["onnx"] if importlib.util.find_spec("onnxruntime") else [])
    for rt in runtimes:
        p = imgtag("tag", two, "-m", tiny_model, "--runtime", rt, "-j", "0", "-q", env=env)
        assert p.returncode == 0, p.stderr.decode()
    assert list(tmp.iterdir()) == []
    left = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert not [p for p in left if "Microsoft" in p or "onnxruntime" in p], left


@pytest.mark.slow
def test_non_utf8_name_is_tagged_and_resumable(tiny_model, two, tmp_path):
    """F3/B5: `caf\\xe9.jpg` aborted the run as a usage error (exit 2) after a few records, with any -o format;
    on stdout the JSONL carried a raw 0xE9 byte; `-T LIST -0` with such a name gave a traceback."""
    os.rename(two / "b.jpg", os.fsencode(two) + b"/caf\xe9.jpg")
    for fmt in ("jsonl", "csv", "txt", "json"):
        out = tmp_path / f"o.{fmt}"
        r = run(two, "-o", out, "-m", tiny_model, "--runtime", "torch", "-q")
        assert r.exit_code == 0, r.output
        assert out.stat().st_size > 20
    text = (tmp_path / "o.jsonl").read_bytes().decode("utf-8")  # valid UTF-8
    assert sorted(os.fsencode(Path(x["path"]).name) for x in records(text)) == [b"a.jpg", b"caf\xe9.jpg"]
    r = run(two, "-o", tmp_path / "o.jsonl", "--on-existing", "skip", "-m", tiny_model, "--runtime", "torch")
    assert r.exit_code == 0 and "0 tagged, 2 skipped" in r.stderr  # resume recognises the name
    lst = tmp_path / "list0"
    lst.write_bytes(os.fsencode(two) + b"/caf\xe9.jpg\0" + os.fsencode(two) + b"/a.jpg\0")  # find -print0
    r = run("-T", lst, "-0", "-m", tiny_model, "--runtime", "torch", "-q")
    assert r.exit_code == 0 and r.stdout.count("\\udce9") == 1
    r.stdout.encode("utf-8")  # what went to stdout is valid UTF-8 (CliRunner would have failed otherwise)


# ----------------------------------------------------------------------------- options, concurrent runs, signals


def run_main(monkeypatch, capsys, *args, env=None):
    """imgtag's real entry point in this process (one-line usage errors live there); returns (code, stderr)."""
    import signal

    from imgtag import cli

    import threading

    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # main() installs quiet hooks: restored after
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    for k, v in (env or {}).items():
        monkeypatch.setenv(k, v)
    try:
        with pytest.raises(SystemExit) as ei:
            cli.main([*map(str, args)])
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    return ei.value.code, capsys.readouterr().err


@pytest.mark.parametrize("cmd,opt,value,msg", [
    ("tag", "--top-k", "-1", "greater than or equal to 1"), ("tag", "--top-k", "0", "greater than or equal to 1"),
    ("tag", "-t", "2", "must be a number from 0 to 1, not 2.0"), ("tag", "-t", "nan", "must be a number from 0 to 1, not nan"),
    ("tag", "-t", "-1", "must be a number from 0 to 1, not -1.0"), ("tag", "-b", "0", "greater than or equal to 1"),
    ("tag", "-j", "-2", "greater than or equal to 0"), ("eval", "-t", "nan", "must be a number from 0 to 1"),
    ("learn", "-j", "-1", "greater than or equal to 0")])
def test_out_of_range_options_are_one_line_usage_errors(monkeypatch, capsys, two, cmd, opt, value, msg):
    """F14: --top-k -1 silently dropped the last label; -t 2, -t nan, -t -1 and -b 0 were accepted; a usage error
    was a three-line box."""
    extra = {"tag": [two], "eval": [], "learn": [two, "-o", "x"]}[cmd]
    code, err = run_main(monkeypatch, capsys, cmd, *extra, opt, value, "-m" if cmd != "learn" else "--base-model", "no-such-model")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("imgtag: error: Invalid value for") and msg in err, err


def test_card_with_bad_input_size_is_a_model_error(tiny_model, two, tmp_path):
    """F14: a card with input_size -5 made every image a "corrupt JPEG"."""
    card = json.loads(Path(tiny_model).read_text())
    card["input_size"] = -5
    (tmp_path / "bad.json").write_text(json.dumps(card))
    (tmp_path / "bad.safetensors").write_bytes(Path(tiny_model).with_suffix(".safetensors").read_bytes())
    r = run(two, "-m", tmp_path / "bad")
    assert r.exit_code == 2 and "input_size must be a whole number of pixels from 8 to 8192, not -5" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "corrupt" not in r.output


def test_unexpected_error_is_one_line_unless_debugging(monkeypatch, capsys, two):
    """No traceback reaches the user for anything unforeseen; IMGTAG_DEBUG=1 shows it."""
    import imgtag.engine.tag as engine_tag

    def boom(*a, **k):
        raise OSError(5, "Input/output error")
    monkeypatch.setattr(engine_tag, "run_tag", boom)
    monkeypatch.setattr("imgtag.cli._tagger", lambda *a, **k: None)
    code, err = run_main(monkeypatch, capsys, "tag", two)
    assert code == 1 and err == "imgtag: error: [Errno 5] Input/output error (OSError; IMGTAG_DEBUG=1 shows the traceback)\n"
    with pytest.raises(OSError):
        run_main(monkeypatch, capsys, "tag", two, env={"IMGTAG_DEBUG": "1"})


def hold_lock(out):
    """A real process holding -o's lock, as a first run does (from before its model loads until its output is in place)."""
    code = ("import sys, time; from imgtag.io.lock import output_lock\n"
            "with output_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(120)")
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "locked"
    return p


@pytest.mark.slow
def test_second_run_on_the_same_output_is_refused(tiny_model, two, tmp_path):
    """F8: two runs writing the same -o both exited 0 and the last one won."""
    out = tmp_path / "o.jsonl"
    out.write_text("")
    first = hold_lock(out)
    try:
        p = imgtag("tag", two, "-o", out, "-m", tiny_model, timeout=120)  # the second run, a real process too
    finally:
        first.kill()
        first.wait()
    assert p.returncode == 1
    assert p.stderr.decode().strip() == (f"imgtag: error: another imgtag run is writing {out}; "
                                         "wait for it to finish or choose another -o")
    assert out.read_text() == ""
    r = run(two, "-o", out, "-m", tiny_model, "--runtime", "torch", "-q")  # the kernel dropped the killed run's lock
    assert r.exit_code == 0 and len(records(out.read_text())) == 2
    assert sorted(os.listdir(tmp_path)) == ["o.jsonl", "two"]  # no lock or temp file left


@pytest.fixture()
def many(tmp_path, photos):
    """Enough images that a run takes a while: 300 copies of the test photos."""
    d = tmp_path / "many"
    d.mkdir()
    for i in range(300):
        (d / f"p{i:03d}.jpg").write_bytes(photos[i % len(photos)].read_bytes())
    return d


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [("SIGTERM", 143), ("SIGHUP", 129)])
def test_termination_signal_keeps_results(tiny_model, many, tmp_path, sig, code):
    """F2: SIGTERM/SIGHUP (kill, timeout, systemd, docker, SLURM) lost every -o result and left a hidden .tmp file;
    decode workers outlived the parent by ~5 s."""
    import signal
    import time

    out = tmp_path / "o.jsonl"
    p = subprocess.Popen([sys.executable, "-m", "imgtag", "tag", many, "-o", out, "-m", tiny_model, "--runtime", "torch",
                          "-j", "2", "-b", "4", "-q"], cwd=ROOT, stderr=subprocess.PIPE, start_new_session=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 240
    while time.time() < deadline and p.poll() is None:  # wait until records are being written
        tmps = [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]
        if tmps and os.path.getsize(tmp_path / tmps[0]) > 500:
            break
        time.sleep(0.1)
    assert p.poll() is None, "the run ended before it could be signalled"
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=60)
    assert p.returncode == code, err
    kept = records(out.read_text())
    assert 0 < len(kept) < 300 and all("labels" in r for r in kept)  # a complete, valid file of what was done
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp") or f.endswith(".lock")]
    assert "interrupted" in err.decode() and "Traceback" not in err.decode()
    time.sleep(1)
    with pytest.raises(ProcessLookupError):  # no decode worker is left in the run's process group
        os.killpg(p.pid, 0)
    r = run(many, "-o", out, "--on-existing", "skip", "-m", tiny_model, "--runtime", "torch", "-j", "0")
    assert r.exit_code == 0 and f"{len(kept)} skipped" in r.stderr  # resume from what was kept
    assert len(records(out.read_text())) == 300


def test_untag_and_learn_walk_problems_are_one_line(two, capsys):
    """Issue 16 (F1) for `imgtag untag` and `imgtag learn`: a symlink loop stopped the walk with a traceback."""
    from imgtag.cli import app
    from imgtag.engine.learn import LearnConfig, collect

    os.symlink("self.jpg", two / "self.jpg")
    r = runner.invoke(app, ["untag", str(two)])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.splitlines()[0] == f"imgtag: {two / 'self.jpg'}: cannot read: too many levels of symbolic links"
    labels = collect([str(two)], LearnConfig(out="x"))
    assert labels.problems == [f"{two / 'self.jpg'}: cannot read: too many levels of symbolic links"]
    with pytest.raises(FileNotFoundError, match="no such file or directory"):  # a missing argument: a usage error
        collect([str(two / "gone")], LearnConfig(out="x"))


def test_skip_does_not_retag_images_that_got_no_label(tiny_model, two):
    """Minor: with --on-existing skip and XMP, an image that got zero labels was tagged again on every run; the fast
    skip check (folder listed once, sidecar bytes before a parse) must still tell imgtag's sidecars from others."""
    r = run(two, "-f", "xmp", "-m", tiny_model, "--runtime", "torch", "-t", "1")  # nothing reaches 1.0
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in two.glob("*.xmp")) == ["a.jpg.xmp", "b.jpg.xmp"]
    (two / "c.jpg").write_bytes((two / "a.jpg").read_bytes())
    (two / "c.jpg.xmp").write_text("<x:xmpmeta xmlns:x='adobe:ns:meta/'><rdf:RDF xmlns:rdf="
                                   "'http://www.w3.org/1999/02/22-rdf-syntax-ns#'/></x:xmpmeta>")  # not imgtag's
    (two / "d.jpg").write_bytes((two / "a.jpg").read_bytes())
    (two / "d.xmp").write_bytes((two / "a.jpg.xmp").read_bytes())  # imgtag's, under the stem name
    r = run(two, "-f", "xmp", "--on-existing", "skip", "-m", tiny_model, "--runtime", "torch", "-t", "1")
    assert r.exit_code == 0 and "1 tagged, 3 skipped" in r.stderr, r.stderr
