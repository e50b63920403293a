"""A minimal headless-Chromium driver over the DevTools protocol (stdlib only).

Chromium is started with ``--remote-debugging-pipe``: it reads NUL-terminated JSON commands
on fd 3 and writes replies and events on fd 4 (the transport Playwright uses too), so no
websocket library or port is needed. Enough for the leaderboard's browser test: open a
page, evaluate JS, click at a point, take a screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-extensions", "--hide-scrollbars", "--mute-audio"]


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """``$VLBENCH_CHROMIUM``, else Debian's chromium (or a chromium/chrome on PATH)."""
    env = os.environ.get("VLBENCH_CHROMIUM")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page (tab); use as a context manager."""

    def __init__(self, executable: str, width: int = 1400, height: int = 900, timeout: float = 30.0):
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="vlbench-chromium-")
        cmd_r, self._cmd_w = os.pipe()   # we write commands, the browser reads them on fd 3
        self._res_r, res_w = os.pipe()   # the browser writes on fd 4, we read
        hi_cmd, hi_res = 100, 101        # park them high first so the dup2s cannot clobber each other

        def wire() -> None:
            os.dup2(cmd_r, hi_cmd)
            os.dup2(res_w, hi_res)
            os.dup2(hi_cmd, 3)
            os.dup2(hi_res, 4)

        self.proc = subprocess.Popen(
            [executable, *CHROMIUM_ARGS, f"--user-data-dir={self._profile}", "--remote-debugging-pipe",
             "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=wire)  # noqa: PLW1509 - fd 3/4 wiring, single-threaded
        os.close(cmd_r)
        os.close(res_w)
        self._buf = b""
        self._next_id = 0
        self._events: list[dict] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.resize(width, height)

    def __enter__(self) -> Browser:  # noqa: PYI034 - no typing.Self on 3.10
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- protocol -------------------------------------------------------------------------
    def call(self, method: str, session: bool = False, **params) -> dict:
        self._next_id += 1
        msg = {"id": self._next_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            self._events.append(reply)

    def _read(self) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._res_r], [], [], max(left, 0))
            if not ready:
                raise BrowserError(f"no reply from chromium within {self.timeout:.0f}s")
            chunk = os.read(self._res_r, 1 << 16)
            if not chunk:
                raise BrowserError(f"chromium closed the pipe (exit code {self.proc.poll()})")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def wait_event(self, method: str) -> dict:
        while True:
            for i, event in enumerate(self._events):
                if event.get("method") == method:
                    return self._events.pop(i)
            self._events.append(self._read())

    # -- page -----------------------------------------------------------------------------
    def resize(self, width: int, height: int) -> None:
        self.call("Emulation.setDeviceMetricsOverride", session=True, width=width, height=height,
                  deviceScaleFactor=1, mobile=False)

    def open(self, url: str) -> None:
        self._events = [e for e in self._events if e.get("method") != "Page.loadEventFired"]
        self.call("Page.navigate", session=True, url=url)
        self.wait_event("Page.loadEventFired")

    def eval(self, expression: str):
        result = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"JS error: {result['exceptionDetails'].get('text')} in {expression[:80]}")
        return result["result"].get("value")

    def click(self, x: float, y: float) -> None:
        """A real mouse click (press + release) at viewport coordinates."""
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", session=True, type=kind, x=x, y=y, button="left",
                      clickCount=1)

    def click_selector(self, selector: str) -> None:
        """Scroll the element into view and click its centre."""
        box = self.eval(
            f"(function(){{var e=document.querySelector({json.dumps(selector)});"
            f"if(!e)return null;e.scrollIntoView({{block:'center'}});"
            f"var r=e.getBoundingClientRect();return [r.x+r.width/2,r.y+r.height/2];}})()")
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        self.click(*box)

    def screenshot(self, path: Path, full_page: bool = True, max_height: int = 6000) -> Path:
        if full_page:
            self.eval("window.scrollTo(0, 0)")
            height = int(self.eval("document.documentElement.scrollHeight"))
            width = int(self.eval("window.innerWidth"))
            self.resize(width, min(max(height, 1), max_height))
        data = self.call("Page.captureScreenshot", session=True, format="png")["data"]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                try:
                    self.call("Browser.close")
                except (BrowserError, OSError):
                    pass
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            for fd in (self._cmd_w, self._res_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            shutil.rmtree(self._profile, ignore_errors=True)
