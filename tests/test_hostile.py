"""Hostile and careless clients against `serve`'s app on loopback (the real bundled model):
abandoned requests, stalled readers, text that is not text, deep or huge JSON, chunked
floods, cross-site callers, OpenAI fields we honour or refuse, and shutdown. Each of
these failed before the server learned it (see the issue on hostile input)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import websockets

from helpers import LONG_PROMPT, Server, wait_idle, wait_until

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def two(model_path):
    """A server with 2 slots and no queue: one stuck slot shows at once."""
    from mullama_tui.engine.local import LocalEngine

    with LocalEngine(model_path, n_ctx=2048, n_parallel=2, max_queue=0) as e:
        yield e


def test_abandoned_non_streaming_requests_stop_generating(two):
    with Server.of(two) as server:
        def give_up() -> None:
            with pytest.raises(httpx.TimeoutException):
                httpx.post(server.url + "/v1/completions", timeout=0.5,
                           json={"prompt": LONG_PROMPT, "max_tokens": 1500, "ignore_eos": True})

        threads = [threading.Thread(target=give_up) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # 1500 tokens take ~20 s here; the slots are free within a second or so of the hang-up
        assert wait_idle(server, timeout=5)["active"] == 0
        r = httpx.post(server.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 3}, timeout=30)
        assert r.status_code == 200


def test_a_reader_that_stops_reading_loses_its_slot_after_the_stall_timeout(two, caplog):
    with Server.of(two, small_buffers=True, stall_timeout=1.0) as server:
        socks = []
        body = json.dumps({"prompt": LONG_PROMPT, "max_tokens": 1900, "ignore_eos": True}).encode()
        for _ in range(2):  # both slots, read one byte each, then nothing
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            sock.connect(("127.0.0.1", server.port))
            sock.sendall(b"POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            sock.recv(1)
            socks.append(sock)
        try:
            with caplog.at_level(logging.WARNING, logger="mullama_tui.scheduler"):
                wait_until(lambda: two.scheduler.stalled >= 2, 30, "both stalled readers to be cut off", 0.05)
            assert wait_idle(server, timeout=5)["active"] == 0  # nobody is locked out
            assert any("read nothing" in r.getMessage() for r in caplog.records)
            r = httpx.post(server.url + "/stream", json={"prompt": "Hi", "max_tokens": 3}, timeout=30)
            assert r.status_code == 200
        finally:
            for s in socks:
                s.close()


@pytest.mark.parametrize("path, body", [
    ("/stream", b'{"prompt": "Hi \\ud800"}'),
    ("/v1/completions", b'{"prompt": "Hi \\ud800", "max_tokens": 3}'),
    ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "Hi \\udfff there"}]}'),
])
def test_a_lone_surrogate_is_a_400_that_says_so(server, path, body):
    r = httpx.post(server.url + path, content=body, headers=JSON)
    assert r.status_code == 400, r.text
    assert "surrogate" in r.json()["error"]["message"]


def test_websocket_bad_text_and_deep_json_get_errors_and_the_connection_lives(server):
    async def talk() -> None:
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as ws:
            for frame, expect in [('{"prompt": "Hi \\ud800"}', "surrogate"),
                                  ('{"prompt": ' + "[" * 3000 + "]" * 3000 + "}", "nested"),
                                  ("[" * 100_000, "nested")]:
                await ws.send(frame)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["type"] == "error" and expect in reply["message"], reply
            await ws.send(json.dumps({"prompt": "Hi", "max_tokens": 2}))  # still open, still serving
            while json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] != "done":
                pass

    asyncio.run(talk())


@pytest.mark.parametrize("body", [b"[" * 5000, b'{"prompt": "x", "stop": ' + b"[" * 3000 + b"]" * 3000 + b"}",
                                  b'{"prompt": "x", "logprobs": ' + b'{"a":' * 40 + b"1" + b"}" * 40 + b"}"])
def test_deeply_nested_json_is_a_400(server, body):
    r = httpx.post(server.url + "/stream", content=body, headers=JSON)
    assert r.status_code == 400 and "nested" in r.json()["error"]["message"], r.text


def test_too_many_messages_are_refused_before_any_work(server, srv_engine):
    msgs = [{"role": "user", "content": "hi"}] * 29_000
    t0 = time.perf_counter()
    r = httpx.post(server.url + "/v1/chat/completions", json={"messages": msgs}, timeout=60)
    assert r.status_code == 400 and "at most 1024" in r.json()["error"]["message"]
    # and text that could never fit is refused before the template and tokenizer see it
    r = httpx.post(server.url + "/v1/chat/completions", timeout=60,
                   json={"messages": [{"role": "user", "content": "x" * 800}] * 1000})
    assert r.status_code == 400 and "cannot fit" in r.json()["error"]["message"]
    assert time.perf_counter() - t0 < 5


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def test_a_chunked_flood_is_cut_at_the_limit_not_read_whole(srv_engine):
    """200 MB in chunks (no Content-Length to refuse early): a 413 once the limit is
    passed, and the server (in this process) does not grow by what was sent."""
    def flood():
        yield b'{"prompt": "'
        for _ in range(20_000):
            yield b"x" * 10_000

    with Server.of(srv_engine, max_body=1_000_000) as s:
        before = _rss_mb()
        try:
            r = httpx.post(s.url + "/stream", content=flood(), headers=JSON, timeout=30)
            assert r.status_code == 413 and "body over" in r.json()["error"]["message"]
        except httpx.HTTPError:  # the server answered and closed while the client was still sending
            pass
        assert _rss_mb() - before < 50, (before, _rss_mb())
        assert httpx.get(s.url + "/health").status_code == 200


def test_cross_site_requests_are_refused_and_the_servers_own_page_is_not(server, srv_engine, monkeypatch):
    url = server.url
    body = {"prompt": "Hi", "max_tokens": 2}
    # a browser's "simple request": text/plain needs no preflight
    r = httpx.post(url + "/stream", content=json.dumps(body), headers={"Content-Type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]
    # DNS rebinding: another name pointed at 127.0.0.1
    r = httpx.post(url + "/stream", json=body, headers={"Host": f"evil.example:{server.port}"})
    assert r.status_code == 403 and "Host" in r.json()["error"]["message"]
    # a page of another site
    r = httpx.post(url + "/stream", json=body, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and "--cors-origin" in r.json()["error"]["message"]
    # the server's own page (same origin), and localhost names
    assert httpx.post(url + "/stream", json=body, headers={"Origin": url}).status_code == 200
    assert httpx.get(f"http://localhost:{server.port}/health").status_code == 200

    async def ws_from(origin: str) -> None:
        async with websockets.connect(url.replace("http", "ws") + "/ws", origin=origin) as c:  # type: ignore[arg-type]
            await c.send(json.dumps(body))
            await c.recv()

    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        asyncio.run(ws_from("http://evil.example"))
    assert refused.value.response.status_code == 403
    asyncio.run(ws_from(url))
    # a configured origin, from the option and from the environment; its errors carry CORS headers
    monkeypatch.setenv("MULLAMA_TUI_ORIGINS", "http://env.example, http://two.example")
    with Server.of(srv_engine, cors_origins=["http://app.example"], api_key="k") as s:
        for origin in ("http://app.example", "http://env.example", "http://two.example"):
            r = httpx.post(s.url + "/stream", json=body, headers={"Origin": origin, "Authorization": "Bearer k"})
            assert r.status_code == 200 and r.headers["access-control-allow-origin"] == origin
        r = httpx.post(s.url + "/stream", json=body, headers={"Origin": "http://app.example"})
        assert r.status_code == 401 and r.headers["access-control-allow-origin"] == "http://app.example"
        assert httpx.post(s.url + "/stream", json=body, headers={"Origin": "http://evil.example",
                                                                 "Authorization": "Bearer k"}).status_code == 403


def test_openai_content_parts_json_output_logit_bias_and_refused_fields(server, srv_engine):
    chat = server.url + "/v1/chat/completions"
    parts = [{"type": "text", "text": "Say hello"}, {"type": "text", "text": " to Ada."}]
    r = httpx.post(chat, json={"messages": [{"role": "user", "content": parts}], "max_tokens": 4}, timeout=60)
    assert r.status_code == 200, r.text
    image = [{"type": "text", "text": "What is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]
    r = httpx.post(chat, json={"messages": [{"role": "user", "content": image}]})
    assert r.status_code == 400 and "only text" in r.json()["error"]["message"]

    schema = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
              "required": ["name", "age"]}
    for fmt in ({"type": "json_object"},
                {"type": "json_schema", "json_schema": {"name": "person", "schema": schema}}):
        r = httpx.post(chat, timeout=120, json={
            "messages": [{"role": "user", "content": "A person as JSON, please."}], "max_tokens": 80,
            "temperature": 0, "response_format": fmt})
        assert r.status_code == 200, r.text
        choice = r.json()["choices"][0]
        content = choice["message"]["content"]
        assert content.lstrip().startswith("{"), content
        if fmt["type"] == "json_schema":  # two fields: the grammar ends it well within the limit
            assert choice["finish_reason"] == "stop", choice
            value = json.loads(content)
            assert isinstance(value["name"], str) and isinstance(value["age"], int)
        elif choice["finish_reason"] == "stop":  # any object: it may go on past the limit
            assert isinstance(json.loads(content), dict)

    prompt = {"prompt": "The capital of France is", "max_tokens": 3, "temperature": 0}
    plain = httpx.post(server.url + "/v1/completions", json=prompt, timeout=60).json()["choices"][0]["text"]
    first = srv_engine.model.tokenize(plain, add_special=False)[0]
    banned = httpx.post(server.url + "/v1/completions", timeout=60,
                        json={**prompt, "logit_bias": {str(first): -100}}).json()["choices"][0]["text"]
    assert srv_engine.model.tokenize(banned, add_special=False)[0] != first

    for field, value in [("tools", [{"type": "function", "function": {"name": "f"}}]), ("echo", True),
                         ("best_of", 2), ("suffix", "end")]:
        r = httpx.post(server.url + "/v1/completions", json={"prompt": "x", field: value})
        assert r.status_code == 400 and field in r.json()["error"]["message"], (field, r.text)
    for harmless in ({"tools": []}, {"echo": False}, {"best_of": 1}, {"suffix": ""}):
        assert httpx.post(server.url + "/v1/completions", timeout=60,
                          json={"prompt": "x", "max_tokens": 1, **harmless}).status_code == 200
    r = httpx.post(chat, content=b'{"messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
                   headers=JSON)
    assert r.status_code == 400 and "finite number" in r.json()["error"]["message"]


def test_serve_refuses_a_port_out_of_range_in_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "mullama_tui.cli", "serve", "--port", "99999"],
                       capture_output=True, text=True, timeout=60,
                       env={**os.environ, "MULLAMA_TUI_HOME": str(tmp_path)})
    assert r.returncode == 2 and "99999" in r.stderr and "Traceback" not in r.stderr


def test_ctrl_c_with_running_requests_exits_within_a_second_quietly(tmp_path):
    from mullama_tui.bench.server import ServeProcess
    from mullama_tui.models.resolve import bundled_model

    err = tmp_path / "stderr.txt"
    with err.open("w") as f:
        serve = ServeProcess(bundled_model(), "--max-concurrency", "2", home=tmp_path, stderr=f)
        try:
            started = threading.Event()

            def stream() -> None:
                try:
                    with httpx.stream("POST", serve.url + "/stream", timeout=30,
                                      json={"prompt": LONG_PROMPT, "max_tokens": 1500, "ignore_eos": True}) as r:
                        for _ in r.iter_lines():
                            started.set()
                except httpx.HTTPError:
                    pass

            clients = [threading.Thread(target=stream) for _ in range(2)]
            for c in clients:
                c.start()
            assert started.wait(30)
            t0 = time.monotonic()
            serve.proc.send_signal(signal.SIGINT)
            assert serve.proc.wait(10) == 0
            took = time.monotonic() - t0
            for c in clients:
                c.join(10)
        finally:
            serve.stop()
    text = err.read_text()
    assert took < 1.5, (took, text)
    assert "Traceback" not in text and "stopped" in text
