"""`imgtag tag` end to end on real files: every output format, sidecars, bad files, resume, shards, pipelines."""
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from imgtag.cli import app
from imgtag.io.xmp import read_sidecar_labels

runner = CliRunner()


def run(*args, input=None):
    return runner.invoke(app, ["tag", *map(str, args)], input=input)


@pytest.fixture()
def photos_dir(tmp_path, photos):
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    for i, p in enumerate(photos):
        (d / ("sub" if i % 2 else "") / p.name).write_bytes(p.read_bytes())
    return d


@pytest.fixture()
def odd_dir(tmp_path, photos):
    """A directory of broken and odd files next to good ones."""
    d = tmp_path / "odd"
    d.mkdir()
    good = photos[0].read_bytes()
    (d / "good.jpg").write_bytes(good)
    (d / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("this is not an image\n")
    Image.open(photos[1]).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray((__import__("numpy").arange(64 * 48, dtype="uint16").reshape(48, 64) * 20)).save(d / "deep16.png")
    im = Image.open(photos[2])
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(d / "rotated.JPG", exif=exif)
    (d / "fête 日本.jpeg").write_bytes(good)
    return d


def records(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_jsonl_to_stdout_recursive(tiny_model, photos_dir, photos):
    r = run(photos_dir, "-m", tiny_model, "--runtime", "torch")
    assert r.exit_code == 0, r.stderr
    recs = records(r.stdout)
    assert sorted(Path(x["path"]).name for x in recs) == sorted(p.name for p in photos)
    for x in recs:
        scores = [lab["score"] for lab in x["labels"]]
        assert scores == sorted(scores, reverse=True)
        assert "person" in [lab["label"] for lab in x["labels"]]  # the card's threshold for person is 0.0
    assert "tagged" in r.stderr and "images/s" in r.stderr  # summary on stderr, not stdout


def test_threshold_topk_exclude(tiny_model, photos_dir):
    r = run(photos_dir, "-m", tiny_model, "-t", "0", "-k", "2", "-x", "dog", "--runtime", "torch")
    assert r.exit_code == 0
    for x in records(r.stdout):
        labels = [lab["label"] for lab in x["labels"]]
        assert len(labels) == 2 and "dog" not in labels
    r = run(photos_dir, "-m", tiny_model, "-x", "unicorn")
    assert r.exit_code == 2 and "unicorn" in r.stderr


@pytest.mark.parametrize("fmt", ["json", "csv", "txt", "jsonl"])
def test_file_formats(tiny_model, photos_dir, photos, tmp_path, fmt):
    out = tmp_path / f"tags.{fmt}"
    r = run(photos_dir, "-m", tiny_model, "-f", fmt, "-o", out, "-t", "0", "--runtime", "torch")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    text = out.read_text(encoding="utf-8")
    if fmt == "json":
        rows = json.loads(text)
        assert len(rows) == len(photos) and all(len(x["labels"]) == 3 for x in rows)
    elif fmt == "jsonl":
        assert len(records(text)) == len(photos)
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == len(photos)
        assert all(len(row["labels"].split("|")) == 3 == len(row["scores"].split("|")) for row in rows)
    else:
        lines = text.splitlines()
        assert len(lines) == len(photos) and all(len(line.split("\t")[1].split(",")) == 3 for line in lines)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_bad_files_reported_and_run_goes_on(tiny_model, odd_dir):
    r = run(odd_dir, "-m", tiny_model, "--runtime", "torch")
    assert r.exit_code == 1
    recs = {Path(x["path"]).name: x for x in records(r.stdout)}
    assert set(recs) == {"good.jpg", "truncated.jpg", "empty.jpg", "text.jpg", "cmyk.jpg", "deep16.png", "rotated.JPG", "fête 日本.jpeg"}
    bad = {"truncated.jpg", "empty.jpg", "text.jpg"}
    for name, x in recs.items():
        assert ("error" in x) == (name in bad), (name, x)
    err_lines = [line for line in r.stderr.splitlines() if line.startswith("imgtag: ") and ".jpg:" in line]
    assert len(err_lines) == 3 and all(any(b in line for b in bad) for line in err_lines)
    assert "3 failed" in r.stderr


def test_xmp_sidecars_merge_and_keep_other_metadata(tiny_model, photos_dir):
    target = next(photos_dir.glob("*.jpg"))
    existing = target.parent / (target.name + ".xmp")
    existing.write_text(
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/" xmp:Rating="4">'
        '<dc:subject><rdf:Bag><rdf:li>holiday</rdf:li></rdf:Bag></dc:subject>'
        '</rdf:Description></rdf:RDF></x:xmpmeta>\n<?xpacket end="w"?>\n', encoding="utf-8")
    r = run(photos_dir, "-m", tiny_model, "-f", "xmp", "-t", "0", "--runtime", "torch")
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    sidecars = list(photos_dir.rglob("*.xmp"))
    assert len(sidecars) == len(list(photos_dir.rglob("*.jpg")))
    text = existing.read_text(encoding="utf-8")
    assert 'Rating="4"' in text or "<xmp:Rating>4</xmp:Rating>" in text
    assert "holiday" in text and "<rdf:li>cat</rdf:li>" in text and "imgtag:AddedSubjects" in text
    assert sorted(read_sidecar_labels(existing)) == ["cat", "dog", "person"]
    # a second run with skip leaves every sidecar as is
    before = {p: p.read_bytes() for p in sidecars}
    r = run(photos_dir, "-m", tiny_model, "-f", "xmp", "--on-existing", "skip", "--runtime", "torch")
    assert r.exit_code == 0 and f"{len(sidecars)} skipped" in r.stderr
    assert before == {p: p.read_bytes() for p in sidecars}


def test_resume_from_partial_jsonl(tiny_model, photos_dir, tmp_path):
    out = tmp_path / "tags.jsonl"
    files = sorted(str(p) for p in photos_dir.rglob("*.jpg"))
    first = run(*files[:2], "-m", tiny_model, "-o", out, "--runtime", "torch")
    assert first.exit_code == 0
    r = run(photos_dir, "-m", tiny_model, "-o", out, "--on-existing", "skip", "--runtime", "torch")
    assert r.exit_code == 0 and "2 skipped" in r.stderr
    recs = records(out.read_text())
    assert sorted(x["path"] for x in recs) == files


@pytest.mark.slow
def test_files_from_stdin_nul_and_shards(tiny_model, photos_dir):
    files = sorted(str(p) for p in photos_dir.rglob("*.jpg"))
    r = run("--files-from", "-", "-0", "-m", tiny_model, "--runtime", "torch", input="\0".join(files) + "\0")
    assert r.exit_code == 0, r.stderr
    assert sorted(x["path"] for x in records(r.stdout)) == files
    seen = []
    for k in (1, 2, 3):
        r = run(photos_dir, "--shard", f"{k}/3", "-m", tiny_model, "--runtime", "torch")
        assert r.exit_code == 0
        seen += [x["path"] for x in records(r.stdout)]
    assert sorted(seen) == files  # every image exactly once across shards
    assert run(photos_dir, "--shard", "4/3", "-m", tiny_model).exit_code == 2


def test_usage_errors(tiny_model, tmp_path):
    assert run("-m", tiny_model).exit_code == 2
    r = run(tmp_path / "missing", "-m", tiny_model)
    assert r.exit_code == 2 and "missing" in r.stderr
    r = run(tmp_path, "-m", tmp_path / "nomodel.json")
    assert r.exit_code == 2 and "nomodel" in r.stderr


@pytest.mark.slow
def test_real_pipeline_subprocess(tiny_model, photos_dir):
    """As a shell pipeline: file list on stdin, JSON Lines on stdout, logs on stderr, NO_COLOR honoured."""
    files = "\n".join(str(p) for p in sorted(photos_dir.rglob("*.jpg"))) + "\n"
    env = {**os.environ, "NO_COLOR": "1"}
    p = subprocess.run([sys.executable, "-m", "imgtag", "tag", "-T", "-", "-m", str(tiny_model), "--runtime", "torch"],
                       input=files, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    assert len(records(p.stdout)) == files.count("\n")
    assert "\x1b[" not in p.stderr
