"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import httpx
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from mullama_tui.config import Settings
from mullama_tui.tui.widgets.prompt import PromptInput

LONG_PROMPT = "Write a very long story about a lighthouse keeper and the sea, with many chapters."

CLI = [sys.executable, "-m", "mullama_tui.cli"]


def run_cli(*args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, input=input,
                          timeout=timeout, env=os.environ.copy())


def wait_until(cond, timeout: float = 10.0, what: str = "condition", interval: float = 0.01) -> None:
    """Poll `cond()` until it is true; fail, naming `what`, after `timeout` seconds. The one
    bounded wait of the tests outside an app (`until` is the same inside one)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def until(pilot, cond, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.02)


async def send(pilot, app, text: str) -> None:
    app.query_one(PromptInput).load_text(text)
    app.query_one(PromptInput).focus()
    await pilot.press("enter")


def require_batch_invariance(drift: float) -> None:
    """Skip an exact batched-equals-single comparison where this machine cannot give it."""
    if drift:
        import pytest

        pytest.skip(f"this machine's kernels are not batch-invariant (logits drift by up to {drift:.2g} "
                    f"between a batch of 3 and a single sequence), so a batched sampled run may "
                    f"differ from a single run; the hardware-independent checks still ran")


def greedy_gaps(model, prompt_tokens: list[int], tokens: list[int]) -> list[float]:
    """Teacher forcing on one sequence alone: for each generated token, the gap between
    the best logit and the logit of the token that was generated. A greedy sequence that
    was really decoded from its own prompt scores about 0 everywhere (up to the machine's
    batch drift, thousandths); tokens that came from another sequence score far more."""
    import numpy as np

    from mullama_tui.engine import llama

    seq = prompt_tokens + tokens
    with llama.LlamaContext(model, max(16, len(seq) + 8), 1, len(seq), 2) as ctx:
        first = len(prompt_tokens) - 1
        for i, t in enumerate(seq):
            ctx.batch.add(t, i, 0, i >= first)
        assert ctx.decode() == 0
        gaps = []
        for k, tok in enumerate(tokens):
            row = ctx.logits(first + k)
            gaps.append(float(np.max(row) - row[tok]))
        return gaps


def greedy_gap(model, prompt_tokens: list[int], tokens: list[int]) -> float:
    return max(greedy_gaps(model, prompt_tokens, tokens))


def opening_gap(model, prompt_tokens: list[int], text: str, n: int = 8) -> float:
    """`greedy_gap` over the first `n` tokens of a greedy text whose token ids are not at
    hand (an HTTP stream), tokenized again. The opening tokens are what tells prompts
    apart: further on, the text itself predicts its own continuation whatever the prompt."""
    toks = model.tokenize(text, add_special=False, parse_special=False)[:n]
    return greedy_gap(model, prompt_tokens, toks)


def configure(**values) -> None:
    s = Settings(**{"seed": 5, **values})
    s.save()


class Server:
    """uvicorn on a loopback socket.

    `small_buffers` models a real network path for slow-reader tests: a 4 KB kernel send
    buffer (accepted sockets inherit it) and a 2 KB asyncio write-buffer high-water mark
    (64 KB by default). On loopback the kernel buffer otherwise grows to megabytes, and a
    slow reader would take thousands of tokens to reach the server's own backpressure."""

    def __init__(self, app, small_buffers: bool = False) -> None:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        config: dict = {}
        if small_buffers:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            config["http"] = SmallBufferH11
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", **config))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)

    @classmethod
    def of(cls, engine, name: str = "smollm2", small_buffers: bool = False, **options) -> Server:
        """`serve`'s app for `engine` (`options` go to `create_app`), on a loopback socket;
        use it as a context manager so it stops afterwards."""
        from mullama_tui.server.app import create_app

        return cls(create_app(engine, name, **options), small_buffers=small_buffers)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class SmallBufferH11(H11Protocol):
    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        transport.set_write_buffer_limits(high=2048)


def wait_idle(server: Server, timeout: float = 10.0) -> dict:
    """The server's /health once nothing runs or waits."""
    seen: list[dict] = []

    def idle() -> bool:
        seen.append(httpx.get(server.url + "/health").json())
        return seen[-1]["active"] == 0 and seen[-1]["queued"] == 0

    wait_until(idle, timeout, "the server to be idle", 0.02)
    return seen[-1]




from mullama_tui.models.tiny import THINKING_TEMPLATE, with_chat_template  # noqa: E402,F401  (the tests' thinking model)


class ScriptedEngine:
    """Stands in for the engine where a test needs what the real bundled model does not
    produce on demand (a worker that crashes with an unexpected exception, a generation
    that ends in an engine error, a snapshot of a stream frozen mid-way), and only there.
    `Generation` is the engine's real, pure-Python handle; the test feeds its events."""

    n_ctx = 2048

    def __init__(self, submit) -> None:
        from types import SimpleNamespace

        from mullama_tui.engine.types import ModelInfo

        self._submit = submit
        self.model = SimpleNamespace(info=ModelInfo("scripted", "scripted", "no model", 0, 0, 0, 0, 0, True),
                                     placement=None)

    def submit(self, request):
        return self._submit(request)

    def thread_choice(self):
        return None

    def clear_cache(self) -> None:
        pass

    def close(self) -> None:
        pass


def fed_generation(request, events):
    """A real `Generation` whose events the test pushes; a cancel ends it at once with a
    final event, as the engine's scheduler does."""
    from mullama_tui.engine.generation import Generation
    from mullama_tui.engine.types import FinishReason, Stats, TokenEvent

    def wake() -> None:
        if gen.cancelled and not gen.finished:
            gen.push(TokenEvent("", -1, 0, FinishReason.CANCELLED, Stats(finish_reason=FinishReason.CANCELLED)))

    gen = Generation(request, [1, 2, 3], 7, wake)
    for ev in events:
        gen.push(ev)
    return gen


@dataclass
class Scripted:
    """One answer of `scripted_server`: a JSON error (`status`, `body`, `headers`), or SSE
    `parts` written one by one (`delay` seconds apart), or nothing for `hang` seconds."""

    parts: list[bytes] = field(default_factory=list)
    status: int = 200
    body: dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    hang: float = 0.0


def sse_data(obj: dict) -> bytes:
    """One SSE event carrying `obj` as JSON."""
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def scripted_server(answer):
    """A loopback OpenAI-compatible stand-in that answers every POST with
    `answer(path, calls)` (`calls`: POSTs to that path so far, this one included): a
    `Scripted`, or a list of SSE parts. For the formats and failures of servers no test
    here can run (reasoning fields, no logprobs, errors, stalls, broken streams). A
    generator: the base URL, then the server stops."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            calls[self.path] = calls.get(self.path, 0) + 1
            reply = answer(self.path, calls[self.path])
            if not isinstance(reply, Scripted):
                reply = Scripted(parts=list(reply))
            if reply.hang:
                time.sleep(reply.hang)
                return
            if reply.body is not None:
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for part in reply.parts:
                self.wfile.write(part)
                self.wfile.flush()
                time.sleep(reply.delay)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
