"""The remote (OpenAI-compatible) backend: against a real `mullama-tui serve` app on
loopback, and against a small loopback server that misbehaves on purpose for the failure
cases a real server does not produce on demand."""

from __future__ import annotations

import json
import socket
import time

import pytest

from mullama_tui.engine.generation import drain_together
from mullama_tui.engine.remote import RemoteEngine, SSEParser
from mullama_tui.engine.types import FinishReason, Request, SamplerParams

from helpers import (
    Scripted,
    Server,
    configure,
    require_batch_invariance,
    run_cli,
    scripted_server,
    send,
    sse_data,
    until,
    wait_idle,
)

PROMPT = "The old lighthouse keeper"


@pytest.fixture(scope="module")
def remote_server(srv_engine):
    with Server.of(srv_engine, api_key="k3y") as s:
        yield s


def remote(server: Server, **kw) -> RemoteEngine:
    return RemoteEngine(server.url + "/v1", api_key="k3y", **kw)


def raw(t: float = 0.8, n: int = 24, seed: int = 9, prompt: str = PROMPT) -> Request:
    return Request(prompt=prompt, mode="raw", max_tokens=n, params=SamplerParams(temperature=t, seed=seed))


# -- the SSE parser ---------------------------------------------------------------------

def test_sse_parser_handles_split_merged_comment_and_crlf_events():
    p = SSEParser()
    chunks = [b": keep-alive\r\n\r\nda", b'ta: {"a": 1}\r\n', b"\r\ndata: x\n\ndata: y\nda",
              b"ta: z\n\nevent: ping\ndata: [DONE]\n\n", "data: caf\u00e9".encode()[:-1]]
    out = [e for c in chunks for e in p.feed(c)]
    assert out == ['{"a": 1}', "x", "y\nz", "[DONE]"]
    assert list(p.feed("data: café".encode()[-1:])) == [] and list(p.close()) == ["café"]


# -- against a real mullama-tui serve ----------------------------------------------------

def test_run_through_the_remote_backend_matches_a_local_run(remote_server):
    args = ["run", "--json", "--raw", "--seed", "9", "--temperature", "0.8", "-n", "24", PROMPT]
    local = run_cli(*args)
    far = run_cli(*args, "--backend", "openai", "--base-url", remote_server.url + "/v1", "--api-key", "k3y")
    assert far.returncode == 0, far.stderr
    text = lambda r: "".join(json.loads(line)["text"] for line in r.stdout.splitlines())  # noqa: E731
    assert text(far) == text(local) and text(local)
    final = json.loads(far.stdout.splitlines()[-1])
    assert final["finish_reason"] == "length" and final["stats"]["generated_tokens"] == 24
    assert final["stats"]["ttft"] > 0 and final["stats"]["gen_tps"] > 0


def remote_panes(server: Server, temps: tuple[float, ...]) -> tuple[list, list[str], list[int]]:
    eng = remote(server)
    try:
        gens = [eng.submit(raw(t)) for t in temps]
        out = [""] * len(temps)
        active = []

        def collect(i, evs):
            out[i] += "".join(e.text for e in evs)
            active.append(remote_server_active(server))

        drain_together(gens, interval=0.02, on_events=collect)
        return gens, out, active
    finally:
        eng.close()


def test_compare_panes_send_concurrent_requests(remote_server):
    gens, out, active = remote_panes(remote_server, (0.1, 0.9, 1.4))
    assert [g.finish_reason for g in gens] == [FinishReason.LENGTH] * 3
    assert [g.stats.generated_tokens for g in gens] == [24] * 3
    assert max(active) >= 2  # the server had several at once (and batched them)
    assert all(out) and len(set(out)) == 3


def test_remote_panes_match_local_single_runs(remote_server, engine, batch_drift):
    require_batch_invariance(batch_drift)
    temps = (0.1, 0.9, 1.4)
    singles = []
    for t in temps:
        engine.clear_cache()
        singles.append(engine.submit(raw(t)).text())
    _, out, _ = remote_panes(remote_server, temps)
    assert out == singles


def remote_server_active(server: Server) -> int:
    import httpx

    return httpx.get(server.url + "/health").json()["active"]


def test_cancel_closes_the_stream_and_the_server_stops(remote_server):
    eng = remote(remote_server)
    try:
        gen = eng.submit(Request(prompt="Write a very long story about the sea.", mode="chat",
                                 max_tokens=1800, params=SamplerParams(seed=5)))
        n = 0
        for _ in gen:
            n += 1
            if n == 5:
                t0 = time.perf_counter()
                gen.cancel()
        assert gen.finish_reason is FinishReason.CANCELLED
        assert time.perf_counter() - t0 < 1.0
        wait_idle(remote_server, 5)
    finally:
        eng.close()


def test_tui_through_the_remote_backend(home, remote_server):
    from mullama_tui.backends import BackendChoice
    from mullama_tui.tui.app import MullamaApp

    configure(max_tokens=20, temperature=0.0, mode="raw")
    app = MullamaApp(backend=BackendChoice("openai", remote_server.url + "/v1", "k3y"))

    async def go():
        async with app.run_test() as pilot:
            await until(pilot, lambda: app.state == "ready", 20, "the remote backend")
            await send(pilot, app, PROMPT)
            await until(pilot, lambda: app.chat.last_stats is not None, 60, "the reply")
            return app.chat.reply_text

    import asyncio
    text = asyncio.run(go())
    local = run_cli("run", "--raw", "--no-stats", "-t", "0", "--seed", "5", "-n", "20", PROMPT)
    assert text == local.stdout.rstrip("\n") and text


