"""`mullama-tui bench --soak [--seconds N]`: a real `serve` under a crowd of clients that
behave like real ones, for a bounded time: normal SSE and OpenAI streams, OpenAI without
streaming, WebSocket with a cancel, a disconnect mid-stream, a slow reader, bad requests.

It prints requests completed, disconnects survived, errors by kind, the server's RSS at
the start and the end, and whether every completed stream with a fixed seed equals that
request's text when it ran alone (where this machine decodes batches bit-identically: see
`llama.batch_invariance`; elsewhere differences are counted, not called errors). Targets:
0 unexpected errors, RSS growth under 50 MB over 60 s, /health at 0 active afterwards.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import time
from pathlib import Path
from typing import Any

import httpx

from .common import Progress, ok, private_home, quiet
from .server import ServeProcess

PROMPTS = ["Write about the sea.", "List three fruits.", "Explain rain to a child.", "Describe a quiet town."]
BEHAVIOURS = ["sse", "openai-stream", "openai", "ws-cancel", "disconnect", "slow-reader", "bad-request",
              "abandoned", "stalled"]
N_TOKENS = 24
STALL_TIMEOUT = 2.0  # the soak's --stall-timeout: stalled readers are let go quickly


def _fixed(i: int) -> dict[str, Any]:
    """One of the soak's fixed-seed requests (its text is known from a run alone)."""
    return {"prompt": PROMPTS[i % len(PROMPTS)], "seed": 1000 + i, "temperature": 0.9, "max_tokens": N_TOKENS,
            "ignore_eos": True}


