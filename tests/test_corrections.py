"""Corrections JSONL (imgtag.io.corrections): the schema the review sheet writes and learn/tag read."""
from __future__ import annotations

import io
import json

import pytest

from imgtag.io.corrections import Correction, CorrectionsError, latest, read_corrections, write_corrections


def test_round_trip_keeps_every_field_and_order(tmp_path):
    cs = [Correction("a/b.jpg", "cat", None, "wrong"), Correction("c ü.jpg", "dog", "animal|dog", "missing"),
          Correction("a/b.jpg", "person", None, "right")]
    dest = write_corrections(tmp_path / "c.jsonl", cs)
    lines = dest.read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1]) == {"path": "c ü.jpg", "keyword": "dog", "keyword_path": "animal|dog", "verdict": "missing"}
    assert list(json.loads(lines[0])) == ["path", "keyword", "keyword_path", "verdict"]
    assert read_corrections(dest) == cs


def test_blank_lines_skipped_and_missing_keyword_path_is_null():
    text = '\n{"path": "x.jpg", "keyword": "cat", "verdict": "right"}\n\n'
    assert read_corrections(io.StringIO(text)) == [Correction("x.jpg", "cat", None, "right")]


@pytest.mark.parametrize("line, why", [
    ('{"path": "x.jpg", "keyword": "cat", "verdict": "maybe"}', "verdict must be one of"),
    ('{"path": "", "keyword": "cat", "verdict": "wrong"}', "'path'"),
    ('{"path": "x.jpg", "verdict": "wrong"}', "'keyword'"),
    ('{"path": "x.jpg", "keyword": "cat", "keyword_path": 3, "verdict": "wrong"}', "keyword_path"),
    ('["x.jpg", "cat"]', "not a JSON object"),
    ('{"path": "x.jpg", ', "not a correction"),
])
def test_bad_line_names_file_and_line(tmp_path, line, why):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"path": "ok.jpg", "keyword": "cat", "keyword_path": null, "verdict": "wrong"}\n' + line + "\n")
    with pytest.raises(CorrectionsError) as e:
        read_corrections(f)
    assert f"{f}:2:" in str(e.value) and why in str(e.value)


def test_latest_decision_wins_per_photo_and_keyword():
    cs = [Correction("a.jpg", "cat", None, "wrong"), Correction("a.jpg", "dog", None, "missing"),
          Correction("a.jpg", "cat", None, "right")]
    got = latest(cs)
    assert list(got) == [("a.jpg", "cat"), ("a.jpg", "dog")]
    assert got[("a.jpg", "cat")].verdict == "right"


def test_correction_set_removes_wrong_adds_missing_and_keeps_other_photos(tmp_path, monkeypatch):
    from imgtag.io.corrections import CorrectionSet

    monkeypatch.chdir(tmp_path)
    cs = CorrectionSet([Correction("./a.jpg", "cat", None, "wrong"), Correction("a.jpg", "dog", "animal|dog", "missing"),
                        Correction("a.jpg", "person", None, "right"), Correction(str(tmp_path / "b.jpg"), "cat", None, "missing"),
                        Correction("b.jpg", "cat", None, "wrong")])  # the last decision about b/cat wins
    rec = {"path": "a.jpg", "labels": [{"label": "cat", "score": 0.9}, {"label": "person", "score": 0.6}]}
    assert cs.apply(rec) == {"path": "a.jpg", "labels": [{"label": "dog", "score": 1.0, "path": "animal|dog"},
                                                         {"label": "person", "score": 0.6}]}
    assert rec["labels"][0]["label"] == "cat"  # the input record is not changed
    assert cs.apply({"path": "b.jpg", "labels": [{"label": "cat", "score": 0.99}]}) == {"path": "b.jpg", "labels": []}
    other = {"path": "c.jpg", "labels": [{"label": "cat", "score": 0.7}]}
    assert cs.apply(other) is other and cs.apply({"path": "a.jpg", "error": "x"}) == {"path": "a.jpg", "error": "x"}
    assert len(cs) == 4
