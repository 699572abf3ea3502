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


RunFn = Callable[[str, int, dict[str, Any]], Run]


def _llama_cpp_python(path: str, n_ctx: int, n_threads: int) -> tuple[RunFn, int]:
    """llama-cpp-python's high-level `Llama.create_completion(stream=True)`: the baseline.
    `n_threads=0` keeps llama-cpp-python's own default; the threads it decodes on are
    returned with the run function."""
    import llama_cpp.llama_cpp as low_level
    from llama_cpp import Llama

    from .engine.llama import model_params

    # the same weight placement as our engine (no AMX buffers where they crash: see
    # `engine.llama.amx_kernels_allowed`); `Llama.__init__` reads these defaults here
    low_level.llama_model_default_params = model_params
    threads = {"n_threads": n_threads, "n_threads_batch": n_threads} if n_threads else {}
    llm = Llama(model_path=path, n_ctx=n_ctx, verbose=False, **threads)

    def run(prompt: str, n_tokens: int, p: dict[str, Any]) -> Run:
        llm.reset()  # no prompt-prefix reuse between repetitions
        n_prompt = len(llm.tokenize(prompt.encode()))
        stream = llm.create_completion(
            prompt, max_tokens=n_tokens, temperature=p["temperature"], top_k=p["top_k"],
            top_p=p["top_p"], min_p=p["min_p"], repeat_penalty=p["penalty_repeat"],
            seed=p["seed"], stream=True)
        return _time_stream(n_prompt, stream)

    return run, llm.n_threads


def _bare_loop(path: str, n_ctx: int, n_threads: int) -> tuple[RunFn, int]:
    """For scale: a plain decode loop with the same C sampler chain and no scheduler,
    threads or events, i.e. about what any engine on llama.cpp can reach here."""
    from .engine import llama

    model = llama.LlamaModel(path)

    def run(prompt: str, n_tokens: int, p: dict[str, Any]) -> Run:
        ctx = llama.create_context(model, n_ctx, 1, 512, n_threads)
        batch = llama.Batch(512, 1)
        sampler = llama.SamplerChain(model, SamplerParams(**p), p["seed"])
        toks = model.prompt_tokens(prompt, chat=False)

        def pieces() -> Any:
            for i, t in enumerate(toks):
                batch.add(t, i, 0, i == len(toks) - 1)
            llama.decode(ctx, batch)
            pos = len(toks)
            for _ in range(n_tokens):
                tok = sampler.sample(ctx, batch.n - 1)
                yield model.piece(tok)
                batch.clear()
                batch.add(tok, pos, 0, True)
                pos += 1
                llama.decode(ctx, batch)

        try:
            return _time_stream(len(toks), pieces())
        finally:
            sampler.free()
            batch.free()
            llama.free_context(ctx)

    return run, n_threads


RUNNERS = {"llama-cpp-python": _llama_cpp_python, "bare-loop": _bare_loop}


def _child_worker(conn: Any, kind: str, path: str, n_ctx: int, n_threads: int) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    run, threads = RUNNERS[kind](path, n_ctx, n_threads)
    conn.send(("ready", threads))
    while True:
        msg = conn.recv()
        if msg is None:
            break
        r = run(*msg)
        conn.send((r.prompt_tokens, r.pieces, r.ttft, r.gen_time))


