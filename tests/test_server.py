"""`mullama-tui serve` against a real uvicorn on loopback, with the real bundled model."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import httpx
import pytest
import websockets
from openai import OpenAI

from mullama_tui.server.app import MAX_BODY

from helpers import LONG_PROMPT as LONG
from helpers import Server, opening_gap, require_batch_invariance, wait_idle, wait_until


@pytest.fixture(scope="module")
def tight(srv_engine):
    with Server.of(srv_engine, small_buffers=True) as s:
        yield s


@pytest.fixture(scope="module")
def secure(srv_engine):
    with Server.of(srv_engine, api_key="s3cret") as s:
        yield s


def sse_events(response: httpx.Response) -> list[dict]:
    out = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[6:]
            out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


def stream_text(server: Server, body: dict) -> tuple[str, dict]:
    with httpx.stream("POST", server.url + "/stream", json=body, timeout=60) as r:
        events = sse_events(r)
    return "".join(e["token"] for e in events), events[-1]


def test_sse_format_and_headers(server):
    with httpx.stream("POST", server.url + "/stream", timeout=60,
                      json={"prompt": "The sea is", "max_tokens": 12, "seed": 3, "ignore_eos": True}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.headers["cache-control"] == "no-cache" and r.headers["x-accel-buffering"] == "no"
        events = sse_events(r)
    tokens, done = events[:-1], events[-1]
    assert tokens and all(e["done"] is False and e["token"] for e in tokens)
    assert [e["index"] for e in tokens] == list(range(len(tokens)))
    assert done["done"] is True and done["token"] == "" and done["index"] == len(tokens)
    assert done["finish_reason"] in ("length", "eos") and done["stats"]["generated_tokens"] >= len(tokens)


def test_chat_messages_body(server):
    text, done = stream_text(server, {"messages": [{"role": "user", "content": "Say hello"}],
                                      "max_tokens": 20, "temperature": 0})
    assert text.strip() and done["finish_reason"] in ("eos", "length")


def test_websocket_tokens_done_cancel_errors_and_several_prompts(server):
    async def main():
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            await ws.send(json.dumps({"prompt": "Once upon a time", "max_tokens": 10, "seed": 1, "ignore_eos": True}))
            msgs = []
            while True:
                m = json.loads(await ws.recv())
                msgs.append(m)
                if m["type"] == "done":
                    break
            assert all(m["type"] == "token" and m["content"] for m in msgs[:-1]) and len(msgs) > 1
            assert msgs[-1]["finish_reason"] in ("length", "eos") and msgs[-1]["stats"]
            # bad messages get an error and the connection stays usable
            await ws.send("{not json")
            assert json.loads(await ws.recv())["type"] == "error"
            await ws.send(json.dumps({"prompt": "x", "max_tokens": -1}))
            err = json.loads(await ws.recv())
            assert err["type"] == "error" and "max_tokens" in err["message"]
            # a second prompt, cancelled mid-stream
            await ws.send(json.dumps({"prompt": "Write a long story", "max_tokens": 1500, "seed": 2,
                                      "ignore_eos": True}))
            tokens = 0
            while tokens < 5:
                m = json.loads(await ws.recv())
                tokens += m["type"] == "token"
            await ws.send(json.dumps({"type": "cancel"}))
            while True:
                m = json.loads(await ws.recv())
                if m["type"] == "done":
                    break
            assert m["finish_reason"] == "cancelled" and m["stats"]["generated_tokens"] < 1500
            # and a third one works normally
            await ws.send(json.dumps({"prompt": "Hello", "max_tokens": 4, "seed": 1}))
            while json.loads(await ws.recv())["type"] != "done":
                pass

    asyncio.run(main())
    wait_idle(server)


@pytest.mark.parametrize("stream", [False, True])
def test_openai_client_completions_and_chat(server, stream):
    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    assert [m.id for m in client.models.list().data] == ["smollm2"]
    if stream:
        chunks = list(client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Hi"}], max_tokens=12, seed=1,
            stream=True, stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text and chunks[-1].usage.completion_tokens > 0
        assert any(c.choices and c.choices[0].finish_reason for c in chunks)
        comp = list(client.completions.create(model="smollm2", prompt="The sky is", max_tokens=8,
                                              seed=1, stream=True, extra_body={"ignore_eos": True}))
        assert "".join(c.choices[0].text for c in comp)
        assert comp[-1].choices[0].finish_reason in ("stop", "length")
    else:
        chat = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Hi"}],
                                              max_tokens=12, seed=1, temperature=0)
        assert chat.choices[0].message.content and chat.usage.completion_tokens > 0
        comp = client.completions.create(model="smollm2", prompt="The sky is", max_tokens=8, seed=1,
                                         stop=["\n"], temperature=0)  # greedy: not a newline first on any CPU
        assert comp.choices[0].text and "\n" not in comp.choices[0].text
        assert comp.choices[0].finish_reason in ("stop", "length")


def test_openai_stream_is_same_text_as_sse_for_same_seed(server):
    raw = httpx.post(server.url + "/v1/completions", timeout=60, json={
        "prompt": "The sky is", "max_tokens": 16, "seed": 5, "temperature": 0.8, "stream": True})
    events = [json.loads(line[6:]) for line in raw.text.splitlines()
              if line.startswith("data: ") and line != "data: [DONE]"]
    assert raw.text.rstrip().endswith("data: [DONE]")
    openai_text = "".join(e["choices"][0]["text"] for e in events)
    sse_text, _ = stream_text(server, {"prompt": "The sky is", "max_tokens": 16, "seed": 5,
                                       "temperature": 0.8})
    assert openai_text == sse_text


def test_client_disconnect_cancels_generation(server):
    with httpx.stream("POST", server.url + "/stream", timeout=60,
                      json={"prompt": "Write a long story", "max_tokens": 1800, "seed": 3,
                            "ignore_eos": True}) as r:
        lines = r.iter_lines()
        got = 0
        for line in lines:
            got += line.startswith("data: ")
            if got >= 5:
                break
        assert httpx.get(server.url + "/health").json()["active"] == 1
    wait_idle(server, 5)


def concurrent_streams(server: Server, bodies: list[dict]) -> list[tuple[str, list[dict]]]:
    results: dict[int, tuple[str, list[dict]]] = {}

    def one(i: int, body: dict) -> None:
        with httpx.stream("POST", server.url + "/stream", json=body, timeout=60) as r:
            events = sse_events(r)
        results[i] = ("".join(e["token"] for e in events), events)

    threads = [threading.Thread(target=one, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return [results[i] for i in range(len(bodies))]


def test_concurrent_clients_each_get_a_complete_stream_of_their_own(server, srv_engine):
    """What holds on any hardware: every client finishes with a well-formed stream of
    exactly its tokens, the clients shared decode steps, and each stream is its own
    (greedy: every token is the best one for that client's prompt alone)."""
    prompts = ["A robot who paints", "The capital of France is", "Ingredients for a cake:"]
    bodies = [{"prompt": p, "max_tokens": 30, "temperature": 0, "repeat_penalty": 1.0, "ignore_eos": True}
              for p in prompts]
    before = srv_engine.scheduler.decode_calls
    streams = concurrent_streams(server, bodies)
    steps = srv_engine.scheduler.decode_calls - before
    for text, events in streams:
        final = events[-1]
        assert final["done"] and final["finish_reason"] == "length"
        assert final["stats"]["generated_tokens"] == 30 and text
        assert [e["index"] for e in events] == list(range(len(events)))
    assert steps < 3 * 31  # they overlapped: one after another takes 3 x 31 decodes
    assert wait_idle(server)["active"] == 0
    # each stream is its own: its tokens are the best ones for its own prompt, not another's
    model = srv_engine.model
    own = [opening_gap(model, model.prompt_tokens(p, chat=False), text) for (text, _), p in zip(streams, prompts)]
    assert max(own) < 0.5, own
    assert opening_gap(model, model.prompt_tokens(prompts[1], chat=False), streams[0][0]) > 0.5


def test_concurrent_clients_get_the_same_text_as_single_runs(server, batch_drift):
    require_batch_invariance(batch_drift)
    seeds = [11, 12, 13]
    bodies = [{"prompt": "A robot who paints", "max_tokens": 30, "seed": s, "temperature": 0.9} for s in seeds]
    singles = [stream_text(server, b)[0] for b in bodies]
    assert [text for text, _ in concurrent_streams(server, bodies)] == singles and len(set(singles)) == 3


def test_slow_reader_pauses_only_itself(tight, srv_engine):
    server = tight
    # A client with a tiny receive window that never reads.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect(("127.0.0.1", server.port))
    body = json.dumps({"messages": [{"role": "user", "content": LONG}], "max_tokens": 1900,
                       "seed": 5}).encode()
    sock.sendall(b"POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    try:
        wait_until(lambda: httpx.get(server.url + "/health").json()["active"] > 0, 10, "the slow request to start")
        text, done = stream_text(server, {"prompt": "Hello", "max_tokens": 100, "seed": 2,
                                          "temperature": 0.9, "ignore_eos": True})
        fast_tps = done["stats"]["gen_tps"]
        assert done["stats"]["generated_tokens"] == 100
        slow = next((s.run for s in srv_engine.scheduler.slots if s.run is not None), None)
        assert slow is not None, "the slow reader's generation ended before it could be held back"

        def paused() -> bool:
            """Held back: its event channel is full (so the scheduler skips it) and it
            made no progress meanwhile (a merely slow, CPU-starved one would)."""
            before = slow.n_gen
            time.sleep(0.3)
            return slow.gen.buffered >= slow.gen.capacity and slow.n_gen == before

        # a bound for a very loaded machine; usually ~2 s
        wait_until(paused, 90, "the slow reader's generation to pause", 0)
        paused_at = slow.n_gen
        assert slow.n_gen < 1900  # stopped by backpressure, not by finishing
        assert slow.gen.buffered <= slow.gen.capacity  # server-side memory is bounded
        # and once it is held back, it costs the others nothing: a second fast run, side by
        # side with the paused one, goes about as fast as the first
        _, again = stream_text(server, {"prompt": "Hello", "max_tokens": 100, "seed": 2,
                                        "temperature": 0.9, "ignore_eos": True})
        assert again["stats"]["generated_tokens"] == 100
        assert slow.n_gen == paused_at, "the held-back generation moved while nobody read it"
        assert again["stats"]["gen_tps"] > 0.5 * fast_tps
    finally:
        sock.close()
    wait_idle(server, 10)


def test_queue_full_gives_503_with_retry_after(server):
    streams = []
    client = httpx.Client(timeout=30)
    try:
        for i in range(6):  # 4 decoding + 2 queued
            r = client.send(client.build_request("POST", server.url + "/stream",
                                                 json={"prompt": f"Story {i}", "max_tokens": 1900,
                                                       "ignore_eos": True}),
                            stream=True)
            assert r.status_code == 200
            streams.append(r)
        r = client.post(server.url + "/stream", json={"prompt": "one too many", "max_tokens": 5})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "busy" in r.json()["error"]["message"]
    finally:
        for r in streams:
            r.close()
        client.close()
    wait_idle(server, 15)


def test_an_api_key_guards_every_route_but_health(secure):
    assert httpx.get(secure.url + "/health").status_code == 200
    assert httpx.get(secure.url + "/v1/models").status_code == 401
    bad = httpx.get(secure.url + "/v1/models", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "API key" in bad.json()["error"]["message"]
    ok = httpx.get(secure.url + "/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert httpx.post(secure.url + "/stream", json={"prompt": "x"}).status_code == 401
    assert httpx.get(secure.url + "/").status_code == 401

    async def ws():
        base = secure.url.replace("http", "ws") + "/ws"
        with pytest.raises(websockets.exceptions.InvalidStatus):
            async with websockets.connect(base) as c:
                await c.recv()
        async with websockets.connect(base + "?token=s3cret") as c:
            await c.send(json.dumps({"prompt": "Hi", "max_tokens": 3}))
            while json.loads(await c.recv())["type"] != "done":
                pass

    asyncio.run(ws())


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "invalid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"prompt": 5}', 400, "prompt"),
    (b'{"max_tokens": 10}', 400, "prompt or messages"),
    (b'{"prompt": "x", "tempreature": 1}', 400, "tempreature"),
    (b'{"prompt": "x", "max_tokens": 0}', 400, "max_tokens"),
    (b'{"prompt": "x", "max_tokens": 999999}', 400, "beyond the context"),
    (b'{"prompt": "x", "temperature": -1}', 400, "temperature"),
    (b'{"prompt": "x", "top_p": 0}', 400, "top_p"),
    (b'{"prompt": "' + b"word " * 3000 + b'"}', 400, "context holds 2048"),
    (b'{"prompt": "' + b"x" * (MAX_BODY + 1) + b'"}', 413, "body over"),
])
def test_bad_input_is_a_4xx_json(server, body, status, message):
    r = httpx.post(server.url + "/stream", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]


def test_openai_bad_input(server):
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": []})
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = httpx.post(server.url + "/v1/completions", json={"prompt": "x", "n": 3})
    assert r.status_code == 400 and "n" in r.json()["error"]["message"]


def test_web_page_is_served(server):
    r = httpx.get(server.url + "/")
    assert r.status_code == 200 and "getReader" in r.text and "AbortController" in r.text


def test_cors_is_off_by_default_and_on_when_asked(server, srv_engine):
    pre = {"Origin": "http://example.test", "Access-Control-Request-Method": "POST"}
    r = httpx.options(server.url + "/stream", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    with Server.of(srv_engine, cors_origins=["http://example.test"]) as s:
        r = httpx.options(s.url + "/stream", headers=pre)
        assert r.headers["access-control-allow-origin"] == "http://example.test"


def test_serve_command_prints_url_and_ctrl_c_stops_cleanly_mid_stream(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "mullama_tui.cli", "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "MULLAMA_TUI_HOME": str(tmp_path)})
    try:
        line = proc.stderr.readline()
        assert f"http://127.0.0.1:{port}" in line and "Smollm2" in line
        url = f"http://127.0.0.1:{port}"
        def healthy() -> bool:
            try:
                return httpx.get(url + "/health").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, 30, "the server to answer", 0.05)
        with httpx.stream("POST", url + "/stream", timeout=30,
                          json={"messages": [{"role": "user", "content": LONG}], "max_tokens": 1500}) as r:
            lines = r.iter_lines()
            for _ in range(6):
                next(lines)
            proc.send_signal(signal.SIGINT)
            try:
                for _ in lines:  # the stream ends (cancelled), it does not hang
                    pass
            except httpx.HTTPError:
                pass
        assert proc.wait(15) == 0
        assert "stopped" in proc.stderr.read() and "Traceback" not in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
