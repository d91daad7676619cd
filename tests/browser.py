"""A tiny headless-Chromium driver for the HTML page tests: the DevTools protocol over ``--remote-debugging-pipe``.

No extra package: Chromium reads JSON commands from fd 3 and writes replies/events to fd 4, each message ended
by a NUL byte. One page (one flattened target session). Collects console errors, uncaught exceptions and
failed loads (Log domain) so a test can assert there are none.

    with Browser() as b:
        b.goto("file:///.../index.html")
        b.eval("document.title")
        b.screenshot("shot.png")
"""
from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class BrowserError(RuntimeError):
    pass


class Browser:
    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 30.0):
        exe = find_chromium()
        if not exe:
            raise BrowserError("chromium not found")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="imgtag-chromium-")
        cmd_r, self._cmd_w = os.pipe()  # we write commands -> chromium fd 3
        self._ev_r, ev_w = os.pipe()    # chromium fd 4 -> we read

        def child_fds():  # via high fds, so 3 and 4 cannot clobber each other; dup2 makes them inheritable
            os.dup2(cmd_r, 100)
            os.dup2(ev_w, 101)
            os.dup2(100, 3)
            os.dup2(101, 4)

        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars",
                f"--user-data-dir={self.profile}", "--remote-debugging-pipe", f"--window-size={width},{height}",
                "about:blank"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, close_fds=False, preexec_fn=child_fds)
        os.close(cmd_r)
        os.close(ev_w)
        self._next = 0
        self._replies: dict[int, dict] = {}
        self._events: queue.Queue = queue.Queue()
        self._cond = threading.Condition()
        self.errors: list[str] = []  # console errors, exceptions, failed loads
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._stderr = threading.Thread(target=self.proc.stderr.read, daemon=True)  # drain
        self._stderr.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=True)
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    # ---- protocol
    def _read(self) -> None:
        buf = b""
        with os.fdopen(self._ev_r, "rb", buffering=0) as f:
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                buf += chunk
                *msgs, buf = buf.split(b"\0")
                for m in msgs:
                    msg = json.loads(m)
                    if "id" in msg:
                        with self._cond:
                            self._replies[msg["id"]] = msg
                            self._cond.notify_all()
                    else:
                        self._on_event(msg)
                        self._events.put(msg)

    def _on_event(self, msg: dict) -> None:
        m, p = msg.get("method"), msg.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif m == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            self.errors.append("exception: " + str(d.get("exception", {}).get("description") or d.get("text")))
        elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            e = p["entry"]
            self.errors.append(f"log: {e.get('text')} {e.get('url', '')}".strip())

    def call(self, method: str, session: bool = False, **params) -> dict:
        self._next += 1
        mid = self._next
        msg = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        with self._cond:
            while mid not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise BrowserError(f"{method}: no reply (chromium {'exited' if self.proc.poll() is not None else 'timed out'})")
                self._cond.wait(min(left, 0.5))
            reply = self._replies.pop(mid)
        if "error" in reply:
            raise BrowserError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def wait_event(self, method: str, timeout: float | None = None, pred=lambda p: True) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no {method} event")
            try:
                msg = self._events.get(timeout=left)
            except queue.Empty:
                continue
            if msg.get("method") == method and pred(msg.get("params", {})):
                return msg["params"]

    # ---- page helpers
    def goto(self, url: str) -> None:
        while not self._events.empty():
            self._events.get_nowait()
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def eval(self, expr: str, await_promise: bool = False):
        r = self.call("Runtime.evaluate", session=True, expression=expr, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in r:
            raise BrowserError(f"JS error in {expr[:80]!r}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r.get("result", {}).get("value")

    def images_loaded(self, timeout: float = 20.0) -> tuple[int, int]:
        """Make lazy images load, wait for them; returns (loaded with pixels, total)."""
        self.eval("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
        deadline = time.monotonic() + timeout
        while True:
            done, ok, total = self.eval("(() => { const a = [...document.images]; return [a.filter(i => i.complete).length,"
                                        " a.filter(i => i.complete && i.naturalWidth > 0).length, a.length]; })()")
            if done == total or time.monotonic() > deadline:
                return ok, total
            time.sleep(0.1)

    def screenshot(self, path: str | Path, full_page: bool = False) -> Path:
        kw = {"format": "png"}
        if full_page:
            w, h = self.eval("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
            kw.update(captureBeyondViewport=True, clip={"x": 0, "y": 0, "width": w, "height": h, "scale": 1})
        data = self.call("Page.captureScreenshot", session=True, **kw)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)

    def allow_downloads(self, folder: str | Path) -> None:
        self.call("Browser.setDownloadBehavior", behavior="allow", downloadPath=str(folder), eventsEnabled=True)

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except BrowserError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._cmd_w)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
