"""``imgtag review OUT.jsonl`` / ``imgtag tag --review DIR``: a contact sheet to check imgtag's keywords by eye.

DIR/index.html lists the keywords; each keyword has pages of thumbnails (``per_page`` each, so thousands of
photos stay fast), every photo with its score, the least certain first (closest above its threshold when the
thresholds are known, else the lowest score). Per photo and keyword the page offers "right" and "wrong",
and "missing" adds a keyword imgtag did not give. The decisions are kept in the browser (localStorage,
across the sheet's pages) and leave it as a corrections JSONL (:mod:`imgtag.io.corrections`): the
"Export" button downloads ``corrections.jsonl``; under ``imgtag review --serve`` the "Save" button also
writes it into a file through a small server bound to 127.0.0.1 only.

Thumbnails are cached in DIR/thumbs by image content (:mod:`imgtag.io.thumbs`): re-running into the same
DIR only makes the new ones. The sheet needs no network; the pages are plain HTML with a little inline JS.
"""
from __future__ import annotations

import hashlib
import html
import json
import os
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

from imgtag.io.atomic import atomic_open
from imgtag.io.corrections import CorrectionsError, iter_corrections, latest, write_corrections
from imgtag.io.thumbs import make_thumbnails

NO_KEYWORD = "(no keyword)"
MAX_POST_BYTES = 8 << 20  # a corrections upload larger than this is refused


@dataclass
class ReviewSheet:
    index: Path
    photos: int
    keywords: int
    pages: int
    failed: list[str] = field(default_factory=list)  # records with errors / photos without a thumbnail


def read_records(src: str | Path) -> list[dict]:
    """Tag results from a JSON Lines or JSON file (``imgtag tag`` output); records with an error are kept
    (the sheet counts them) and lines that are not JSON raise ValueError naming the line."""
    text = Path(src).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        return json.loads(text)
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError as e:
                raise ValueError(f"{src}:{n}: not a JSON record: {e}") from None
    return out


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _template(name: str) -> str:
    from importlib.resources import files

    return files("imgtag").joinpath("templates", name).read_text(encoding="utf-8")