class ChildRunner:
    """A contender in its own process.

    Why a process: llama.cpp is built with OpenMP here, and OpenMP keeps one thread team
    per calling thread. Two decoding threads in one process (our scheduler thread and a
    baseline) make libgomp see more threads than cores and drop its spin-waits, which
    slowed *both* sides by a third when measured. Separate processes are also how a user
    runs two tools.
    """

    def __init__(self, kind: str, path: Path, n_ctx: int, n_threads: int) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._kind = kind
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_worker, args=(child, kind, str(path), n_ctx, n_threads),
                                 daemon=True)
        self._proc.start()
        hello = self._conn.recv() if self._conn.poll(120) else None
        if not (isinstance(hello, tuple) and hello[0] == "ready"):
            self.close()
            raise RuntimeError(f"the {kind} benchmark process did not start")
        self.threads: int = hello[1]  # the threads it really decodes on

    def run(self, prompt: str, n_tokens: int, params: SamplerParams) -> Run:
        try:
            self._conn.send((prompt, n_tokens, params.to_dict()))
            return Run(*self._conn.recv())
        except (EOFError, OSError):  # not an abort: click would print a bare "Aborted."
            self._proc.join(5)
            raise RuntimeError(f"the {self._kind} benchmark process died "
                               f"(exit code {self._proc.exitcode})") from None

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
    baseline = ChildRunner("llama-cpp-python", path, n_ctx, threads)
    ceiling = ChildRunner("bare-loop", path, n_ctx, threads)
    stock = ChildRunner("llama-cpp-python", path, n_ctx, 0)  # its own default threads
    ours = Series("mullama-tui engine")
    theirs = Series("llama-cpp-python create_completion(stream=True)")
    bare = Series("plain ctypes decode loop (no engine), for scale")
    as_shipped = Series(f"llama-cpp-python, its default threads ({stock.threads})")
    try:
        # one untimed warm-up each (first decode allocates compute buffers)
        engine_run(engine, BENCH_PROMPT, 8, params)
        baseline.run(BENCH_PROMPT, 8, params)
        ceiling.run(BENCH_PROMPT, 8, params)
        stock.run(BENCH_PROMPT, 8, params)
        for i in range(reps):
            progress(f"rep {i + 1}/{reps}: engine")
            ours.runs.append(engine_run(engine, BENCH_PROMPT, n_tokens, params))
            progress(f"rep {i + 1}/{reps}: llama-cpp-python")
            theirs.runs.append(baseline.run(BENCH_PROMPT, n_tokens, params))
            progress(f"rep {i + 1}/{reps}: bare loop")
            bare.runs.append(ceiling.run(BENCH_PROMPT, n_tokens, params))
            progress(f"rep {i + 1}/{reps}: llama-cpp-python, default threads")
            as_shipped.runs.append(stock.run(BENCH_PROMPT, n_tokens, params))
    finally:
        engine.close()
        baseline.close()
        ceiling.close()
        stock.close()
    a, b, c, d = ours.summary(), theirs.summary(), bare.summary(), as_shipped.summary()
    return {"benchmark": "engine", "model": str(path), "threads": threads, "n_tokens": n_tokens,
            "seed": seed, "series": [a, b, c, d],
            "ratio_tg": round(a["tg_tps"]["median"] / b["tg_tps"]["median"], 2),
            "ratio_pp": round(a["pp_tps"]["median"] / b["pp_tps"]["median"], 2),
            "ceiling_ratio_tg": round(c["tg_tps"]["median"] / b["tg_tps"]["median"], 2),
            "engine_of_ceiling": round(a["tg_tps"]["median"] / c["tg_tps"]["median"], 2),
            "ratio_tg_default_threads": round(a["tg_tps"]["median"] / d["tg_tps"]["median"], 2),
            "default_threads": stock.threads,
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
    lines.append(f"for scale: plain loop / llama-cpp-python {r['ceiling_ratio_tg']}x; "
                 f"engine / plain loop {r['engine_of_ceiling']}x")
    lines.append(f"out of the box (each with its default threads: ours {r['threads']}, llama-cpp-python "
                 f"{r['default_threads']}): engine / llama-cpp-python {r['ratio_tg_default_threads']}x")
    return "\n".join(lines)


# -- batched decoding (compare panes, concurrent clients) ------------------------------

BATCH_PROMPT = "Tell me a story about a robot who learns to paint."


def bench_batched(path: Path, *, pane_counts: tuple[int, ...] = (3, 4), n_tokens: int = 256,
                  seed: int = 42, progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """N panes of `n_tokens` each in one batch, against the same N runs one after another
    (same engine, same seeds, cache cleared before each run)."""
    from .engine.generation import drain_together

    temps = [0.1, 0.5, 0.9, 1.3, 0.3, 0.7]
    rows = []
    with LocalEngine(path, n_ctx=1024, n_parallel=max(pane_counts)) as engine:
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


# -- the TUI ------------------------------------------------------------------------

UI_PROMPT = "Write a very long story about a lighthouse keeper and the sea, with many chapters."


def _arrivals_of(stamps: list[tuple[float, int]], lo: int, hi: int) -> tuple[int, int, int, int] | None:
    """In `stamps` of (clock, tokens in this batch): the indices of the batches that
    brought token `lo` and token `hi`, with the cumulative counts there; None if the
    stamps do not reach `hi` or both tokens came in one batch."""
    total, first = 0, None
    for i, (_, n) in enumerate(stamps):
        total += n
        if first is None and total >= lo:
            first, n_lo = i, total
        if total >= hi:
            return (first, i, n_lo, total) if first is not None and i > first else None
    return None


def _rate_between(stamps: list[tuple[float, int]], lo: int, hi: int) -> float:
    """tok/s between the arrival of token `lo` and token `hi` (cumulative counts)."""
    span = _arrivals_of(stamps, lo, hi)
    if span is None:
        return 0.0
    i, j, n_lo, n_hi = span
    dt = stamps[j][0] - stamps[i][0]
    return (n_hi - n_lo) / dt if dt > 0 else 0.0


def _headless(path: Path, n_tokens: int, n_ctx: int, mode: str) -> tuple[float, list[tuple[float, int]]]:
    """The engine alone, configured exactly as the TUI configures it (same context size and
    sequence slots), so the difference is the UI's cost and nothing else."""
    from .tui.app import MAX_PANES

    with LocalEngine(path, n_ctx=n_ctx, n_parallel=MAX_PANES) as engine:
        req = Request(prompt=UI_PROMPT, mode=mode, max_tokens=n_tokens, ignore_eos=True,  # type: ignore[arg-type]
                      params=SamplerParams(seed=5))
        gen = engine.submit(req)
        stamps = [(time.perf_counter(), 0 if e.done else 1) for e in gen]
        return n_tokens / (stamps[-1][0] - gen.t_submit), stamps


def bench_ui(path: Path, *, n_tokens: int = 1000, long_tokens: int = 4000, esc_trials: int = 20,
             mode: str = "chat", reps: int = 3,
             progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Headless engine vs the same generation through the real TUI (run_test, headless).
    The end-to-end pair is run `reps` times, interleaved (engine, TUI, engine, TUI, ...),
    and the medians are compared, so a noisy neighbour hits both sides alike."""
    import asyncio
    import os
    import tempfile

    os.environ.setdefault("MULLAMA_TUI_HOME", tempfile.mkdtemp(prefix="mullama-bench-"))
    from .config import Settings
    from .tui.app import MullamaApp
    from .tui.messages import TokenBatch
    from .tui.widgets.prompt import PromptInput

    n_ctx = max(4096, long_tokens + 512)
    Settings(mode=mode, seed=5, max_tokens=n_tokens, n_ctx=n_ctx).save()

    class TimedApp(MullamaApp):
        """Records when token batches reach the UI, when Esc is handled, and when the
        end of a generation has been shown; the harness waits on events, never polls
        (polling would itself steal CPU from decoding on a 2-core machine)."""

        def __init__(self) -> None:
            super().__init__(ignore_eos=True)
            self.stamps: list[tuple[float, int]] = []
            self.cpu_stamps: list[tuple[float, int]] = []  # (UI-thread CPU seconds, tokens)
            self.finished = asyncio.Event()
            self.tokens_seen = asyncio.Event()
            self.t_cancel = 0.0
            self.t_done = 0.0

        async def on_token_batch(self, msg: TokenBatch) -> None:
            self.stamps.append((time.perf_counter(), msg.n_tokens))
            self.cpu_stamps.append((time.thread_time(), msg.n_tokens))
            await super().on_token_batch(msg)
            if sum(n for _, n in self.stamps) > 10:
                self.tokens_seen.set()

        def action_cancel(self) -> None:
            self.t_cancel = time.perf_counter()
            super().action_cancel()

        def watch_state(self, state: str) -> None:
            super().watch_state(state)
            if state in ("cancelled", "ready", "error") and not self.t_done:
                self.t_done = time.perf_counter()  # the moment the UI shows it stopped

        async def on_generation_finished(self, msg: Any) -> None:
            await super().on_generation_finished(msg)
            self.finished.set()

    async def start(app: TimedApp, pilot: Any) -> float:
        while app.engine is None:
            await asyncio.sleep(0.05)
        app.stamps, app.cpu_stamps, app.t_done = [], [], 0.0
        app.finished.clear()
        app.tokens_seen.clear()
        app.query_one(PromptInput).load_text(UI_PROMPT)
        t0 = time.perf_counter()
        await pilot.press("enter")
        return t0

    async def tui_run(max_tokens: int) -> tuple[float, list[tuple[float, int]], list[tuple[float, int]]]:
        s = Settings.load()
        s.max_tokens = max_tokens
        s.save()
        app = TimedApp()
        async with app.run_test(size=(120, 40)) as pilot:
            t0 = await start(app, pilot)
            await asyncio.wait_for(app.finished.wait(), 900)
            tps = app.last_stats.generated_tokens / (app.t_done - t0)  # type: ignore[union-attr]
            return tps, app.stamps, app.cpu_stamps

    async def esc_latencies() -> list[float]:
        s = Settings.load()
        s.max_tokens = 2000
        s.save()
        app = TimedApp()
        out = []
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(esc_trials):
                await start(app, pilot)
                await asyncio.wait_for(app.tokens_seen.wait(), 60)
                await pilot.press("escape")
                await asyncio.wait_for(app.finished.wait(), 10)
                out.append(app.t_done - app.t_cancel)
                await app.action_new_conversation()
        return out

    head_runs, tui_runs = [], []
    for i in range(reps):
        progress(f"headless engine, {n_tokens} tokens ({i + 1}/{reps})")
        head_runs.append(_headless(path, n_tokens, n_ctx, mode)[0])
        progress(f"TUI, {n_tokens} tokens ({i + 1}/{reps})")
        tui_runs.append(asyncio.run(tui_run(n_tokens))[0])
    head_tps, tui_tps = statistics.median(head_runs), statistics.median(tui_runs)
    progress(f"headless engine, {long_tokens} tokens")
    _, head_stamps = _headless(path, long_tokens, n_ctx, mode)
    progress(f"TUI, {long_tokens} tokens")
    _, tui_stamps, tui_cpu = asyncio.run(tui_run(long_tokens))
    progress(f"Esc latency, {esc_trials} trials")
    lat = sorted(asyncio.run(esc_latencies()))
    p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]

    def ui_cost(lo: int, hi: int) -> float:
        """UI-thread CPU milliseconds per screen update (token batch) between token `lo`
        and token `hi`. Per update, not per token: updates come at a fixed rate, so when
        decoding slows (attention over a longer context) each carries fewer tokens."""
        span = _arrivals_of(tui_cpu, lo, hi)
        if span is None:
            return 0.0
        i, j, _, _ = span
        return round((tui_cpu[j][0] - tui_cpu[i][0]) * 1000 / (j - i), 3)

    cost_first, cost_last = ui_cost(1, 500), ui_cost(long_tokens - 500, long_tokens)

    def growth(stamps: list[tuple[float, int]]) -> dict[str, float]:
        first = _rate_between(stamps, 1, 500)
        last = _rate_between(stamps, long_tokens - 500, long_tokens)
        return {"first_500_tps": round(first, 1), "last_500_tps": round(last, 1),
                "ratio": round(last / first, 3) if first else 0.0}

    return {"benchmark": "ui", "model": str(path), "mode": mode, "n_tokens": n_tokens,
            "headless_tps": round(head_tps, 1), "tui_tps": round(tui_tps, 1),
            "headless_runs": [round(x, 1) for x in head_runs], "tui_runs": [round(x, 1) for x in tui_runs],
            "ratio_e2e": round(tui_tps / head_tps, 3), "target_e2e": 0.95,
            "long_tokens": long_tokens, "tui_growth": growth(tui_stamps),
            "headless_growth": growth(head_stamps), "target_growth": 0.9,
            "ui_cpu_ms_per_update": {"first_500": cost_first, "last_500": cost_last,
                                    "ratio": round(cost_last / cost_first, 3) if cost_first else 0.0},
            "esc_ms": {"median": round(statistics.median(lat) * 1000, 1),
                       "p95": round(p95 * 1000, 1), "max": round(lat[-1] * 1000, 1),
                       "trials": len(lat)}, "target_esc_p95_ms": 50}


def format_ui_report(r: dict[str, Any]) -> str:
    def ok(good: bool) -> str:
        return "ok" if good else "BELOW TARGET"

    tg, hg, esc = r["tui_growth"], r["headless_growth"], r["esc_ms"]
    return "\n".join([
        f"model: {r['model']}  mode: {r['mode']}",
        f"end-to-end, {r['n_tokens']} tokens, median of {len(r['tui_runs'])} interleaved runs: headless engine "
        f"{r['headless_tps']} tok/s {r['headless_runs']}, through the TUI {r['tui_tps']} tok/s {r['tui_runs']} "
        f"-> {r['ratio_e2e']}x (target >= {r['target_e2e']}x: {ok(r['ratio_e2e'] >= r['target_e2e'])})",
        f"{r['long_tokens']}-token run, last 500 vs first 500 tokens: TUI {tg['last_500_tps']} / "
        f"{tg['first_500_tps']} tok/s = {tg['ratio']}x (target >= {r['target_growth']}x: "
        f"{ok(tg['ratio'] >= r['target_growth'])}); headless engine for scale: "
        f"{hg['last_500_tps']} / {hg['first_500_tps']} = {hg['ratio']}x (attention over a longer context); "
        f"the UI's own share: TUI ratio / engine ratio = {tg['ratio'] / hg['ratio'] if hg['ratio'] else 0:.3f}",
        f"UI-thread CPU per screen update: over the first 500 tokens {r['ui_cpu_ms_per_update']['first_500']} ms, "
        f"over the last 500 {r['ui_cpu_ms_per_update']['last_500']} ms -> {r['ui_cpu_ms_per_update']['ratio']}x "
        f"(near 1: the UI's cost does not grow with the length of the output)",
        f"Esc to stopped over {esc['trials']} trials: median {esc['median']} ms, p95 {esc['p95']} ms, "
        f"max {esc['max']} ms (target p95 <= {r['target_esc_p95_ms']} ms: "
        f"{ok(esc['p95'] <= r['target_esc_p95_ms'])})",
    ])


# -- the server -----------------------------------------------------------------------

def bench_server(path: Path, *, clients: int = 8, n_tokens: int = 128, reps: int = 2,
                 progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """`clients` concurrent streaming clients against one client alone, on a real
    `mullama-tui serve` started as its own process (so the clients' Python does not share
    a GIL or an OpenMP team with the server)."""
    import asyncio
    import json as _json
    import socket
    import subprocess
    import sys

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "mullama_tui.cli", "serve", str(path), "--port", str(port),
                             "--max-concurrency", str(clients), "--queue", str(clients), "--ctx", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.1)

        async def one(client: httpx.AsyncClient, seed: int) -> tuple[int, float]:
            body = {"prompt": "Write a long story about a dragon.", "max_tokens": n_tokens, "seed": seed,
                    "temperature": 0.8, "ignore_eos": True}
            t0 = time.perf_counter()
            ttft = None
            n = 0
            async with client.stream("POST", url + "/stream", json=body) as r:
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        ev = _json.loads(line[6:])
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
        proc.terminate()
        proc.wait(10)
    ttfts.sort()
    return {"benchmark": "server", "model": str(path), "clients": clients, "n_tokens": n_tokens,
            "single_tps": round(statistics.median(single), 1), "loaded_tps": round(statistics.median(loaded), 1),
            "ratio": round(statistics.median(loaded) / statistics.median(single), 2), "target": 1.5,
            "ttft_ms": {"median": round(statistics.median(ttfts) * 1000, 1),
                        "p95": round(ttfts[min(len(ttfts) - 1, int(round(0.95 * (len(ttfts) - 1))))] * 1000, 1)}}


def format_server_report(r: dict[str, Any]) -> str:
    ok = "ok" if r["ratio"] >= r["target"] else "BELOW TARGET"
    return (f"model: {r['model']}\n"
            f"1 client: {r['single_tps']} tok/s;  {r['clients']} concurrent clients x {r['n_tokens']} tokens: "
            f"{r['loaded_tps']} tok/s aggregate -> {r['ratio']}x (target >= {r['target']}x: {ok})\n"
            f"time to first token under load: median {r['ttft_ms']['median']} ms, p95 {r['ttft_ms']['p95']} ms")


# -- a remote backend -------------------------------------------------------------------

def bench_remote(engine: Any, *, n_tokens: int = 128, reps: int = 3, seed: int = 42,
                 progress: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Streaming through an OpenAI-compatible server, measured on the client (as the TUI
    sees it): time to first piece and generation tok/s, over `reps` runs."""
    runs = []
    for i in range(reps):
        progress(f"rep {i + 1}/{reps}")
        gen = engine.submit(Request(prompt=BENCH_PROMPT, mode="raw", max_tokens=n_tokens,
                                    params=SamplerParams(temperature=0.8, seed=seed)))
        run = _time_stream(0, (e for e in gen if not e.done))
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
