"""`mullama-tui bench`: the engine against llama-cpp-python's create_completion(stream=True)
on the same threads, a plain decode loop for scale, and llama-cpp-python on its own
default threads (what a user gets out of the box)."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from ..engine.local import LocalEngine
from ..engine.types import SamplerParams
from .common import BENCH_PROMPT, ChildRunner, Progress, Series, engine_run, ok, quiet


def llama_bench_tg(binary: str, path: Path, n_tokens: int, n_threads: int, n_gpu_layers: int,
                   flash_attn: bool) -> float:
    """llama.cpp's own `llama-bench` tg figure (tok/s over `n_tokens`, one repetition), for
    the ceiling: a decode loop in C++ with no sampling at all."""
    import json
    import subprocess

    cmd = [binary, "-m", str(path), "-t", str(n_threads), "-p", "0", "-n", str(n_tokens), "-r", "1",
           "-ngl", str(n_gpu_layers if n_gpu_layers >= 0 else 99), "-fa", "1" if flash_attn else "0", "-o", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({out.returncode}): {out.stderr.strip()[-200:]}")
    return float(json.loads(out.stdout)[0]["avg_ts"])


def bench_engine(path: Path, *, n_tokens: int = 256, reps: int = 3, seed: int = 42, n_threads: int = 0,
                 n_ctx: int = 2048, n_gpu_layers: int | None = None, llama_bench: str | None = None,
                 progress: Progress = quiet) -> dict[str, Any]:
    """`llama_bench`: the path of llama.cpp's `llama-bench` (built from the same source),
    run between the others as the ceiling (engine >= 0.9x of its tg is the target)."""
    threads = n_threads or os.cpu_count() or 1
    params = SamplerParams(temperature=0.8, seed=seed)
    engine = LocalEngine(path, n_ctx=n_ctx, n_parallel=1, n_threads=threads, n_gpu_layers=n_gpu_layers)
    ngl = engine.model.n_gpu_layers
    placement = engine.model.placement.summary
    contenders = [ChildRunner("llama-cpp-python", path, n_ctx, threads, ngl),
                  ChildRunner("bare-loop", path, n_ctx, threads, ngl),
                  ChildRunner("llama-cpp-python", path, n_ctx, 0, ngl)]  # its own default threads
    baseline, ceiling, stock = contenders
    ours = Series("mullama-tui engine")
    theirs = Series("llama-cpp-python create_completion(stream=True)")
    bare = Series("plain ctypes decode loop (no engine), for scale")
    as_shipped = Series(f"llama-cpp-python, its default threads ({stock.threads})")
    ceiling_tg: list[float] = []
    flash = engine.model.placement.gpu_layers > 0
    try:
        # one untimed warm-up each (first decode allocates compute buffers)
        engine_run(engine, BENCH_PROMPT, 8, params)
        for contender in contenders:
            contender.run(BENCH_PROMPT, 8, params)
        for i in range(reps):
            progress(f"rep {i + 1}/{reps}: engine")
            ours.runs.append(engine_run(engine, BENCH_PROMPT, n_tokens, params))
            progress(f"rep {i + 1}/{reps}: llama-cpp-python")
            theirs.runs.append(baseline.run(BENCH_PROMPT, n_tokens, params))
            progress(f"rep {i + 1}/{reps}: bare loop")
            bare.runs.append(ceiling.run(BENCH_PROMPT, n_tokens, params))
            progress(f"rep {i + 1}/{reps}: llama-cpp-python, default threads")
            as_shipped.runs.append(stock.run(BENCH_PROMPT, n_tokens, params))
            if llama_bench:
                progress(f"rep {i + 1}/{reps}: llama-bench")
                ceiling_tg.append(llama_bench_tg(llama_bench, path, n_tokens, threads, ngl, flash))
    finally:
        engine.close()
        for runner in contenders:
            runner.close()
    a, b, d = ours.summary(), theirs.summary(), as_shipped.summary()
    c = bare.summary()
    return {"benchmark": "engine", "model": str(path), "threads": threads, "n_tokens": n_tokens,
            "seed": seed, "placement": placement, "series": [a, b, c, d],
            "ratio_tg": round(a["tg_tps"]["median"] / b["tg_tps"]["median"], 2),
            "ratio_pp": round(a["pp_tps"]["median"] / b["pp_tps"]["median"], 2),
            "ceiling_ratio_tg": round(c["tg_tps"]["median"] / b["tg_tps"]["median"], 2),
            "engine_of_ceiling": round(a["tg_tps"]["median"] / c["tg_tps"]["median"], 2),
            "ratio_tg_default_threads": round(a["tg_tps"]["median"] / d["tg_tps"]["median"], 2),
            "default_threads": stock.threads, "target_of_ceiling": 0.9,
            "llama_bench_tg": [round(x, 1) for x in ceiling_tg],
            "engine_of_llama_bench": round(a["tg_tps"]["median"] / statistics.median(ceiling_tg), 2)
            if ceiling_tg else None}


def format_engine_report(r: dict[str, Any]) -> str:
    lines = [f"model: {r['model']}  ({r['placement']})",
             f"threads: {r['threads']}  tokens: {r['n_tokens']} each (end-of-text cannot stop a run)  "
             f"seed: {r['seed']}",
             f"{'':50} {'pp tok/s (med/min/max)':>26} {'tg tok/s (med/min/max)':>26}  tokens"]
    for s in r["series"]:
        pp, tg = s["pp_tps"], s["tg_tps"]
        lines.append(f"{s['name']:50} {pp['median']:>8} {pp['min']:>8} {pp['max']:>8}"
                     f" {tg['median']:>8} {tg['min']:>8} {tg['max']:>8}  {s['tokens']}")
    lines.append(f"generation ratio engine / llama-cpp-python: {r['ratio_tg']}x;  prompt ratio: {r['ratio_pp']}x")
    lines.append(f"engine / plain decode loop: {r['engine_of_ceiling']}x (target >= {r['target_of_ceiling']}x: "
                 f"{ok(r['engine_of_ceiling'] >= r['target_of_ceiling'])});  "
                 f"plain loop / llama-cpp-python {r['ceiling_ratio_tg']}x")
    lines.append(f"out of the box (each with its default threads: ours {r['threads']}, llama-cpp-python "
                 f"{r['default_threads']}): engine / llama-cpp-python {r['ratio_tg_default_threads']}x")
    if r.get("engine_of_llama_bench") is not None:
        lines.append(f"llama.cpp's llama-bench tg{r['n_tokens']} (no sampling), interleaved: "
                     f"{r['llama_bench_tg']} tok/s; "
                     f"engine / llama-bench {r['engine_of_llama_bench']}x (target >= {r['target_of_ceiling']}x: "
                     f"{ok(r['engine_of_llama_bench'] >= r['target_of_ceiling'])})")
    return "\n".join(lines)
