"""`mullama-tui bench --batched`: compare panes decoded in one batch against the same runs
one after another (same engine, same seeds, the cache cleared before each run)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..engine.generation import drain_together
from ..engine.local import LocalEngine
from ..engine.types import Request, SamplerParams
from .common import Progress, engine_run, quiet

BATCH_PROMPT = "Tell me a story about a robot who learns to paint."


def bench_batched(path: Path, *, pane_counts: tuple[int, ...] = (3, 4), n_tokens: int = 256,
                  seed: int = 42, n_gpu_layers: int | None = None,
                  progress: Progress = quiet) -> dict[str, Any]:
    """N panes of `n_tokens` each in one batch, against the same N runs one after another
    (same engine, same seeds, cache cleared before each run)."""
    temps = [0.1, 0.5, 0.9, 1.3, 0.3, 0.7]
    rows = []
    with LocalEngine(path, n_ctx=1024, n_parallel=max(pane_counts), n_gpu_layers=n_gpu_layers) as engine:
        def request(t: float) -> Request:
            return Request(prompt=BATCH_PROMPT, mode="chat", max_tokens=n_tokens, ignore_eos=True,
                           params=SamplerParams(temperature=t, seed=seed))

        engine_run(engine, BATCH_PROMPT, 8, SamplerParams(seed=seed))  # warm-up
        for n in pane_counts:
            progress(f"{n} panes one after another")
            t0 = time.perf_counter()
            for t in temps[:n]:
                engine.clear_cache()
                for _ in engine.submit(request(t)):
                    pass
            seq = time.perf_counter() - t0
            progress(f"{n} panes in one batch")
            engine.clear_cache()
            before = engine.scheduler.prompt_tokens_processed
            t0 = time.perf_counter()
            gens = [engine.submit(request(t)) for t in temps[:n]]
            drain_together(gens, interval=0.05)
            bat = time.perf_counter() - t0
            processed = engine.scheduler.prompt_tokens_processed - before
            rows.append({"panes": n, "tokens_per_pane": n_tokens,
                         "sequential_s": round(seq, 2), "batched_s": round(bat, 2),
                         "sequential_tps": round(n * n_tokens / seq, 1),
                         "batched_tps": round(n * n_tokens / bat, 1),
                         "ratio": round(seq / bat, 2), "wall_ratio": round(bat / seq, 2),
                         "prompt_tokens": len(gens[0].prompt_tokens),
                         "prompt_tokens_processed": processed})
    return {"benchmark": "batched", "model": str(path), "seed": seed, "rows": rows,
            "targets": {"3": 1.25, "4": 1.45}}


def format_batched_report(r: dict[str, Any]) -> str:
    lines = [f"model: {r['model']}  seed: {r['seed']}",
             f"{'panes':>5} {'sequential':>16} {'batched':>16} {'ratio':>6} {'target':>7}  prompt tokens processed"]
    for row in r["rows"]:
        target = r["targets"].get(str(row["panes"]))
        ok = "" if target is None else ("ok" if row["ratio"] >= target else "BELOW")
        lines.append(f"{row['panes']:>5} {row['sequential_tps']:>8} tok/s {row['sequential_s']:>4}s"
                     f" {row['batched_tps']:>8} tok/s {row['batched_s']:>4}s {row['ratio']:>5}x"
                     f" {('>= ' + str(target)) if target else '':>7} {ok}  {row['prompt_tokens_processed']}"
                     f" (prompt is {row['prompt_tokens']})")
    return "\n".join(lines)
