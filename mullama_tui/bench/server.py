"""`mullama-tui bench --server`: concurrent streaming clients against one client alone, on
a real `mullama-tui serve` in its own process (so the clients' Python shares no GIL and
no OpenMP team with the server)."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from .common import Progress, ok, paired_ratios, percentile, quiet


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, proc: subprocess.Popen[Any], timeout: float, what: str) -> None:
    """Until `url`/health answers 200; RuntimeError if `proc` ends or time runs out first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            stop_process(proc)
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class ServeProcess:
    """`mullama-tui serve MODEL` on a free loopback port, up once /health answers."""

    def __init__(self, path: Path, *args: str, home: Path | None = None, stderr: Any = subprocess.DEVNULL) -> None:
        import os

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if home is not None:
            env["MULLAMA_TUI_HOME"] = str(home)
        self.proc = subprocess.Popen([sys.executable, "-m", "mullama_tui.cli", "serve", str(path),
                                      "--port", str(self.port), *args],
                                     stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        wait_healthy(self.url, self.proc, 60, "the server")

    def health(self) -> dict[str, Any]:
        health: dict[str, Any] = httpx.get(self.url + "/health", timeout=5).json()
        return health

    def rss_mb(self) -> float:
        """The server's resident memory, from /proc (Linux)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def stop(self) -> None:
        stop_process(self.proc)


class LlamaServerProcess:
    """llama.cpp's own `llama-server -np N` on a free loopback port (the ceiling to
    compare `serve` with), up once its /health says ok."""

    def __init__(self, binary: str, path: Path, parallel: int, n_ctx: int) -> None:
        import os

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        from ..engine.llama import amx_kernels_allowed

        threads = str(len(os.sched_getaffinity(0)))
        # the same weight placement as our engine: no repacked (AMX) buffers where they fault
        # (see `engine.llama.amx_kernels_allowed`: llama-server dies of an illegal instruction)
        repack = [] if amx_kernels_allowed() else ["--no-repack"]
        self.proc = subprocess.Popen([binary, "-m", str(path), "--port", str(self.port), "--host", "127.0.0.1",
                                      "-np", str(parallel), "-c", str(n_ctx * parallel), "-t", threads,
                                      "-tb", threads, "-fa", "off", "--no-webui", *repack],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_healthy(self.url, self.proc, 120, f"llama-server ({binary})")

    def stop(self) -> None:
        stop_process(self.proc)


async def _llama_server_client(client: httpx.AsyncClient, url: str, n_tokens: int, seed: int) -> tuple[int, float]:
    """One streaming client of llama-server's /completion: tokens and time to the first."""
    body = {"prompt": "Write a long story about a dragon.", "n_predict": n_tokens, "seed": seed,
            "temperature": 0.8, "ignore_eos": True, "stream": True, "cache_prompt": False}
    t0 = time.perf_counter()
    ttft, n = None, 0
    async with client.stream("POST", url + "/completion", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                if ev.get("stop"):
                    n = int(ev.get("tokens_predicted") or ev.get("timings", {}).get("predicted_n") or n)
                else:
                    n += 1
                    ttft = ttft if ttft is not None else time.perf_counter() - t0
    return n, ttft or 0.0


Round = Callable[[int], "tuple[float, list[float]]"]


def _ours_round(url: str, n_tokens: int) -> Round:
    """`k` streaming clients of `serve`'s /stream at once: aggregate tok/s and each time to first token."""
    async def one(client: httpx.AsyncClient, seed: int) -> tuple[int, float]:
        body = {"prompt": "Write a long story about a dragon.", "max_tokens": n_tokens, "seed": seed,
                "temperature": 0.8, "ignore_eos": True}
        t0 = time.perf_counter()
        ttft = None
        n = 0
        async with client.stream("POST", url + "/stream", json=body) as r:
            async for line in r.aiter_lines():
                if line.startswith("data: "):
                    ev = json.loads(line[6:])
                    if not ev["done"]:
                        n += 1
                        if ttft is None:
                            ttft = time.perf_counter() - t0
                    else:
                        n = ev["stats"]["generated_tokens"]
        return n, ttft or 0.0

    return lambda k: asyncio.run(_gather(one, k))


def _llama_server_round(url: str, n_tokens: int) -> Round:
    return lambda k: asyncio.run(_gather(lambda client, seed: _llama_server_client(client, url, n_tokens, seed), k))


async def _gather(one: Callable[[httpx.AsyncClient, int], Awaitable[tuple[int, float]]],
                  k: int) -> tuple[float, list[float]]:
    async with httpx.AsyncClient(timeout=300) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(client, 100 + i) for i in range(k)))
        wall = time.perf_counter() - t0
    return sum(n for n, _ in results) / wall, [t for _, t in results]


