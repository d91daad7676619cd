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
