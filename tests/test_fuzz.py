"""Bad input, generated: the HTTP API fuzzed from its own OpenAPI schema (schemathesis, on
the real bundled model), plus hand-written cases a schema cannot express. Pass means no
5xx but a 503 for a full queue, no hang, no traceback, and /health back to idle."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading

import httpx
import pytest
import schemathesis
import websockets
from hypothesis import HealthCheck, given, settings

from mullama_tui.engine.local import LocalEngine
from mullama_tui.server.app import create_app

from helpers import Server, wait_idle

CASES_PER_OPERATION = 70
fuzzed: list[tuple[str, int]] = []  # (operation, status) of every generated case


class Tracebacks(logging.Handler):
    """Every log record that carries an exception (uvicorn's "Exception in ASGI application")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(autouse=True)
def no_tracebacks():
    handler = Tracebacks()
    loggers = [logging.getLogger(), logging.getLogger("uvicorn")]  # uvicorn's do not propagate to the root
    for log in loggers:
        log.addHandler(handler)
    yield
    for log in loggers:
        log.removeHandler(handler)
    assert not handler.records, [r.getMessage() for r in handler.records]


@pytest.fixture(scope="module")
def fuzz_engine(model_path):
    """A small context (32 tokens per sequence) so generated requests stay short: any
    max_tokens the fuzzer picks is either refused (>= 32) or over in well under a second."""
    e = LocalEngine(model_path, n_ctx=32, n_parallel=2, max_queue=2)
    yield e
    e.close()


@pytest.fixture(scope="module")
def fuzz_app(fuzz_engine):
    # schemathesis calls the app in-process with Host "testserver": bound to all addresses,
    # the server takes any Host name (the loopback-only Host check is tested in test_hostile.py)
    return create_app(fuzz_engine, "smollm2", max_body=100_000, host="0.0.0.0")


def test_the_http_api_survives_generated_input(fuzz_app, fuzz_engine):
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {
        "POST /stream", "POST /v1/completions", "POST /v1/chat/completions", "GET /health", "GET /v1/models"}
    def fuzz(op) -> None:
        """Generated requests to one operation (a function per operation: hypothesis
        allows no defaults on a @given test, and a loop's closure would see the last op)."""
        label = f"{op.method.upper()} {op.path}"

        @settings(max_examples=CASES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def one(case) -> None:
            response = case.call(timeout=30)
            fuzzed.append((label, response.status_code))
            assert response.status_code < 500 or response.status_code == 503, (label, response.text[:300])
            if response.status_code >= 400:
                assert "message" in response.json()["error"]  # a JSON body that says why

        one()

    for op in operations:
        fuzz(op)
    assert fuzz_engine.scheduler.active == 0 and fuzz_engine.scheduler.queued == 0
    statuses = {s for _, s in fuzzed}
    assert 200 in statuses and 400 in statuses  # it reached both the engine and the checks
    print(f"\nfuzzed {len(fuzzed)} generated requests over {len(operations)} operations: "
          f"{sorted((s, sum(1 for _, x in fuzzed if x == s)) for s in statuses)}")


# -- what a schema cannot express -----------------------------------------------------------

@pytest.fixture(scope="module")
def live(fuzz_app):
    with Server(fuzz_app) as s:
        yield s


@pytest.mark.parametrize("path", ["/stream", "/v1/completions", "/v1/chat/completions"])
@pytest.mark.parametrize("body", [b"\xff\xfe{\"prompt\": \"x\"}", b'{"prompt": "\xc3\x28"}', b"\x00" * 10,
                                  b'{"prompt": "x", "max_tokens": 1e400}', b'{"prompt": {"$ref": 1}}',
                                  b"", b"null", b'"just a string"'])
def test_undecodable_or_odd_bodies_are_a_4xx(live, path, body):
    r = httpx.post(live.url + path, content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["message"]


def test_a_body_over_the_limit_without_content_length_is_refused(live):
    def chunks():
        yield b'{"prompt": "'
        for _ in range(30):
            yield b"x" * 10_000
        yield b'"}'

    r = httpx.post(live.url + "/stream", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "body over" in r.json()["error"]["message"]


def test_a_client_that_hangs_up_mid_request_leaves_nothing_behind(live):
    """Half a body, then the socket closes: no generation starts, the server keeps serving."""
    host, port = "127.0.0.1", live.port
    for _ in range(5):
        with socket.create_connection((host, port)) as sock:
            sock.sendall(b"POST /stream HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 500\r\n\r\n{\"prompt\": \"half a bo")
    assert wait_idle(live)["active"] == 0
    assert httpx.post(live.url + "/stream", json={"prompt": "ok", "max_tokens": 2}).status_code == 200


def test_websocket_frames_of_every_wrong_kind_get_an_error_and_the_connection_lives(live):
    async def talk():
        async with websockets.connect(live.url.replace("http", "ws") + "/ws") as ws:
            for frame in ["not json", "[1, 2]", "42", '"s"', "null", '{"prompt": 5}', '{"prompt": "x", "top_p": 9}',
                          '{"type": "cancel"}', '{"max_tokens": 3}', '{"prompt": "x", "max_tokens": 99999}',
                          '{"prompt": "x", "nope": 1}', "{" * 5000]:
                await ws.send(frame)
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert reply["type"] == "error" and reply["message"], (frame, reply)
            await ws.send(b"\x00\xff binary")  # a binary frame: refused, still an answer
            reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert reply["type"] == "error"
            await ws.send(json.dumps({"prompt": "Hi", "max_tokens": 3}))  # and it still works
            kinds = []
            while not kinds or kinds[-1] != "done":
                kinds.append(json.loads(await asyncio.wait_for(ws.recv(), 20))["type"])
            assert kinds[-1] == "done"

    asyncio.run(talk())
    assert wait_idle(live)["active"] == 0


def test_many_clients_that_vanish_mid_stream_all_get_cancelled(live, fuzz_engine):
    def one():
        with httpx.stream("POST", live.url + "/stream", json={"prompt": "Tell a long story", "max_tokens": 60,
                                                              "ignore_eos": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    break  # leave after the first token

    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert wait_idle(live, 15) == {**wait_idle(live, 15)}
    assert fuzz_engine.scheduler.active == 0 and fuzz_engine.scheduler.queued == 0
