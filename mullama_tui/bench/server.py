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
from pathlib import Path
from typing import Any

import httpx

from .common import Progress, ok, percentile, quiet


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


def bench_server(path: Path, *, clients: int = 8, n_tokens: int = 128, reps: int = 2,
                 llama_server: str | None = None, progress: Progress = quiet) -> dict[str, Any]:
    """`llama_server`: the path of llama.cpp's `llama-server`; its aggregate with the same
    clients is measured after ours (the servers never run at once) and compared."""
    report = _bench_ours(path, clients, n_tokens, reps, progress)
    if llama_server:
        theirs = LlamaServerProcess(llama_server, path, clients, 1024)
        try:
            async def round_(k: int) -> float:
                async with httpx.AsyncClient(timeout=300) as client:
                    t0 = time.perf_counter()
                    got = await asyncio.gather(*(_llama_server_client(client, theirs.url, n_tokens, 100 + i)
                                                 for i in range(k)))
                    return sum(n for n, _ in got) / (time.perf_counter() - t0)

            asyncio.run(round_(1))  # warm-up
            single, loaded = [], []
            for i in range(reps):
                progress(f"rep {i + 1}/{reps}: llama-server, 1 client")
                single.append(asyncio.run(round_(1)))
                progress(f"rep {i + 1}/{reps}: llama-server, {clients} clients")
                loaded.append(asyncio.run(round_(clients)))
        finally:
            theirs.stop()
        report["llama_server"] = {"single_tps": round(statistics.median(single), 1),
                                  "loaded_tps": round(statistics.median(loaded), 1)}
        report["of_llama_server_loaded"] = round(report["loaded_tps"] / statistics.median(loaded), 2)
        report["of_llama_server_single"] = round(report["single_tps"] / statistics.median(single), 2)
    return report


def _bench_ours(path: Path, clients: int, n_tokens: int, reps: int, progress: Progress) -> dict[str, Any]:
    server = ServeProcess(path, "--max-concurrency", str(clients), "--queue", str(clients), "--ctx", "1024")
    url = server.url
    threads = ""
    try:
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

        async def round_(k: int) -> tuple[float, list[float]]:
            async with httpx.AsyncClient(timeout=300) as client:
                t0 = time.perf_counter()
                results = await asyncio.gather(*(one(client, 100 + i) for i in range(k)))
                wall = time.perf_counter() - t0
            return sum(n for n, _ in results) / wall, [t for _, t in results]

        asyncio.run(round_(1))  # warm-up
        single, loaded, ttfts = [], [], []
        for i in range(reps):
            progress(f"rep {i + 1}/{reps}: 1 client")
            single.append(asyncio.run(round_(1))[0])
            progress(f"rep {i + 1}/{reps}: {clients} clients")
            tps, t = asyncio.run(round_(clients))
            loaded.append(tps)
            ttfts += t
        threads = server.health().get("threads", {})
    finally:
        server.stop()
    return {"benchmark": "server", "model": str(path), "clients": clients, "n_tokens": n_tokens,
            "single_tps": round(statistics.median(single), 1), "loaded_tps": round(statistics.median(loaded), 1),
            "ratio": round(statistics.median(loaded) / statistics.median(single), 2), "target": 1.5,
            "threads": threads,
            "ttft_ms": {"median": round(statistics.median(ttfts) * 1000, 1),
                        "p95": round(percentile(ttfts, 0.95) * 1000, 1)}}


def format_server_report(r: dict[str, Any]) -> str:
    return (f"model: {r['model']}\n"
            f"1 client: {r['single_tps']} tok/s;  {r['clients']} concurrent clients x {r['n_tokens']} tokens: "
            f"{r['loaded_tps']} tok/s aggregate -> {r['ratio']}x (target >= {r['target']}x: "
            f"{ok(r['ratio'] >= r['target'])})\n"
            f"time to first token under load: median {r['ttft_ms']['median']} ms, p95 {r['ttft_ms']['p95']} ms\n"
            f"threads at the end: {r.get('threads')}"
            + (f"\nllama.cpp's llama-server -np {r['clients']}, same clients, run after: 1 client "
               f"{r['llama_server']['single_tps']} tok/s, "
               f"{r['clients']} clients {r['llama_server']['loaded_tps']} tok/s; "
               f"serve / llama-server: {r['of_llama_server_single']}x (1 client), {r['of_llama_server_loaded']}x "
               f"({r['clients']} clients; target >= 1.0x: {ok(r['of_llama_server_loaded'] >= 1.0)})"
               if "llama_server" in r else ""))


