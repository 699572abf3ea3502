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


class ServeProcess:
    """`mullama-tui serve MODEL` on a free loopback port, up once /health answers."""

    def __init__(self, path: Path, *args: str, home: Path | None = None, stderr: Any = subprocess.DEVNULL) -> None:
        import os

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        if home is not None:
            env["MULLAMA_TUI_HOME"] = str(home)
        self.proc = subprocess.Popen([sys.executable, "-m", "mullama_tui.cli", "serve", str(path),
                                      "--port", str(self.port), *args],
                                     stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError("the server did not start")
            time.sleep(0.1)

    def health(self) -> dict[str, Any]:
        return httpx.get(self.url + "/health", timeout=5).json()

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
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def bench_server(path: Path, *, clients: int = 8, n_tokens: int = 128, reps: int = 2,
                 progress: Progress = quiet) -> dict[str, Any]:
    server = ServeProcess(path, "--max-concurrency", str(clients), "--queue", str(clients), "--ctx", "1024")
    url = server.url
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
    finally:
        server.stop()
    return {"benchmark": "server", "model": str(path), "clients": clients, "n_tokens": n_tokens,
            "single_tps": round(statistics.median(single), 1), "loaded_tps": round(statistics.median(loaded), 1),
            "ratio": round(statistics.median(loaded) / statistics.median(single), 2), "target": 1.5,
            "ttft_ms": {"median": round(statistics.median(ttfts) * 1000, 1),
                        "p95": round(percentile(ttfts, 0.95) * 1000, 1)}}


def format_server_report(r: dict[str, Any]) -> str:
    return (f"model: {r['model']}\n"
            f"1 client: {r['single_tps']} tok/s;  {r['clients']} concurrent clients x {r['n_tokens']} tokens: "
            f"{r['loaded_tps']} tok/s aggregate -> {r['ratio']}x (target >= {r['target']}x: "
            f"{ok(r['ratio'] >= r['target'])})\n"
            f"time to first token under load: median {r['ttft_ms']['median']} ms, p95 {r['ttft_ms']['p95']} ms")


