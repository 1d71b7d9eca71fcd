"""A headless Chromium driven over the DevTools protocol, for tests that look at the Dagster UI.

The UI keeps some of what it shows outside the URL (which tab of a check is open, which partition is
focused), so a bare `chromium --screenshot=<file> <url>` cannot reach it: the page has to be clicked. This
speaks the DevTools protocol over `--remote-debugging-pipe` (file descriptors 3 and 4, one JSON message per
NUL-terminated chunk), so it needs nothing beyond the standard library and the `chromium` binary.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

INSTALL = "apt-get update && apt-get install -y chromium"
WINDOW = (1400, 900)

# Chromium's flags for a quiet, self-contained headless run: no network of its own, no first-run UI.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--hide-scrollbars", f"--window-size={WINDOW[0]},{WINDOW[1]}"]


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class BrowserError(RuntimeError):
    pass


class Browser:
    """One page of a headless Chromium. Use as a context manager; every wait has a deadline."""

    def __init__(self, profile_dir: Path) -> None:
        binary = chromium_binary()
        if binary is None:
            raise BrowserError(f"chromium is not installed; install it with `{INSTALL}` (as root)")
        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()

        def wire_pipes() -> None:
            # In the child: the protocol reads fd 3 and writes fd 4. Move both ends above 10 first (close on
            # exec) so that neither is overwritten when the other lands on 3 or 4; dup2 leaves 3 and 4 open
            # across exec. Python's own descriptors are not inherited (PEP 446), hence close_fds=False.
            high_read = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD_CLOEXEC, 10)
            high_write = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD_CLOEXEC, 10)
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self._proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={profile_dir}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=wire_pipes, close_fds=False, start_new_session=True,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._out = os.fdopen(to_browser_write, "wb", buffering=0)
        self._in = os.fdopen(from_browser_read, "rb", buffering=0)
        self._buffer = b""
        self._next_id = 0
        targets = self._call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        attached = self._call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})
        self._session = attached["sessionId"]
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": WINDOW[0], "height": WINDOW[1], "deviceScaleFactor": 1, "mobile": False})

    # ------------------------------------------------------------------------------------------ protocol
    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise BrowserError("chromium did not answer in time")
            chunk = self._in.read(65536)
            if not chunk:
                raise BrowserError(f"chromium closed the protocol pipe (exit code {self._proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
              timeout: float = 60) -> dict[str, Any]:
        self._next_id += 1
        request: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        self._out.write(json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next_id:  # anything else is an event nobody asked for
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._call(method, params, session=self._session)

    # ------------------------------------------------------------------------------------------ page
    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise BrowserError(f"script failed: {answer['exceptionDetails'].get('text')}: {expression[:200]}")
        return answer["result"].get("value")

    def goto(self, url: str) -> None:
        self.call("Page.navigate", {"url": url})

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                missing = [n for n in needles if n not in text]
                raise BrowserError(f"the page never showed {missing}; it shows:\n{text[:3000]}")
            time.sleep(0.25)

    def wait_without_text(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while needle in self.text():
            if time.monotonic() > deadline:
                raise BrowserError(f"the page still shows {needle!r}")
            time.sleep(0.25)

    def click_text(self, text: str, *, selector: str = "*", last: bool = False, timeout: float = 30) -> None:
        """Click the innermost visible element matching the CSS `selector` whose text is exactly `text`: the
        first such element on the page, or the last one with `last`."""
        finder = f"""(() => {{
            const hits = [...document.querySelectorAll({json.dumps(selector)})].filter(e =>
                e.innerText !== undefined && e.innerText.trim() === {json.dumps(text)} && e.offsetParent !== null);
            const inner = hits.filter(e => !hits.some(o => o !== e && e.contains(o)));
            if (!inner.length) return null;
            const target = inner[{"inner.length - 1" if last else "0"}];
            target.scrollIntoView({{block: 'center'}});
            const r = target.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2];
        }})()"""
        deadline = time.monotonic() + timeout
        while (point := self.evaluate(finder)) is None:
            if time.monotonic() > deadline:
                raise BrowserError(f"nothing to click named {text!r} ({selector}); the page shows:\n"
                                   f"{self.text()[:3000]}")
            time.sleep(0.25)
        self.click_at(*point)

    def click_at(self, x: float, y: float) -> None:
        """A real mouse click: move, press, release (React sees the same events as from a person)."""
        self.call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def screenshot(self, path: Path) -> Path:
        time.sleep(0.5)  # let the last render and any transition settle
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        path.write_bytes(base64.b64decode(data))
        return path

    # ------------------------------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        try:
            self._call("Browser.close", timeout=10)
        except (BrowserError, OSError, ValueError):
            pass
        for stream in (self._out, self._in):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, 9)
            self._proc.wait(timeout=10)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
