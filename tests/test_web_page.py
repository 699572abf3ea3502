"""The server's web page in a real headless Chromium (Debian's `chromium`, installed by
.ci/run), driven over the DevTools protocol: type a prompt, see tokens stream in, stop."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time

import httpx
import pytest
import websockets

from helpers import Server, wait_idle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None and os.environ.get("MULLAMA_TUI_REQUIRE_CHROMIUM"):
    raise RuntimeError("chromium is required here (MULLAMA_TUI_REQUIRE_CHROMIUM) but not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")


class Page:
    """The smallest DevTools client: evaluate JavaScript in one page."""

    def __init__(self, ws) -> None:
        self.ws, self.next_id = ws, 0

    async def eval(self, expression: str):
        self.next_id += 1
        await self.ws.send(json.dumps({"id": self.next_id, "method": "Runtime.evaluate",
                                       "params": {"expression": expression, "returnByValue": True}}))
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("id") == self.next_id:
                return msg["result"]["result"].get("value")

    async def until(self, expression: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def page_server(srv_engine):
    with Server.of(srv_engine) as s:
        yield s


def test_page_streams_tokens_and_stop_aborts(page_server):
    profile = tempfile.mkdtemp(prefix="chromium-")
    proc = subprocess.Popen(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-quic", f"--user-data-dir={profile}", "--remote-debugging-port=0",
         page_server.url + "/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        devtools = None
        deadline = time.monotonic() + 30
        while devtools is None:
            line = proc.stderr.readline()
            assert line or proc.poll() is None, "chromium exited"
            if "DevTools listening on" in line:
                devtools = line.split("DevTools listening on ")[1].strip()
            assert time.monotonic() < deadline, "chromium did not start"
        http = devtools.replace("ws://", "http://").split("/devtools/")[0]
        targets = [t for t in httpx.get(http + "/json/list").json() if t["type"] == "page"]

        async def drive():
            async with websockets.connect(targets[0]["webSocketDebuggerUrl"], max_size=None) as ws:
                page = Page(ws)
                await page.until("document.readyState === 'complete' && !!document.getElementById('send')")
                await page.eval("""
                    document.getElementById('prompt').value = 'Write a very long story about the sea.';
                    document.getElementById('max_tokens').value = '1500';
                    document.getElementById('temperature').value = '0';  // greedy: ~560 tokens, deterministic
                    document.getElementById('send').click();""")
                first = await page.until("document.getElementById('output').textContent.length > 20 && "
                                         "document.getElementById('output').textContent.length")
                grown = await page.until(f"document.getElementById('output').textContent.length > {first} && "
                                         "document.getElementById('output').textContent.length")
                assert grown > first  # it streams: the text keeps growing
                assert "tok/s" in await page.eval("document.getElementById('stats').textContent")
                await page.eval("document.getElementById('stop').click()")
                stats = await page.until("document.getElementById('stats').textContent.includes('stopped') && "
                                         "document.getElementById('stats').textContent")
                assert "stopped" in stats
                return await page.eval("document.getElementById('output').textContent")

        text = asyncio.run(drive())
        assert len(text) > 20
        wait_idle(page_server, 10)  # the abort reached the server: its generation was cancelled
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