async def _sse_text(client: httpx.AsyncClient, url: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    text, final = [], {}
    async with client.stream("POST", url + "/stream", json=body) as r:
        if r.status_code != 200:
            raise _Unexpected(f"/stream {r.status_code}")
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                if ev["done"]:
                    final = ev
                else:
                    text.append(ev["token"])
    if not final:
        raise _Unexpected("/stream ended without a done event")
    return "".join(text), final


class _Unexpected(Exception):
    """A response no correct server gives (its message names the kind)."""


class _Soak:
    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.completed: collections.Counter[str] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()
        self.disconnects = 0
        self.busy = 0  # 503s for a full queue: expected under load, not an error
        self.texts: list[tuple[int, str]] = []  # (fixed request index, text) of completed SSE streams
        self.abandoned = 0  # non-streaming requests whose client gave up waiting
        self.stalled: list[Any] = []  # open sockets of readers that stopped reading (closed at the end)

    def _go_on(self, deadline: float, min_requests: int, hard_deadline: float) -> bool:
        """Until the deadline, and past it (up to a hard limit) until `min_requests` are
        done: a loaded machine then takes longer instead of checking too few requests."""
        now = time.monotonic()
        done = sum(self.completed.values()) + sum(self.errors.values())
        return now < deadline or (done < min_requests and now < hard_deadline)

    async def client(self, deadline: float, min_requests: int = 0, hard_deadline: float = 0.0) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            while self._go_on(deadline, min_requests, hard_deadline):
                kind = self.rng.choice(BEHAVIOURS)
                try:
                    await getattr(self, "_" + kind.replace("-", "_"))(client)
                    self.completed[kind] += 1
                except _Unexpected as e:
                    self.errors[str(e)] += 1
                except (httpx.HTTPError, OSError, asyncio.TimeoutError) as e:
                    self.errors[f"{kind}: {type(e).__name__}"] += 1

    async def _sse(self, client: httpx.AsyncClient) -> None:
        i = self.rng.randrange(len(PROMPTS) * 2)
        try:
            text, final = await _sse_text(client, self.url, _fixed(i))
        except _Unexpected as e:
            if "503" in str(e):
                self.busy += 1
                return
            raise
        if final.get("finish_reason") != "length":
            raise _Unexpected(f"/stream finished with {final.get('finish_reason')}")
        self.texts.append((i, text))

    async def _openai_stream(self, client: httpx.AsyncClient) -> None:
        body = {"messages": [{"role": "user", "content": self.rng.choice(PROMPTS)}], "max_tokens": N_TOKENS,
                "stream": True, "stream_options": {"include_usage": True}, "seed": self.rng.randrange(1, 9999)}
        done = usage = False
        async with client.stream("POST", self.url + "/v1/chat/completions", json=body) as r:
            if r.status_code == 503:
                self.busy += 1
                return
            if r.status_code != 200:
                raise _Unexpected(f"/v1/chat/completions {r.status_code}")
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    usage = usage or bool(json.loads(line[6:]).get("usage"))
        if not (done and usage):
            raise _Unexpected("an OpenAI stream without [DONE] or usage")

    async def _openai(self, client: httpx.AsyncClient) -> None:
        r = await client.post(self.url + "/v1/completions", json={"prompt": self.rng.choice(PROMPTS),
                                                                 "max_tokens": 8, "seed": 3})
        if r.status_code == 503:
            self.busy += 1
            return
        if r.status_code != 200 or "choices" not in r.json():
            raise _Unexpected(f"/v1/completions {r.status_code}")

    async def _ws_cancel(self, client: httpx.AsyncClient) -> None:
        import websockets

        async with websockets.connect(self.url.replace("http", "ws") + "/ws") as ws:
            await ws.send(json.dumps({"prompt": self.rng.choice(PROMPTS), "max_tokens": 200}))
            tokens = 0
            while True:
                msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if msg["type"] == "token":
                    tokens += 1
                    if tokens == 3:
                        await ws.send(json.dumps({"type": "cancel"}))
                elif msg["type"] == "done":
                    if tokens >= 3 and msg["finish_reason"] not in ("cancelled", "eos"):
                        raise _Unexpected(f"ws cancel ended with {msg['finish_reason']}")
                    return
                elif msg["type"] == "error":
                    if "busy" in msg["message"]:
                        self.busy += 1
                        return
                    raise _Unexpected("ws error: " + msg["message"][:40])

    async def _disconnect(self, client: httpx.AsyncClient) -> None:
        async with client.stream("POST", self.url + "/stream", json={"prompt": self.rng.choice(PROMPTS),
                                                                    "max_tokens": 300, "ignore_eos": True}) as r:
            if r.status_code == 503:
                self.busy += 1
                return
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    break  # hang up after the first token
        self.disconnects += 1

    async def _slow_reader(self, client: httpx.AsyncClient) -> None:
        async with client.stream("POST", self.url + "/stream", json={"prompt": self.rng.choice(PROMPTS),
                                                                    "max_tokens": 12, "ignore_eos": True}) as r:
            if r.status_code == 503:
                self.busy += 1
                return
            async for _ in r.aiter_raw(64):
                await asyncio.sleep(0.05)

    async def _abandoned(self, client: httpx.AsyncClient) -> None:
        """A non-streaming request whose client gives up after 0.3 s: its generation must
        stop, not hold a slot for the rest of its tokens."""
        try:
            await client.post(self.url + "/v1/completions", timeout=0.3,
                              json={"prompt": self.rng.choice(PROMPTS), "max_tokens": 400, "ignore_eos": True})
        except httpx.TimeoutException:
            self.abandoned += 1

    async def _stalled(self, client: httpx.AsyncClient) -> None:
        """A stream that reads one byte and then nothing, its socket left open until the
        soak ends: --stall-timeout must free its slot."""
        import socket
        from urllib.parse import urlsplit

        u = urlsplit(self.url)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (u.hostname, u.port))
        body = json.dumps({"prompt": self.rng.choice(PROMPTS), "max_tokens": 100, "ignore_eos": True}).encode()
        await asyncio.get_running_loop().sock_sendall(
            sock, b"POST /stream HTTP/1.1\r\nHost: " + u.netloc.encode() + b"\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 1), 30)
        self.stalled.append(sock)

    async def _bad_request(self, client: httpx.AsyncClient) -> None:
        bad = self.rng.choice([b"{not json", b'{"prompt": 5}', b'{"prompt": "x", "top_p": 7}', b"\xff\xfe",
                               b'{"messages": []}', b"[]"])
        path = self.rng.choice(["/stream", "/v1/completions", "/v1/chat/completions"])
        r = await client.post(self.url + path, content=bad, headers={"Content-Type": "application/json"})
        if not (400 <= r.status_code < 500 and r.json().get("error", {}).get("message")):
            raise _Unexpected(f"bad request answered {r.status_code}")


def bench_soak(path: Path, *, seconds: float = 60.0, clients: int = 6, seed: int = 42, min_requests: int = 0,
               progress: Progress = quiet) -> dict[str, Any]:
    from ..engine import llama

    progress("probing whether this machine decodes batches bit-identically")
    model = llama.LlamaModel(path, n_gpu_layers=0)
    drift = llama.batch_invariance(model, os.cpu_count() or 1)
    model.close()
    with private_home() as home:
        server = ServeProcess(path, "--max-concurrency", "4", "--queue", "8", "--ctx", "512",
                              "--stall-timeout", str(STALL_TIMEOUT), home=home)
        try:
            progress("reference texts: each fixed-seed request alone")

            async def references() -> dict[int, str]:
                async with httpx.AsyncClient(timeout=60) as client:
                    return {i: (await _sse_text(client, server.url, _fixed(i)))[0] for i in range(len(PROMPTS) * 2)}

            refs = asyncio.run(references())
            rss_start = server.rss_mb()
            soak = _Soak(server.url, seed)
            progress(f"{clients} clients for {seconds:.0f} s")

            async def crowd() -> None:
                deadline = time.monotonic() + seconds
                hard = deadline + max(60.0, seconds)
                await asyncio.gather(*(soak.client(deadline, min_requests, hard) for _ in range(clients)))

            t0 = time.monotonic()
            asyncio.run(crowd())
            wall = time.monotonic() - t0
            deadline = time.monotonic() + 15 + STALL_TIMEOUT  # the stalled readers' sockets are still open
            health = server.health()
            while (health["active"] or health["queued"]) and time.monotonic() < deadline:
                time.sleep(0.1)
                health = server.health()
            rss_end = server.rss_mb()
        finally:
            for sock in soak.stalled if "soak" in locals() else []:
                sock.close()
            server.stop()
    same = sum(1 for i, text in soak.texts if text == refs[i])
    differ = len(soak.texts) - same
    errors = dict(soak.errors)
    if differ and not drift:
        errors["fixed-seed text differs from its run alone"] = differ
    return {"benchmark": "soak", "model": str(path), "seconds": round(wall, 1), "clients": clients,
            "completed": dict(soak.completed), "requests_completed": sum(soak.completed.values()),
            "disconnects_survived": soak.disconnects, "busy_503": soak.busy, "errors": errors,
            "unexpected_errors": sum(errors.values()),
            "fixed_seed_streams": {"checked": len(soak.texts), "equal": same, "differ": differ,
                                   "batch_drift": drift},
            "rss_mb": {"start": round(rss_start, 1), "end": round(rss_end, 1),
                       "growth": round(rss_end - rss_start, 1)},
            "health_after": {"active": health["active"], "queued": health["queued"]},
            "abandoned": soak.abandoned, "stalled_readers": len(soak.stalled),
            "freed_by_stall_timeout": health.get("stalled", 0),
            "targets": {"unexpected_errors": 0, "rss_growth_mb": 50, "active_after": 0}}


def format_soak_report(r: dict[str, Any]) -> str:
    fs, rss, h = r["fixed_seed_streams"], r["rss_mb"], r["health_after"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(r["completed"].items()))
    errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "none"
    seeds = (f"{fs['equal']} of {fs['checked']} equal their run alone" +
             ("" if not fs["differ"] or not fs["batch_drift"] else
              f" ({fs['differ']} differ: this machine's batched decoding drifts by {fs['batch_drift']:.2g}, "
              f"so they may; not counted as errors)"))
    return "\n".join([
        f"model: {r['model']}  {r['clients']} clients for {r['seconds']} s against `mullama-tui serve`",
        f"requests completed: {r['requests_completed']} ({kinds}); disconnects survived: "
        f"{r['disconnects_survived']}; 503 busy (full queue, expected): {r['busy_503']}",
        f"unexpected errors: {r['unexpected_errors']} ({errors}) (target 0: {ok(r['unexpected_errors'] == 0)})",
        f"fixed-seed streams: {seeds}",
        f"server RSS: {rss['start']} MB at the start, {rss['end']} MB at the end, growth {rss['growth']} MB "
        f"(target < {r['targets']['rss_growth_mb']} MB: {ok(rss['growth'] < r['targets']['rss_growth_mb'])})",
        f"/health afterwards (the stalled readers' sockets still open): {h['active']} active, {h['queued']} queued "
        f"(target 0: {ok(h['active'] == 0 and h['queued'] == 0)})",
        f"abandoned non-streaming requests: {r['abandoned']}; readers that stopped reading: {r['stalled_readers']}, "
        f"slots freed by --stall-timeout: {r['freed_by_stall_timeout']} (the rest finished into the socket buffers)",
    ])