def write_review(records: list[dict], out_dir: str | Path, per_page: int = 200, thumb_size: int = 200,
                 keywords: list[str] | None = None, thresholds: dict[str, float] | None = None,
                 base: str | Path | None = None, title: str = "imgtag review") -> ReviewSheet:
    """Write the contact sheet for tag ``records`` into ``out_dir``; returns where its index is.

    ``keywords``: every keyword offered for "missing" (e.g. the model's labels), besides those in the records.
    ``thresholds``: per keyword, to put the photos closest above their threshold first. ``base``: folder
    that relative image paths are relative to, when they do not exist as given (default: as given).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    failed = [r.get("error") or f"{r.get('path')}: no labels" for r in records if "labels" not in r]
    photos = [r for r in records if "labels" in r]
    groups: dict[str, list[tuple[str, float]]] = defaultdict(list)
    kw_paths: dict[str, str | None] = {k: None for k in keywords or []}
    for r in photos:
        if not r["labels"]:
            groups[NO_KEYWORD].append((r["path"], float("nan")))
        for lab in r["labels"]:
            groups[lab["label"]].append((r["path"], float(lab.get("score", float("nan")))))
            kp = lab.get("keyword_path") or lab.get("path")
            if kp or lab["label"] not in kw_paths:
                kw_paths[lab["label"]] = kp or kw_paths.get(lab["label"])
    thr = thresholds or {}

    def locate(p: str) -> str:
        if base is None or Path(p).is_absolute() or Path(p).exists():
            return p
        return str(Path(base) / p)

    thumb_errors: list[str] = []
    thumbs = make_thumbnails([locate(r["path"]) for r in photos], out / "thumbs", thumb_size, errors=thumb_errors)
    sheet_id = hashlib.sha1(str(out.resolve()).encode()).hexdigest()[:12]
    names = sorted((k for k in groups if k != NO_KEYWORD), key=str.lower) + ([NO_KEYWORD] if NO_KEYWORD in groups else [])
    page_tpl = Template(_template("review.html"))
    script = _template("review.js")
    datalist = "".join(f'<option value="{_e(k)}">' for k in sorted(kw_paths, key=str.lower))
    common = dict(sheet=sheet_id, script=script, datalist=datalist, kwpaths=json.dumps(kw_paths).replace("</", "<\\/"))

    def card(path: str, kw: str, score: float) -> str:
        name = thumbs.get(locate(path))
        img = (f'<img src="thumbs/{name}" alt="{_e(Path(path).name)}" loading="lazy">' if name
               else '<div class="nothumb">no thumbnail</div>')
        real = kw != NO_KEYWORD
        acts = ('<button class="v right" data-v="right" title="the keyword is right">✓ right</button>'
                '<button class="v wrong" data-v="wrong" title="the keyword is wrong">✗ wrong</button>') if real else ""
        return (f'<figure class="card" data-path="{_e(path)}" data-kw="{_e(kw if real else "")}" title="{_e(path)}">{img}'
                f'<figcaption><b>{"" if score != score else f"{score:.2f}"}</b> {_e(Path(path).name)}</figcaption>'
                f'<div class="acts">{acts}<span class="miss"><input list="kws" placeholder="missing keyword">'
                f'<button class="add" title="add a keyword imgtag missed">+ missing</button></span></div>'
                f'<div class="added"></div></figure>')

    index_rows, n_pages = [], 0
    for gi, kw in enumerate(names):
        items = groups[kw]
        t = thr.get(kw)
        items.sort(key=lambda it: (0.0 if it[1] != it[1] else it[1] - (t or 0.0), it[0]))  # least certain first
        pages = [items[i:i + per_page] for i in range(0, len(items), per_page)] or [[]]
        files = [f"kw{gi}-{n + 1}.html" for n in range(len(pages))]
        for n, chunk in enumerate(pages):
            nav = " ".join(f'<a href="{f}"{" class=cur" if i == n else ""}>{i + 1}</a>' for i, f in enumerate(files))
            body = (f'<h2>{_e(kw)} <small>{len(items)} photos · page {n + 1} of {len(pages)} · least certain first</small></h2>'
                    f'<p class="pages">{nav if len(files) > 1 else ""}</p><div class="cards">'
                    + "".join(card(p, kw, s) for p, s in chunk) + "</div>")
            with atomic_open(out / files[n], "w") as f:
                f.write(page_tpl.substitute(common, title=_e(f"{kw} · {title}"), body=body))
        n_pages += len(pages)
        index_rows.append(f'<tr><td><a href="{files[0]}">{_e(kw)}</a></td><td>{len(items)}</td><td>{len(pages)}</td></tr>')
    body = (f'<h2>{_e(title)} <small>{len(photos)} photos · {len(names)} keywords'
            f'{f" · {len(failed)} not tagged (errors)" if failed else ""}</small></h2>'
            '<p class="help">Open a keyword, mark each photo ✓ right or ✗ wrong, add keywords imgtag missed, then '
            '<b>Export</b> the decisions (corrections.jsonl) for <code>imgtag tag --corrections</code> or '
            '<code>imgtag learn</code>. Decisions are kept in this browser across the pages.</p>'
            '<table id="keywords"><tr><th>keyword</th><th>photos</th><th>pages</th></tr>' + "".join(index_rows) + "</table>")
    index = out / "index.html"
    with atomic_open(index, "w") as f:
        f.write(page_tpl.substitute(common, title=_e(title), body=body))
    return ReviewSheet(index, len(photos), len(names), n_pages, failed + thumb_errors)


# ----------------------------------------------------------------------------- --serve


class _Handler(SimpleHTTPRequestHandler):
    """Static files of the sheet + GET/POST /corrections. Only requests addressed to this loopback server
    (Host, and Origin when sent) are answered, so other web pages cannot post decisions (DNS rebinding/CSRF)."""

    server_version = "imgtag-review"
    corrections: Path
    lock = threading.Lock()

    def log_message(self, fmt, *args):  # quiet: the CLI prints what matters
        pass

    def _allowed(self) -> bool:
        port = self.server.server_address[1]
        ok_hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
        origin = self.headers.get("Origin")
        return self.headers.get("Host") in ok_hosts and (origin is None or urlsplit(origin).netloc in ok_hosts)

    def _reply(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if not self._allowed():
            return self._reply(403, b'{"error": "forbidden"}')
        if urlsplit(self.path).path == "/corrections":
            data = self.corrections.read_bytes() if self.corrections.exists() else b""
            return self._reply(200, data, "application/x-ndjson")
        return super().do_GET()

    def do_POST(self):
        if not self._allowed() or urlsplit(self.path).path != "/corrections":
            return self._reply(403, b'{"error": "forbidden"}')
        try:
            n = int(self.headers.get("Content-Length", "-1"))
        except ValueError:
            n = -1
        if not 0 <= n <= MAX_POST_BYTES:
            return self._reply(413, b'{"error": "body missing or too large"}')
        try:
            decisions = list(iter_corrections(self.rfile.read(n).decode("utf-8").splitlines(), "upload"))
        except (UnicodeDecodeError, CorrectionsError) as e:
            return self._reply(400, json.dumps({"error": str(e)}).encode())
        with self.lock:
            write_corrections(self.corrections, latest(decisions).values())
        self._reply(200, json.dumps({"saved": len(decisions), "file": str(self.corrections)}).encode())


def make_server(sheet_dir: str | Path, corrections: str | Path, port: int = 0) -> ThreadingHTTPServer:
    """A server for the sheet on 127.0.0.1 (``port`` 0: a free one); the page's "Save" writes ``corrections``
    (the whole set of the page's decisions, atomically). Run it with ``serve_forever()``."""
    handler = type("Handler", (_Handler,), {"corrections": Path(corrections).resolve()})
    directory = os.fspath(Path(sheet_dir).resolve())

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def finish_request(self, request, client_address):
            handler(request, client_address, self, directory=directory)

    return Server(("127.0.0.1", port), handler)


def model_hints(model: str | None) -> tuple[list[str], dict[str, float]]:
    """A model's labels (offered for "missing") and per-class thresholds (for "least certain first"),
    read from its card only (no weights loaded)."""
    from imgtag.card import read_card, resolve_model

    return card_hints(read_card(resolve_model(model)[1]))


def card_hints(card) -> tuple[list[str], dict[str, float]]:
    """:func:`model_hints` of a card: its labels, or with a keyword vocabulary its keywords (each at its lowest head
    threshold: the score at which some head fires it)."""
    if card.vocabulary is not None:
        kws = card.vocabulary.get("keywords", [])
        return [k["name"] for k in kws], {k["name"]: float(min(k["thresholds"].values()))
                                           for k in kws if k.get("thresholds")}
    return list(card.labels), dict(zip(card.labels, map(float, card.class_thresholds())))


def serve_sheet(sheet_dir: str | Path, corrections: str | Path, port: int = 0, announce=print) -> None:
    """Serve the sheet on 127.0.0.1 until Ctrl-C; ``announce`` gets the one line with the URL."""
    srv = make_server(sheet_dir, corrections, port)
    announce(f"review sheet on http://127.0.0.1:{srv.server_address[1]}/index.html (this machine only); "
             f"'Save to imgtag' writes {Path(corrections).resolve()}; Ctrl-C stops")
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
