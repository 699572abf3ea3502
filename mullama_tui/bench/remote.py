"""`mullama-tui bench --backend openai`: an OpenAI-compatible server as the TUI sees it."""

from __future__ import annotations

import statistics
from typing import Any

from ..engine.types import Request, SamplerParams
from .common import BENCH_PROMPT, Progress, quiet, time_stream


def bench_remote(engine: Any, *, n_tokens: int = 128, reps: int = 3, seed: int = 42,
                 progress: Progress = quiet) -> dict[str, Any]:
    """Streaming through an OpenAI-compatible server, measured on the client (as the TUI
    sees it): time to first piece and generation tok/s, over `reps` runs. `ignore_eos`
    is sent (llama.cpp's server and mullama-tui honour it); the pieces of each run are
    reported, since other servers may stop early."""
    runs = []
    for i in range(reps):
        progress(f"rep {i + 1}/{reps}")
        gen = engine.submit(Request(prompt=BENCH_PROMPT, mode="raw", max_tokens=n_tokens, ignore_eos=True,
                                    params=SamplerParams(temperature=0.8, seed=seed)))
        run = time_stream(0, (e for e in gen if not e.done))
        if gen.stats is not None and gen.stats.error:
            raise RuntimeError(gen.stats.error)
        runs.append(run)
    return {"benchmark": "remote", "base_url": engine.base_url, "n_tokens": n_tokens,
            "tokens": [r.pieces for r in runs],
            "ttft_ms": round(statistics.median(r.ttft for r in runs) * 1000, 1),
            "tg_tps": round(statistics.median(r.tg_tps for r in runs), 1)}


def format_remote_report(r: dict[str, Any]) -> str:
    return (f"remote: {r['base_url']}  tokens per run: {r['tokens']}\n"
            f"time to first piece (median): {r['ttft_ms']} ms;  generation (median): {r['tg_tps']} tok/s")