def test_models_lists_the_servers_models(remote_server):
    r = run_cli("models", "--backend", "openai", "--base-url", remote_server.url + "/v1", "--api-key", "k3y",
                "--json")
    assert r.returncode == 0, r.stderr
    assert [m["name"] for m in json.loads(r.stdout)] == ["smollm2"]


def test_wrong_api_key_is_a_clear_error(remote_server):
    r = run_cli("run", "--backend", "openai", "--base-url", remote_server.url + "/v1", "--api-key", "nope", "hi")
    assert r.returncode == 1 and "HTTP 401" in r.stderr and "--api-key" in r.stderr
    assert "Traceback" not in r.stderr


# -- a server that misbehaves on purpose ---------------------------------------------------

def chunk(text: str, finish: str | None = None) -> bytes:
    return sse_data({"choices": [{"index": 0, "text": text, "finish_reason": finish}]})


CALLS: dict[str, int] = {}  # requests the misbehaving server got, by mode


def misbehave(path: str, calls: int) -> Scripted:
    """What the misbehaving server does at /MODE/v1/...: hang, fail (once or always), or
    stream something broken."""
    mode = path.split("/")[1]
    CALLS[mode] = calls
    if mode == "hang":
        return Scripted(hang=3)
    if mode == "429once" and calls == 1:
        return Scripted(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
    errors = {"503": (503, "overloaded", {"Retry-After": "0"}), "500": (500, "kaboom", {}),
              "404": (404, "model 'x' not found", {})}
    if mode in errors:
        status, message, headers = errors[mode]
        return Scripted(status=status, body={"error": {"message": message}}, headers=headers)
    return Scripted(delay=0.01, parts={
        "429once": [chunk("fine"), chunk("", "stop"), b"data: [DONE]\n\n"],
        "split": [b": hello\n\n", chunk("Hel")[:9], chunk("Hel")[9:] + chunk("lo"), chunk(" you", "length"),
                  b"data: [DONE]\n\n"],
        "malformed": [chunk("kept"), b"data: {not json\n\n"],
        "nodone": [chunk("partial ")],
    }[mode])


@pytest.fixture(scope="module")
def bad_server():
    yield from scripted_server(misbehave)


def outcome(base: str, **kw):
    eng = RemoteEngine(base, **kw)
    try:
        gen = eng.submit(raw())
        text = gen.text()
        return text, gen.stats
    finally:
        eng.close()


def test_split_chunks_and_comments_are_parsed(bad_server):
    text, st = outcome(bad_server + "/split/v1")
    assert text == "Hello you" and st.finish_reason is FinishReason.LENGTH and st.generated_tokens == 3


def test_429_is_retried_once_after_retry_after(bad_server):
    t0 = time.perf_counter()
    text, st = outcome(bad_server + "/429once/v1")
    assert text == "fine" and st.finish_reason is FinishReason.EOS
    assert time.perf_counter() - t0 >= 1.0 and CALLS["429once"] == 2


@pytest.mark.parametrize("mode, message", [
    ("503", "busy (HTTP 503)"), ("500", "failed (HTTP 500): kaboom"), ("404", "HTTP 404"),
])
def test_http_errors_are_clear(bad_server, mode, message):
    text, st = outcome(bad_server + f"/{mode}/v1")
    assert text == "" and st.finish_reason is FinishReason.ERROR and message in st.error


def test_malformed_chunk_keeps_the_text_so_far(bad_server):
    text, st = outcome(bad_server + "/malformed/v1")
    assert text == "kept" and st.finish_reason is FinishReason.ERROR and "malformed chunk" in st.error


def test_stream_without_done_is_an_error(bad_server):
    text, st = outcome(bad_server + "/nodone/v1")
    assert text == "partial " and st.finish_reason is FinishReason.ERROR and "[DONE]" in st.error


def test_timeout_before_first_byte(bad_server):
    t0 = time.perf_counter()
    text, st = outcome(bad_server + "/hang/v1", first_byte_timeout=0.5)
    assert st.finish_reason is FinishReason.ERROR and "within the time limit" in st.error
    assert time.perf_counter() - t0 < 2.5


def test_connection_refused_and_dns_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    _, st = outcome(f"http://127.0.0.1:{port}/v1")
    assert "connection refused" in st.error
    _, st = outcome("http://no-such-host.invalid/v1")
    assert "DNS" in st.error


def test_cli_errors_are_one_line(bad_server):
    r = run_cli("run", "--backend", "openai", "--base-url", bad_server + "/500/v1", "hi")
    assert r.returncode == 1 and "kaboom" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("run", "--backend", "openai", "hi")
    assert r.returncode == 1 and "needs --base-url" in r.stderr
    r = run_cli("run", "--backend", "nope", "hi")
    assert r.returncode == 1 and "'local' or 'openai'" in r.stderr


def test_backend_can_be_switched_from_the_tui(home, remote_server):
    from mullama_tui.config import Settings
    from mullama_tui.engine.remote import RemoteEngine as Remote
    from mullama_tui.tui.app import MullamaApp

    configure(max_tokens=8, api_key="k3y")
    app = MullamaApp()

    async def go():
        async with app.run_test(size=(100, 50)) as pilot:
            await until(pilot, lambda: app.state == "ready", 20, "the local model")
            await pilot.press("f2")
            screen = app.screen
            screen.query_one("#backend").value = "openai"
            screen.query_one("#base_url").value = remote_server.url + "/v1"
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.engine, Remote) and app.state == "ready", 20, "the switch")
            await send(pilot, app, "Hi")
            await until(pilot, lambda: app.chat.last_stats is not None, 30, "a remote reply")
            assert app.chat.reply_text

    import asyncio
    asyncio.run(go())
    assert Settings.load().backend == "openai"
