"""The benchmarks behind `mullama-tui bench`: ratios measured side by side in one run.

The machine is shared and noisy, so each benchmark interleaves the two things it
compares (A, B, A, B, ...) on the same model, prompt, token count and seed, and reports
medians and the ratio of medians. Every rate is measured the same way from the
consumer's side for both contenders:
- prompt tok/s = prompt tokens / time from request to the first piece;
- generation tok/s = (pieces - 1) / time from the first piece to the last.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .engine.local import LocalEngine
from .engine.types import Request, SamplerParams

BENCH_PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined a screw press with movable metal type and oil-based ink. "
) * 4 + "Write a long, detailed essay about how printing changed Europe."


@dataclass
class Run:
    prompt_tokens: int
    pieces: int
    ttft: float
    gen_time: float

    @property
    def pp_tps(self) -> float:
        return self.prompt_tokens / self.ttft if self.ttft > 0 else 0.0

    @property
    def tg_tps(self) -> float:
        return (self.pieces - 1) / self.gen_time if self.gen_time > 0 else 0.0


@dataclass
class Series:
    name: str
    runs: list[Run] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def mmm(xs: list[float]) -> dict[str, float]:
            return {"median": round(statistics.median(xs), 1), "min": round(min(xs), 1),
                    "max": round(max(xs), 1)}
        return {"name": self.name, "reps": len(self.runs),
                "tokens": [r.pieces for r in self.runs],
                "prompt_tokens": self.runs[0].prompt_tokens if self.runs else 0,
                "pp_tps": mmm([r.pp_tps for r in self.runs]),
                "tg_tps": mmm([r.tg_tps for r in self.runs])}


def _time_stream(prompt_tokens: int, pieces: Iterable[Any]) -> Run:
    t0 = time.perf_counter()
    first = last = None
    n = 0
    for _ in pieces:
        now = time.perf_counter()
        if first is None:
            first = now
        last = now
        n += 1
    if first is None or last is None:
        return Run(prompt_tokens, 0, 0.0, 0.0)
    return Run(prompt_tokens, n, first - t0, last - first)


def engine_run(engine: LocalEngine, prompt: str, n_tokens: int, params: SamplerParams) -> Run:
    engine.clear_cache()
    req = Request(prompt=prompt, mode="raw", max_tokens=n_tokens, params=params)
    gen = engine.submit(req)
    return _time_stream(len(gen.prompt_tokens), (e for e in gen if not e.done))


def _baseline_worker(conn: Any, path: str, n_ctx: int, n_threads: int) -> None:
    """Child process: llama-cpp-python's `Llama.create_completion(stream=True)`."""
    import logging

    logging.disable(logging.CRITICAL)
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads,
                verbose=False)
    conn.send("ready")
    while True:
        msg = conn.recv()
        if msg is None:
            break
        prompt, n_tokens, p = msg
        llm.reset()  # no prompt-prefix reuse between repetitions
        n_prompt = len(llm.tokenize(prompt.encode()))
        stream = llm.create_completion(
            prompt, max_tokens=n_tokens, temperature=p["temperature"], top_k=p["top_k"],
            top_p=p["top_p"], min_p=p["min_p"], repeat_penalty=p["penalty_repeat"],
            seed=p["seed"], stream=True)
        r = _time_stream(n_prompt, stream)
        conn.send((r.prompt_tokens, r.pieces, r.ttft, r.gen_time))
    llm.close()


class LlamaCppPythonRunner:
    """The baseline, in its own process.

    Why a process: llama.cpp is built with OpenMP here, and OpenMP keeps one thread team
    per calling thread. Two decoding threads in one process (our scheduler thread and
    this baseline) make libgomp see more threads than cores and drop its spin-waits,
    which slowed *both* sides by a third when measured. Separate processes are also how
    a user runs the two tools.
    """

    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_baseline_worker, args=(child, str(path), n_ctx, n_threads),
                                 daemon=True)
        self._proc.start()
        if not self._conn.poll(120) or self._conn.recv() != "ready":
            self.close()
            raise RuntimeError("the llama-cpp-python baseline did not start")

    def run(self, prompt: str, n_tokens: int, params: SamplerParams) -> Run:
        self._conn.send((prompt, n_tokens, params.to_dict()))
        return Run(*self._conn.recv())

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def bench_engine_vs_llama_cpp_python(path: Path, *, n_tokens: int = 256, reps: int = 3,
                                     seed: int = 42, n_threads: int = 0, n_ctx: int = 2048,
                                     progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    import os

    threads = n_threads or os.cpu_count() or 1
    params = SamplerParams(temperature=0.8, seed=seed)
    engine = LocalEngine(path, n_ctx=n_ctx, n_parallel=1, n_threads=threads)
    baseline = LlamaCppPythonRunner(path, n_ctx, threads)
    ours, theirs = Series("mullama-tui engine"), Series("llama-cpp-python create_completion(stream=True)")
    try:
        # one untimed warm-up each (first decode allocates compute buffers)
        engine_run(engine, BENCH_PROMPT, 8, params)
        baseline.run(BENCH_PROMPT, 8, params)
        for i in range(reps):
            progress(f"rep {i + 1}/{reps}: engine")
            ours.runs.append(engine_run(engine, BENCH_PROMPT, n_tokens, params))
            progress(f"rep {i + 1}/{reps}: llama-cpp-python")
            theirs.runs.append(baseline.run(BENCH_PROMPT, n_tokens, params))
    finally:
        engine.close()
        baseline.close()
    a, b = ours.summary(), theirs.summary()
    return {"benchmark": "engine", "model": str(path), "threads": threads, "n_tokens": n_tokens,
            "seed": seed, "series": [a, b],
            "ratio_tg": round(a["tg_tps"]["median"] / b["tg_tps"]["median"], 2),
            "ratio_pp": round(a["pp_tps"]["median"] / b["pp_tps"]["median"], 2),
            "target_tg": 1.4}


def format_engine_report(r: dict[str, Any]) -> str:
    lines = [f"model: {r['model']}", f"threads: {r['threads']}  tokens: {r['n_tokens']}  seed: {r['seed']}",
             f"{'':50} {'pp tok/s (med/min/max)':>26} {'tg tok/s (med/min/max)':>26}  tokens"]
    for s in r["series"]:
        pp, tg = s["pp_tps"], s["tg_tps"]
        lines.append(f"{s['name']:50} {pp['median']:>8} {pp['min']:>8} {pp['max']:>8}"
                     f" {tg['median']:>8} {tg['min']:>8} {tg['max']:>8}  {s['tokens']}")
    ok = "ok" if r["ratio_tg"] >= r["target_tg"] else "BELOW TARGET"
    lines.append(f"generation ratio engine / llama-cpp-python: {r['ratio_tg']}x "
                 f"(target >= {r['target_tg']}x: {ok});  prompt ratio: {r['ratio_pp']}x")
    return "\n".join(lines)


def drain_concurrently(gens: list[Any]) -> None:
    """Read several generations at once (reading one after another would let
    backpressure pause the unread ones)."""
    threads = [threading.Thread(target=lambda g=g: [None for _ in g]) for g in gens]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
