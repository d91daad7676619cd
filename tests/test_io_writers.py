"""imgtag.io.writers and imgtag.io.atomic: each format round-trips; outputs appear atomically."""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import stat
import sys

import pytest

from imgtag.io.atomic import atomic_open, atomic_write_bytes
from imgtag.io.records import Label, make_record, record_labels
from imgtag.io.writers import (WRITERS, OutputError, WriteFailed, Writer, check_output, make_writer, read_existing,
                               register_writer)

STDOUT_FORMATS = sorted(f for f, w in WRITERS.items() if w.to_stdout)
FILE_FORMATS = sorted(f for f, w in WRITERS.items() if not w.beside_images)

RECORDS = [
    {"path": "photos/a.jpg", "labels": [{"label": "dog", "score": 0.912345}, {"label": "grass", "score": 0.5}]},
    {"path": "photos/fête 日本.jpg", "labels": [{"label": "person", "score": 0.31},  # unsorted input
                                                 {"label": "horse", "score": 0.98765}]},
    {"path": "photos/bad.jpg", "error": "photos/bad.jpg: truncated JPEG"},
    {"path": 'odd, "quoted".jpg', "labels": []},
]
GOOD = [r for r in RECORDS if "error" not in r]


def write_all(fmt, dest, records=RECORDS):
    with make_writer(fmt, dest) as w:
        for r in records:
            w.write(r)


def expected_labels(rec):
    return [(d["label"], round(d["score"], 4)) for d in sorted(rec["labels"], key=lambda d: -d["score"])]


def leftovers(d):
    return [p.name for p in d.iterdir() if p.name.endswith(".tmp")]


# ----------------------------------------------------------------------------- round trips


def test_jsonl_round_trip(tmp_path):
    out = tmp_path / "out.jsonl"
    write_all("jsonl", out)
    text = out.read_text(encoding="utf-8")
    assert "fête 日本" in text  # ensure_ascii=False
    rows = [json.loads(line) for line in text.splitlines()]
    assert len(rows) == len(RECORDS)
    for rec, row in zip(RECORDS, rows):
        assert row["path"] == rec["path"]
        if "error" in rec:
            assert row == {"path": rec["path"], "error": rec["error"]}
        else:
            assert [(d["label"], d["score"]) for d in row["labels"]] == expected_labels(rec)
    assert rows[0]["labels"][0] == {"label": "dog", "score": 0.9123}
    assert rows[1]["labels"][0]["label"] == "horse"  # sorted by score


def test_json_round_trip(tmp_path):
    out = tmp_path / "out.json"
    write_all("json", out)
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [r["path"] for r in rows] == [r["path"] for r in RECORDS]
    assert rows[2] == {"path": "photos/bad.jpg", "error": "photos/bad.jpg: truncated JPEG"}
    assert [(d["label"], d["score"]) for d in rows[1]["labels"]] == [("horse", 0.9877), ("person", 0.31)]


def test_json_empty_run_is_valid(tmp_path):
    out = tmp_path / "out.json"
    write_all("json", out, [])
    assert json.loads(out.read_text()) == []


def test_csv_round_trip(tmp_path):
    out = tmp_path / "out.csv"
    write_all("csv", out)
    with open(out, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "labels", "scores", "label_paths"]
    assert rows[0]["label_paths"] == rows[0]["labels"]  # a flat label is its own path
    assert [r["path"] for r in rows] == [r["path"] for r in GOOD]  # error rows skipped
    for rec, row in zip(GOOD, rows):
        labels = row["labels"].split("|") if row["labels"] else []
        scores = [float(s) for s in row["scores"].split("|")] if row["scores"] else []
        assert list(zip(labels, scores)) == expected_labels(rec)
    assert rows[0]["scores"] == "0.9123|0.5000"
    assert "\r" not in out.read_text(encoding="utf-8")


