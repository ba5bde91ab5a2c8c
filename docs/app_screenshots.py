"""Screenshots of each tab of a running `dopplerdiff app`, with results, in headless Chromium.

    python docs/app_screenshots.py URL OUT_DIR WINDOW [WINDOW ...]

Drives Chromium over its DevTools protocol (standard library only: a minimal WebSocket client): opens each
tab by its ?tab= link, uploads the WINDOW files where the tab takes uploads, presses the tab's button, waits
for the result picture and saves OUT_DIR/app_<tab>.png. Called by docs/app_screenshots.sh.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

TABS = ("generate", "edit", "identify", "report")
UPLOADS = ("edit", "identify")
PRESS = ("generate", "edit", "identify")
VISIBLE_FILE_INPUT = """(() => { const i = [...document.querySelectorAll('input[type=file]')]
  .find(x => x.parentElement && x.parentElement.offsetParent !== null);
  if (i) i.setAttribute('data-shot', '1'); return !!i; })()"""
PRESS_BUTTON = """(() => { const b = [...document.querySelectorAll('button.primary, button.lg.primary')]
  .find(x => x.offsetParent !== null); if (b) b.click(); return !!b; })()"""
RESULT_SHOWN = """[...document.querySelectorAll('img')]
  .some(i => i.offsetParent !== null && i.naturalWidth > 0 && !i.closest('footer'))"""
PAGE_READY = "!!document.querySelector('button[role=tab]')"


class DevTools:
    """One page target of Chromium's DevTools protocol over a plain socket."""

    def __init__(self, ws_url: str) -> None:
        hostport, path = ws_url.removeprefix("ws://").split("/", 1)
        host, port = hostport.split(":")
        self.sock = socket.create_connection((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        self.n = 0

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        n = len(data)
        size = bytes([0x80 | n]) if n < 126 else (bytes([0x80 | 126]) + struct.pack(">H", n) if n < 65536
                                                 else bytes([0x80 | 127]) + struct.pack(">Q", n))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self.sock.sendall(b"\x81" + size + mask + masked)

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("chromium closed the DevTools connection")
            buf += chunk
        return buf

    def _recv(self) -> str:
        out = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            n = struct.unpack(">H", self._exact(2))[0] if n == 126 else (
                struct.unpack(">Q", self._exact(8))[0] if n == 127 else n)
            out += self._exact(n)
            if b0 & 0x80:
                return out.decode()

    def call(self, method: str, **params) -> dict:
        self.n += 1
        self._send(json.dumps({"id": self.n, "method": method, "params": params}))
        while True:
            msg = json.loads(self._recv())
            if msg.get("id") == self.n:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr: str):
        return self.call("Runtime.evaluate", expression=expr, returnByValue=True)["result"].get("value")

    def wait(self, expr: str, seconds: float, what: str) -> None:
        end = time.time() + seconds
        while not self.js(expr):
            if time.time() > end:
                raise TimeoutError(f"timed out waiting for {what}")
            time.sleep(0.5)


def start_chromium(profile: str, port: int = 9333) -> subprocess.Popen:
    proc = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                             f"--remote-debugging-port={port}", f"--user-data-dir={profile}",
                             "--window-size=1200,900", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(60):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list") as r:
                pages = [t for t in json.load(r) if t["type"] == "page"]
            if pages:
                proc.ws = pages[0]["webSocketDebuggerUrl"]  # type: ignore[attr-defined]
                return proc
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("chromium did not open its DevTools port")


def shoot(dt: DevTools, url: str, tab: str, windows: list[str], out: Path) -> None:
    dt.call("Page.navigate", url=f"{url}?tab={tab}")
    time.sleep(1)
    dt.wait(PAGE_READY, 60, f"the page ({tab})")
    time.sleep(2)
    if tab in UPLOADS and windows:
        dt.wait(VISIBLE_FILE_INPUT, 20, "the upload box")
        root = dt.call("DOM.getDocument")["root"]["nodeId"]
        node = dt.call("DOM.querySelector", nodeId=root, selector="input[data-shot='1']")["nodeId"]
        dt.call("DOM.setFileInputFiles", files=windows, nodeId=node)
        time.sleep(3)  # the upload
    if tab in PRESS:
        dt.wait(PRESS_BUTTON, 20, f"the {tab} button")
        dt.wait(RESULT_SHOWN, 180, f"the {tab} result")
        time.sleep(1)
    png = base64.b64decode(dt.call("Page.captureScreenshot", format="png")["data"])
    (out / f"app_{tab}.png").write_bytes(png)
    print(f"wrote {out / f'app_{tab}.png'}")


def main() -> None:
    url, out, windows = sys.argv[1].rstrip("/") + "/", Path(sys.argv[2]), [str(Path(w).resolve())
                                                                          for w in sys.argv[3:]]
    with tempfile.TemporaryDirectory() as profile:
        proc = start_chromium(profile)
        try:
            dt = DevTools(proc.ws)  # type: ignore[attr-defined]
            dt.call("Page.enable")
            for tab in TABS:
                shoot(dt, url, tab, windows, out)
        finally:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