def bench_server(path: Path, *, clients: int = 8, n_tokens: int = 128, reps: int = 3,
                 llama_server: str | None = None, progress: Progress = quiet) -> dict[str, Any]:
    """`serve` with 1 and `clients` streaming clients. With `llama_server` (the path of
    llama.cpp's `llama-server`), that server is up beside ours and the two take turns,
    round by round in the order AB BA AB (one measured while the other idles), so the
    comparison is of adjacent rounds: a VM's speed drifts by a third within minutes."""
    ours = ServeProcess(path, "--max-concurrency", str(clients), "--queue", str(clients), "--ctx", "1024")
    theirs = LlamaServerProcess(llama_server, path, clients, 1024) if llama_server else None
    try:
        sides: dict[str, Round] = {"ours": _ours_round(ours.url, n_tokens)}
        if theirs is not None:
            sides["theirs"] = _llama_server_round(theirs.url, n_tokens)
        for run in sides.values():
            run(1)  # warm-up
        single: dict[str, list[float]] = {k: [] for k in sides}
        loaded: dict[str, list[float]] = {k: [] for k in sides}
        ttfts: list[float] = []
        for i in range(reps):
            order = list(sides) if i % 2 == 0 else list(reversed(sides))
            for side in order:
                who = "serve" if side == "ours" else "llama-server"
                progress(f"rep {i + 1}/{reps}: {who}, 1 client")
                single[side].append(sides[side](1)[0])
                progress(f"rep {i + 1}/{reps}: {who}, {clients} clients")
                tps, t = sides[side](clients)
                loaded[side].append(tps)
                if side == "ours":
                    ttfts += t
        threads = ours.health().get("threads", {})
    finally:
        ours.stop()
        if theirs is not None:
            theirs.stop()
    med = statistics.median
    report: dict[str, Any] = {
        "benchmark": "server", "model": str(path), "clients": clients, "n_tokens": n_tokens, "reps": reps,
        "single_tps": round(med(single["ours"]), 1), "loaded_tps": round(med(loaded["ours"]), 1),
        "ratio": round(med(loaded["ours"]) / med(single["ours"]), 2), "target": 1.5, "threads": threads,
        "ttft_ms": {"median": round(med(ttfts) * 1000, 1), "p95": round(percentile(ttfts, 0.95) * 1000, 1)},
        "runs": {"single": {k: [round(x, 1) for x in v] for k, v in single.items()},
                 "loaded": {k: [round(x, 1) for x in v] for k, v in loaded.items()}}}
    if theirs is not None:
        report["llama_server"] = {"single_tps": round(med(single["theirs"]), 1),
                                  "loaded_tps": round(med(loaded["theirs"]), 1)}
        report["of_llama_server_loaded"] = round(med(paired_ratios(loaded["ours"], loaded["theirs"])), 2)
        report["of_llama_server_single"] = round(med(paired_ratios(single["ours"], single["theirs"])), 2)
    return report


def format_server_report(r: dict[str, Any]) -> str:
    return (f"model: {r['model']}\n"
            f"1 client: {r['single_tps']} tok/s;  {r['clients']} concurrent clients x {r['n_tokens']} tokens: "
            f"{r['loaded_tps']} tok/s aggregate -> {r['ratio']}x (target >= {r['target']}x: "
            f"{ok(r['ratio'] >= r['target'])})\n"
            f"time to first token under load: median {r['ttft_ms']['median']} ms, p95 {r['ttft_ms']['p95']} ms\n"
            f"threads at the end: {r.get('threads')}"
            + (f"\nllama.cpp's llama-server -np {r['clients']}, same clients, rounds taken in turns with serve's: "
               f"1 client {r['llama_server']['single_tps']} tok/s, "
               f"{r['clients']} clients {r['llama_server']['loaded_tps']} tok/s\n"
               f"rounds ({r['clients']} clients): serve {r['runs']['loaded']['ours']}, llama-server "
               f"{r['runs']['loaded']['theirs']}\n"
               f"serve / llama-server, median of adjacent rounds: {r['of_llama_server_single']}x (1 client), "
               f"{r['of_llama_server_loaded']}x "
               f"({r['clients']} clients; target >= 1.0x: {ok(r['of_llama_server_loaded'] >= 1.0)})"
               if "llama_server" in r else ""))


