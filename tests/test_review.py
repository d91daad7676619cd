"""The review contact sheet (imgtag.engine.review): pages, order, and corrections made in real headless Chromium."""
from __future__ import annotations

import http.client
import re
import threading

import pytest

from imgtag.engine.review import make_server, read_records, write_review
from imgtag.io.corrections import Correction, read_corrections

from browser import Browser, find_chromium


def _records(photos) -> list[dict]:
    p = [str(x) for x in photos]
    return [{"path": p[0], "labels": [{"label": "chair", "score": 0.91}, {"label": "person", "score": 0.55}]},
            {"path": p[1], "labels": [{"label": "car", "score": 0.97}, {"label": "person", "score": 0.81}]},
            {"path": p[2], "labels": [{"label": "horse", "score": 0.88}, {"label": "person", "score": 0.62}]},
            {"path": p[3], "labels": []},
            {"path": p[4], "labels": [{"label": "person", "score": 0.99}]},
            {"path": "gone.jpg", "error": "gone.jpg: file not found"}]


def _cards(html: str) -> list[str]:
    return re.findall(r'<figure class="card" data-path="([^"]+)"', html)


def test_sheet_groups_orders_and_splits_pages(photos, tmp_path):
    recs = _records(photos)
    sheet = write_review(recs, tmp_path / "s", per_page=2, keywords=["cat", "dog"], thresholds={"person": 0.5})
    assert (sheet.photos, sheet.keywords, sheet.failed) == (5, 5, ["gone.jpg: file not found"])
    index = sheet.index.read_text(encoding="utf-8")
    kws = re.findall(r'<td><a href="(kw\d+-1\.html)">([^<]+)</a></td><td>(\d+)</td><td>(\d+)</td>', index)
    assert [(k, int(n), int(p)) for _, k, n, p in kws] == [
        ("car", 1, 1), ("chair", 1, 1), ("horse", 1, 1), ("person", 4, 2), ("(no keyword)", 1, 1)]
    person = dict((k, f) for f, k, _, _ in kws)["person"]
    p1 = (tmp_path / "s" / person).read_text(encoding="utf-8")
    p2 = (tmp_path / "s" / person.replace("-1.", "-2.")).read_text(encoding="utf-8")
    # least certain first: 0.55, 0.62 | 0.81, 0.99
    assert _cards(p1) == [str(photos[0]), str(photos[2])] and _cards(p2) == [str(photos[1]), str(photos[4])]
    assert "<b>0.55</b>" in p1 and 'class=cur' in p2
    assert len(list((tmp_path / "s" / "thumbs").glob("*.jpg"))) == 5
    assert '<option value="cat">' in index and '<option value="person">' in index  # offered for "missing"