def test_csv_and_parquet_label_paths(tmp_path):
    rec = make_record("a.jpg", [Label("golden retriever", 0.7, "animal|dog|golden retriever"), Label("dog", 0.9, "animal|dog"),
                                Label("AC|DC", 0.5)])
    out = tmp_path / "out.csv"
    write_all("csv", out, [rec])
    row = next(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert row["labels"] == "dog|golden retriever|AC\\|DC"
    assert row["label_paths"] == "animal\\|dog|animal\\|dog\\|golden retriever|AC\\|DC"  # '|' inside a path escaped
    pq = pytest.importorskip("pyarrow.parquet")
    write_all("parquet", tmp_path / "o.parquet", [rec])
    assert pq.read_table(tmp_path / "o.parquet").to_pylist()[0]["label_paths"] == ["animal|dog", "animal|dog|golden retriever", "AC|DC"]
    prev = make_writer("parquet", tmp_path / "o.parquet").previous()
    assert record_labels(prev["a.jpg"]) == [Label("dog", 0.9, "animal|dog"), Label("golden retriever", 0.7, "animal|dog|golden retriever"),
                                            Label("AC|DC", 0.5)]


def test_txt_round_trip(tmp_path):
    out = tmp_path / "out.txt"
    write_all("txt", out)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines == ["photos/a.jpg\tdog,grass", "photos/fête 日本.jpg\thorse,person", 'odd, "quoted".jpg\t']
    parsed = {p: labs.split(",") if labs else [] for p, labs in (line.split("\t") for line in lines)}
    assert parsed["photos/a.jpg"] == ["dog", "grass"]


def test_numpy_like_scores_are_plain_floats(tmp_path):
    np = pytest.importorskip("numpy")
    out = tmp_path / "o.jsonl"
    write_all("jsonl", out, [{"path": "a", "labels": [{"label": "x", "score": np.float32(0.123456)}]}])
    assert json.loads(out.read_text())["labels"][0]["score"] == 0.1235


@pytest.mark.parametrize("fmt", STDOUT_FORMATS)
def test_stdout(fmt, capsys):
    write_all(fmt, "-")
    out = capsys.readouterr().out
    assert "photos/a.jpg" in out
    assert ("truncated JPEG" in out) == (fmt in ("json", "jsonl"))


def test_jsonl_flushes_each_record(monkeypatch):
    class Spy(io.StringIO):
        flushed = []

        def flush(self):
            self.flushed.append(self.getvalue())
            super().flush()

    spy = Spy()
    monkeypatch.setattr("sys.stdout", spy)
    w = make_writer("jsonl", "-").open()
    w.write(RECORDS[0])
    assert spy.flushed and spy.flushed[-1].count("\n") == 1  # visible before the next record
    w.write(RECORDS[1])
    assert spy.flushed[-1].count("\n") == 2
    w.close()


def test_jsonl_file_is_written_progressively(tmp_path):
    w = make_writer("jsonl", tmp_path / "o.jsonl").open()
    w.write(RECORDS[0])
    (tmp,) = leftovers(tmp_path)  # records reach the temp file as they come
    assert json.loads((tmp_path / tmp).read_text())["path"] == "photos/a.jpg"
    assert not (tmp_path / "o.jsonl").exists()
    w.close()
    assert (tmp_path / "o.jsonl").exists() and not leftovers(tmp_path)


def test_make_writer():
    assert make_writer("JSONL", "-").fmt == "jsonl"
    assert make_writer("auto", "x.csv").fmt == "csv"
    assert make_writer("auto", "x.TXT").fmt == "txt"
    assert make_writer("auto", "-").fmt == "jsonl"
    assert make_writer("auto", "results.out").fmt == "jsonl"
    with pytest.raises(ValueError, match="unknown output format 'xml'"):
        make_writer("xml", "-")
    with pytest.raises(RuntimeError):
        make_writer("jsonl", "-").write(RECORDS[0])
    with pytest.raises(ValueError, match="needs -o FILE"):
        make_writer("parquet", "-")
    with pytest.raises(ValueError, match="-o does not apply"):
        make_writer("xmp", "out.xmp")
    with pytest.raises(ValueError, match="-o URI is for --format parquet"):
        make_writer("jsonl", "s3://bucket/x.jsonl")


# ----------------------------------------------------------------------------- records and the registry


def test_make_record_is_the_one_record_shape():
    labels = [Label("dog", 0.9), ("cat", 0.5), Label("golden retriever", 0.4, "animal|dog|golden retriever")]
    rec = make_record("a.jpg", labels)
    assert rec == {"path": "a.jpg", "labels": [{"label": "dog", "score": 0.9}, {"label": "cat", "score": 0.5},
                                               {"label": "golden retriever", "score": 0.4, "path": "animal|dog|golden retriever"}]}
    assert record_labels(rec)[2] == Label("golden retriever", 0.4, "animal|dog|golden retriever")
    assert make_record("b.jpg", labels, error="b.jpg: truncated") == {"path": "b.jpg", "error": "b.jpg: truncated"}


def test_hierarchy_path_survives_json_writers(tmp_path):
    write_all("jsonl", tmp_path / "o.jsonl", [make_record("a.jpg", [Label("retriever", 0.7, "animal|dog|retriever")])])
    assert json.loads((tmp_path / "o.jsonl").read_text())["labels"] == [{"label": "retriever", "score": 0.7, "path": "animal|dog|retriever"}]


def test_a_new_format_is_one_registered_class(tmp_path):
    @register_writer
    class Upper(Writer):
        fmt, help = "upper-test", "paths in capitals"

        def _write(self, record):
            self.f.write(record["path"].upper() + "\n")
    try:
        write_all("upper-test", tmp_path / "o.txt")
        assert (tmp_path / "o.txt").read_text().splitlines()[0] == "PHOTOS/A.JPG"
        with pytest.raises(ValueError, match="already registered"):
            register_writer(Upper)
    finally:
        WRITERS.pop("upper-test")


def test_parquet_round_trip_and_resume(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "o.parquet"
    write_all("parquet", out)
    rows = pq.read_table(out).to_pylist()
    assert [r["path"] for r in rows] == [r["path"] for r in RECORDS]
    assert rows[1]["labels"] == ["horse", "person"] and rows[2]["error"] == "photos/bad.jpg: truncated JPEG"
    prev = make_writer("parquet", out).previous()  # earlier results: those with labels, failures are retried
    assert sorted(prev) == sorted(r["path"] for r in GOOD)
    assert record_labels(prev["photos/a.jpg"])[0] == Label("dog", 0.912345)


def test_xmp_writer_writes_sidecars_and_reports_a_bad_one(tmp_path):
    from imgtag.io.xmp import read_sidecar_labels

    img, broken = tmp_path / "a.jpg", tmp_path / "b.jpg"
    img.write_bytes(b"x")
    broken.write_bytes(b"x")
    (tmp_path / "b.jpg.xmp").write_text("<not xmp")
    w = make_writer("xmp", "-", model_name="tiny").open()
    assert not w.done(str(img), {}) and not w.done(str(broken), {})  # unreadable sidecar: tag again
    w.write(make_record(img, [Label("dog", 0.9), Label("cat", 0.4)]))
    w.write(make_record(tmp_path / "c.jpg", error="c.jpg: truncated"))  # failures get no sidecar
    with pytest.raises(WriteFailed, match="b.jpg: sidecar not written"):
        w.write(make_record(broken, [Label("dog", 0.9)]))
    w.close()
    assert read_sidecar_labels(img) == ["dog", "cat"] and w.done(str(img), {})
    assert not (tmp_path / "c.jpg.xmp").exists() and (tmp_path / "b.jpg.xmp").read_text() == "<not xmp"


# ----------------------------------------------------------------------------- atomicity


@pytest.mark.parametrize("fmt", FILE_FORMATS)
@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_interrupted_run_leaves_old_output(tmp_path, fmt, exc):
    out = tmp_path / f"out.{fmt}"
    out.write_text("previous results\n")
    with pytest.raises(exc):
        with make_writer(fmt, out) as w:
            w.write(RECORDS[0])
            w.write(RECORDS[1])
            raise exc()
    assert out.read_text() == "previous results\n"
    assert not leftovers(tmp_path)


def test_interrupted_first_run_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with make_writer("csv", tmp_path / "new.csv") as w:
            w.write(RECORDS[0])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_abort(tmp_path):
    out = tmp_path / "o.json"
    out.write_text("old")
    w = make_writer("json", out).open()
    w.write(RECORDS[0])
    w.abort()
    w.close()  # harmless after abort
    assert out.read_text() == "old" and not leftovers(tmp_path)


def test_completed_run_replaces_old_output(tmp_path):
    out = tmp_path / "o.txt"
    out.write_text("old")
    write_all("txt", out)
    assert out.read_text(encoding="utf-8").startswith("photos/a.jpg\t")


def test_permissions_follow_umask_and_existing_file(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "new.bin", b"x")
        assert stat.S_IMODE(os.stat(tmp_path / "new.bin").st_mode) == 0o644  # not mkstemp's 0o600
        (tmp_path / "old.bin").write_bytes(b"old")
        os.chmod(tmp_path / "old.bin", 0o640)
        atomic_write_bytes(tmp_path / "old.bin", b"new")
        assert stat.S_IMODE(os.stat(tmp_path / "old.bin").st_mode) == 0o640
        assert (tmp_path / "old.bin").read_bytes() == b"new"
    finally:
        os.umask(old)


def test_atomic_open_text_and_failure(tmp_path):
    p = tmp_path / "f.txt"
    with atomic_open(p) as f:
        f.write("héllo\n")
        assert not p.exists()
    assert p.read_text(encoding="utf-8") == "héllo\n"
    with pytest.raises(ValueError):
        with atomic_open(p) as f:
            f.write("half")
            raise ValueError
    assert p.read_text(encoding="utf-8") == "héllo\n" and not leftovers(tmp_path)
    with pytest.raises(ValueError, match="write-only"):
        with atomic_open(p, "r"):
            pass


def test_atomic_abort_on_a_full_disk_leaves_no_temp_file(small_fs):
    """F7: on a full disk AtomicFile.abort() re-raised from close() (which flushes) and never removed the temp file."""
    out = small_fs / "out.bin"
    out.write_bytes(b"old")
    with pytest.raises(OSError):
        with atomic_open(out, "wb") as f:
            for _ in range(100):
                f.write(b"x" * 4096)  # 400 KB into a 200 KB disk
    assert out.read_bytes() == b"old" and not leftovers(small_fs)


# ----------------------------------------------------------------------------- one writer per output


def test_output_lock_refuses_a_second_writer(tmp_path):
    """F8: two runs writing the same -o both exited 0 and the last one won."""
    from imgtag.io.lock import OutputLocked, lock_path, output_lock

    out = tmp_path / "o.jsonl"
    with output_lock(out):
        assert lock_path(out).exists()
        with pytest.raises(OutputLocked, match=f"another imgtag run is writing {out}"):
            with output_lock(out):  # flock is per open file: a second open in this process conflicts too
                pass
        with output_lock(tmp_path / "other.jsonl"), output_lock("-"):
            pass  # other outputs and stdout are not affected
    assert list(tmp_path.iterdir()) == []  # the lock file goes with the run
    with output_lock(out):  # free again
        pass


def test_output_lock_is_released_when_the_holder_dies(tmp_path):
    """A run killed with SIGKILL leaves its lock file but not its lock."""
    import signal
    import subprocess
    import sys

    from imgtag.io.lock import OutputLocked, lock_path, output_lock

    out = tmp_path / "o.jsonl"
    code = ("import sys, time; from imgtag.io.lock import output_lock\n"
            "with output_lock(sys.argv[1]):\n print('locked', flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True,
                         cwd=os.path.dirname(os.path.dirname(__file__)))
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(OutputLocked):
            with output_lock(out):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert lock_path(out).exists()  # left over, harmless
    with output_lock(out):
        pass


ODD = ["tab\there.jpg", "new\nline.jpg", "back\\slash.jpg", "cr\rhere.jpg", "comma,.jpg"]


def odd_records(names=ODD):
    return [{"path": p, "labels": [{"label": "a|b", "score": 0.9}, {"label": "c,d\\e", "score": 0.5}]} for p in names]


def test_csv_quotes_carriage_return(tmp_path):
    """F12: a CR in a name was written unquoted, and a reader split the row there."""
    out = tmp_path / "o.csv"
    write_all("csv", out, odd_records())
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert [r[0] for r in rows[1:]] == ODD
    assert {r[1] for r in rows[1:]} == {"a\\|b|c,d\\\\e"}  # '|' inside a label escaped: the column splits cleanly


def test_txt_escapes_separators(tmp_path):
    """F12/B8: TXT wrote TAB and newline in names raw, so one image could take two lines."""
    out = tmp_path / "o.txt"
    write_all("txt", out, odd_records(ODD + ["caf\udce9.jpg"]))
    lines = out.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == len(ODD) + 2
    assert [ln.split("\t")[0] for ln in lines[:-1]] == ["tab\\there.jpg", "new\\nline.jpg", "back\\\\slash.jpg",
                                                         "cr\\rhere.jpg", "comma,.jpg", "caf\\xe9.jpg"]
    assert {ln.split("\t")[1] for ln in lines[:-1]} == {"a|b,c\\,d\\\\e"}


# ----------------------------------------------------------------------------- non-UTF-8 names, write failures


def test_csv_writes_a_non_utf8_name_as_its_bytes(tmp_path):
    """F3/B5: a non-UTF-8 name (a lone surrogate in Python) aborted the CSV output with UnicodeEncodeError."""
    out = tmp_path / "o.csv"
    write_all("csv", out, odd_records(["caf\udce9.jpg"]))
    assert b"\ncaf\xe9.jpg," in out.read_bytes()
    with open(out, encoding="utf-8", errors="surrogateescape", newline="") as f:
        assert [r[0] for r in csv.reader(f)][1:] == ["caf\udce9.jpg"]


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_non_utf8_names_round_trip_in_json(tmp_path, fmt):
    """F3/B5: a name with an undecodable byte aborted the run (UnicodeEncodeError) or wrote invalid UTF-8."""
    out = tmp_path / f"o.{fmt}"
    write_all(fmt, out, [{"path": "caf\udce9.jpg", "labels": []}, {"path": "ok é.jpg", "error": "x\udce9: bad"}])
    text = out.read_bytes().decode("utf-8")  # strict: valid UTF-8
    assert "\\udce9" in text and "ok é.jpg" in text
    rows = [json.loads(line) for line in text.splitlines()] if fmt == "jsonl" else json.loads(text)
    assert os.fsencode(rows[0]["path"]) == b"caf\xe9.jpg" and rows[1]["error"] == "x\udce9: bad"
    assert list(read_existing(out, fmt)) == ["caf\udce9.jpg"]  # resume matches the same file again


def test_non_utf8_names_round_trip_in_parquet(tmp_path):
    pytest.importorskip("pyarrow")
    out = tmp_path / "o.parquet"
    write_all("parquet", out, [{"path": "caf\udce9.jpg", "labels": [{"label": "dog", "score": 0.5}]}])
    assert list(make_writer("parquet", out).previous()) == ["caf\udce9.jpg"]


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_full_disk_is_one_error_and_no_temp_file(small_fs, fmt):
    """F7: a full disk gave a traceback (the OSError) and, before abort() was fixed, left the temp file."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    out = small_fs / f"out.{fmt}"
    out.write_text("previous results\n")
    with pytest.raises(OutputError) as ei:
        with make_writer(fmt, out) as w:
            for _ in range(200):  # 400 KB (incompressible) into a 200 KB disk
                w.write({"path": os.urandom(1000).hex() + ".jpg", "labels": [{"label": "dog", "score": 0.5}]})
    assert str(ei.value) == f"cannot write {out}: no space left on device"
    assert out.read_text() == "previous results\n"
    assert not leftovers(small_fs)


def test_bad_destinations_are_named_not_the_temp_file(tmp_path):
    """F11: a missing directory gave an error naming the internal temp file."""
    out = tmp_path / "nodir" / "o.jsonl"
    for call in (lambda: make_writer("jsonl", out).open(), lambda: check_output(out)):
        with pytest.raises(OutputError) as ei:
            call()
        assert str(ei.value) == f"cannot write {out}: no such directory: {out.parent}"
    with pytest.raises(OutputError, match="is a directory"):
        check_output(tmp_path)
    check_output(tmp_path / "fine.jsonl")
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing behind


def test_read_only_directory_is_one_error(read_only_dir):
    """F11: -o into a read-only directory gave a PermissionError traceback (after the model loaded)."""
    with pytest.raises(OutputError, match=f"cannot write {read_only_dir / 'o.jsonl'}: (permission denied|read-only file system)"):
        check_output(read_only_dir / "o.jsonl")
    with pytest.raises(OutputError, match="cannot write"):
        make_writer("jsonl", read_only_dir / "o.jsonl").open()


def test_closed_stdout(monkeypatch):
    """F13: with stdout closed (>&-) a writer raised "RuntimeError: writer is not open"."""
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(OutputError, match="cannot write standard output: it is closed"):
        make_writer("jsonl", "-").open()
    with pytest.raises(OutputError, match="standard output: it is closed"):
        check_output("-")


def test_full_stdout_is_one_error():
    """F7: `> /dev/full` gave an OSError traceback."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    full = open("/dev/full", "w", encoding="utf-8")  # noqa: SIM115
    try:
        w = make_writer("jsonl", "-")
        w.f = full  # what open() does with sys.stdout
        with pytest.raises(OutputError, match="cannot write standard output: no space left on device"):
            w.write(GOOD[0])
    finally:
        with contextlib.suppress(OSError):
            full.close()


def test_sidecar_on_a_full_disk_stops_with_one_line(small_fs, photo):
    """F7: `-f xmp` on a full disk: each sidecar failed on its own (or with a traceback); now the run stops, naming it."""
    img = small_fs / "p.jpg"
    img.write_bytes(photo.read_bytes())
    with open(small_fs / "filler", "wb", buffering=0) as f:  # fill the disk to the last byte
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass
    w = make_writer("xmp", "-", model_name="tiny")
    with pytest.raises(OutputError) as ei:
        with w:
            w.write({"path": str(img), "labels": [{"label": "dog", "score": 0.5}]})
    assert str(ei.value) == f"cannot write {img}.xmp: no space left on device"
    assert not leftovers(small_fs) and not (small_fs / "p.jpg.xmp").exists()


# ----------------------------------------------------------------------------- reading earlier output


def test_read_existing_tolerates_a_crash_mark(tmp_path):
    """F10: a truncated last line (what a killed run leaves) failed with "Expecting value", naming no file."""
    out = tmp_path / "o.jsonl"
    write_all("jsonl", out)
    out.write_bytes(out.read_bytes() + b'{"path": "photos/c.jpg", "lab')
    told = []
    got = read_existing(out, "jsonl", warn=told.append)
    assert sorted(got) == sorted(r["path"] for r in GOOD)  # error records are retried, so not returned
    assert told == [f"{out}: line 5 is incomplete (an interrupted run?); ignored"]


def test_read_existing_skips_records_without_path(tmp_path):
    """F10: a record without "path" gave a KeyError traceback."""
    out = tmp_path / "o.jsonl"
    out.write_text('{"labels": []}\n{"path": "a.jpg", "labels": []}\n[1, 2]\n', encoding="utf-8")
    told = []
    assert list(read_existing(out, "jsonl", warn=told.append)) == ["a.jpg"]
    assert told == [f"{out}: line 1 has no path; ignored", f"{out}: line 3 has no path; ignored"]


@pytest.mark.parametrize("fmt,content", [("jsonl", b"path,labels\na.jpg,dog\n"), ("jsonl", b'{"path": "a"}\nnot json\n{}\n'),
                                         ("json", b'[{"path": '), ("json", b'{"path": "a"}'),
                                         ("jsonl", b'{"path": "caf\xe9"}\n{"path": "b"}\n')])
def test_read_existing_names_the_file_when_foreign(tmp_path, fmt, content):
    """F10: a foreign file or a non-UTF-8 byte gave "Expecting value: line 1 column 1" without the file's name."""
    out = tmp_path / f"o.{fmt}"
    out.write_bytes(content)
    with pytest.raises(ValueError) as ei:
        make_writer(fmt, out).previous()
    msg = str(ei.value)
    assert msg.startswith(f"{out}: ") and "--on-existing overwrite" in msg and "\n" not in msg
    assert read_existing(tmp_path / "none.jsonl", "jsonl") == {}


@pytest.mark.parametrize("fmt", STDOUT_FORMATS)
def test_stdout_is_utf8_whatever_the_locale(monkeypatch, fmt):
    """Under LANG=C (an ASCII stdout) a non-ASCII label or name was a UnicodeEncodeError; results are UTF-8 like files."""
    raw = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(raw, encoding="ascii"))
    with make_writer(fmt, "-") as w:
        w.write({"path": "fête/caf\udce9.jpg", "labels": [{"label": "crème brûlée", "score": 0.9}]})
    sys.stdout.flush()
    out = raw.getvalue()
    assert "crème brûlée".encode() in out and "fête".encode() in out


@pytest.mark.parametrize("fmt", FILE_FORMATS)
def test_a_fifo_or_device_is_written_to_not_replaced(tmp_path, fmt):
    """`-o /dev/null` (or a named pipe) was replaced by a regular file: the atomic temp file was renamed over it
    (as root, /dev/null itself). Tested on a FIFO, which a regression cannot harm."""
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
    import threading

    fifo = tmp_path / f"pipe.{fmt}"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)  # noqa: SIM115
    reader.start()
    check_output(fifo)
    write_all(fmt, fifo, GOOD)
    reader.join(timeout=10)  # a daemon: left blocked if the FIFO was replaced
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and got and len(got[0]) > 50
    assert sorted(p.name for p in tmp_path.iterdir()) == [fifo.name]  # no temp file
    assert make_writer(fmt, fifo).previous() == {}  # never read back (it would block: no writer)