def test_read_records_jsonl_and_json(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"path": "a.jpg", "labels": []}\n\n{"path": "b.jpg", "error": "x"}\n')
    (tmp_path / "a.json").write_text('[{"path": "a.jpg", "labels": []}]')
    assert [r["path"] for r in read_records(tmp_path / "a.jsonl")] == ["a.jpg", "b.jpg"]
    assert read_records(tmp_path / "a.json") == [{"path": "a.jpg", "labels": []}]
    (tmp_path / "bad.jsonl").write_text('{"path": "a.jpg", "labels": []}\n{oops\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2:"):
        read_records(tmp_path / "bad.jsonl")


def test_server_refuses_foreign_hosts_and_big_bodies(photos, tmp_path):
    sheet = write_review(_records(photos), tmp_path / "s")
    srv = make_server(sheet.index.parent, tmp_path / "c.jsonl")
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    try:
        assert srv.server_address[0] == "127.0.0.1"

        def ask(method, path, body=None, headers=None):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, r.read()

        assert ask("GET", "/index.html")[0] == 200
        assert ask("GET", "/index.html", headers={"Host": "evil.example:80"})[0] == 403
        line = b'{"path": "a.jpg", "keyword": "cat", "keyword_path": null, "verdict": "wrong"}\n'
        assert ask("POST", "/corrections", line, {"Origin": "http://evil.example"})[0] == 403
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # announces 9 MiB: refused before reading
        c.putrequest("POST", "/corrections")
        c.putheader("Content-Length", str(9 << 20))
        c.endheaders(b"x")
        assert c.getresponse().status == 413
        assert ask("POST", "/corrections", b'{"path": "a.jpg"}\n')[0] == 400
        assert not (tmp_path / "c.jsonl").exists()
        assert ask("POST", "/corrections", line)[0] == 200
        assert read_corrections(tmp_path / "c.jsonl") == [Correction("a.jpg", "cat", None, "wrong")]
        assert ask("GET", "/corrections") == (200, (tmp_path / "c.jsonl").read_bytes())
        assert ask("GET", "/../c.jsonl")[0] == 404  # nothing outside the sheet's folder
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def browser():
    if not find_chromium():
        pytest.skip("chromium is not installed (apt-get install chromium): the page is not rendered")
    with Browser(1280, 900) as b:
        yield b


CLICKS = """(() => {
  const card = (kw, i) => [...document.querySelectorAll('.card')].filter(c => c.dataset.kw === kw)[i];
  card('person', 0).querySelector('button.wrong').click();           // person on photo 0 is wrong
  card('person', 1).querySelector('button.right').click();           // person on photo 2 is right
  card('person', 1).querySelector('button.wrong').click();           // ... no: changed to wrong
  card('person', 1).querySelector('button.wrong').click();           // ... and taken back: no decision
  const c = card('person', 0), input = c.querySelector('.miss input');
  input.value = 'dog'; c.querySelector('button.add').click();        // dog is missing on photo 0
  return document.querySelectorAll('.card.wrong').length;
})()"""


@pytest.mark.slow
def test_correction_clicked_in_chromium_comes_back_as_jsonl(photos, tmp_path, browser):
    sheet = write_review(_records(photos), tmp_path / "s", keywords=["cat", "dog"])
    page = re.search(r'href="(kw\d+-1\.html)">person<', sheet.index.read_text(encoding="utf-8")).group(1)
    browser.errors.clear()
    browser.goto((tmp_path / "s" / page).as_uri())
    assert browser.images_loaded() == (4, 4)
    assert browser.eval(CLICKS) == 1
    assert browser.eval("document.getElementById('count').textContent") == "2 decisions"
    browser.screenshot(tmp_path / "review.png")
    browser.goto(sheet.index.as_uri())  # decisions live across the sheet's pages; export from the index
    downloads = tmp_path / "dl"
    browser.allow_downloads(downloads)
    browser.eval("document.getElementById('export').click()")
    done = browser.wait_event("Browser.downloadProgress", pred=lambda p: p["state"] in ("completed", "canceled"))
    assert done["state"] == "completed"
    got = read_corrections(downloads / "corrections.jsonl")
    assert got == [Correction(str(photos[0]), "person", None, "wrong"), Correction(str(photos[0]), "dog", None, "missing")]
    browser.eval("localStorage.clear()")
    assert browser.errors == []


@pytest.mark.slow
def test_served_sheet_saves_corrections_file(photos, tmp_path, browser):
    sheet = write_review(_records(photos), tmp_path / "s")
    out = tmp_path / "corrections.jsonl"
    srv = make_server(sheet.index.parent, out)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        browser.errors.clear()
        page = re.search(r'href="(kw\d+-1\.html)">car<', sheet.index.read_text(encoding="utf-8")).group(1)
        browser.goto(f"http://127.0.0.1:{srv.server_address[1]}/{page}")
        assert browser.images_loaded() == (1, 1)
        browser.eval("document.querySelector('.card button.wrong').click()")
        status = browser.eval("""new Promise(ok => { document.getElementById('save').click();
            const t = setInterval(() => { const s = document.getElementById('status').textContent;
            if (s) { clearInterval(t); ok(s); } }, 50); })""", await_promise=True)
        assert status.startswith("saved 1 decisions")
        assert read_corrections(out) == [Correction(str(photos[1]), "car", None, "wrong")]
        browser.eval("localStorage.clear()")
        browser.goto(f"http://127.0.0.1:{srv.server_address[1]}/{page}")  # the saved decision comes back
        deadline = __import__("time").monotonic() + 10
        while browser.eval("document.querySelectorAll('.card.wrong').length") != 1:
            assert __import__("time").monotonic() < deadline
        browser.eval("localStorage.clear()")
        assert browser.errors == []
    finally:
        srv.shutdown()
        srv.server_close()


def test_review_command_writes_sheet_and_prints_its_path(photos, tmp_path, tiny_model, monkeypatch):
    from typer.testing import CliRunner

    from imgtag.cli import app

    d = tmp_path / "run"
    d.mkdir()
    (d / "a.jpg").write_bytes(photos[0].read_bytes())
    (d / "tags.jsonl").write_text('{"path": "a.jpg", "labels": [{"label": "cat", "score": 0.9}]}\n'
                                  '{"path": "b.jpg", "error": "b.jpg: file not found"}\n')
    monkeypatch.chdir(tmp_path)  # record paths are relative to the results file's folder, not the cwd
    r = CliRunner().invoke(app, ["review", "run/tags.jsonl", "-m", str(tiny_model)])
    assert r.exit_code == 0, r.output
    index = tmp_path / "run" / "tags-review" / "index.html"
    assert str(index) in r.stdout.splitlines()[-1] or r.stdout.strip().endswith("tags-review/index.html")
    assert "b.jpg: file not found" in r.stderr
    page = index.read_text(encoding="utf-8")
    assert '<option value="dog">' in page  # the model's labels are offered as missing keywords
    assert len(list((index.parent / "thumbs").glob("*.jpg"))) == 1
    bad = CliRunner().invoke(app, ["review", "nope.jsonl"])
    assert bad.exit_code == 2 and "nope.jsonl" in bad.stderr
