"""`mullama-tui bench --load`: speed when other programs keep cores busy.

At each load (0, 1 .. cores busy processes that this benchmark starts, bounded in time
by `timeout` and always stopped), one engine generates a fixed number of tokens and
processes a fixed prompt at every fixed thread count and at auto, interleaved (the
order rotates each repetition, so drift touches every setting alike). It prints auto
over the best fixed count per load. Then at load 1: the TUI (raw and chat, auto)
against the headless engine at the best fixed count of that load, in adjacent pairs,
and Esc-to-stopped through the TUI.

The busy processes are `sh -c 'while :; do :; done'`, what a compile or an indexer
looks like to the scheduler; they run at normal priority, as such programs do.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..engine.local import LocalEngine
from ..engine.threads import cpu_cores
from ..engine.types import Request, SamplerParams
from .common import BENCH_PROMPT, Progress, engine_run, ok, paired_ratios, percentile, private_home, quiet

TARGET_AUTO = 0.9  # auto / best fixed, at every load
TARGET_AUTO_IDLE = 0.97
TARGET_TUI = 0.8  # TUI at load 1 / headless best fixed at load 1
TARGET_ESC_P95_MS = 50


@contextlib.contextmanager
def busy_processes(n: int, limit_s: float = 900.0) -> Iterator[list[int]]:
    """`n` processes that spin on a core each, for at most `limit_s` seconds (they end
    by themselves even if this process is killed), stopped when the block ends."""
    spin = ["sh", "-c", "while :; do :; done"]
    cmd = (["timeout", str(int(limit_s))] if shutil.which("timeout") else []) + spin
    # each in its own process group: killing `timeout` alone would leave its shell spinning
    procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
             for _ in range(n)]
    try:
        if procs:
            time.sleep(0.3)  # let the scheduler place them before anything is timed
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait(10)


def prompt_of(engine: LocalEngine, n_tokens: int) -> str:
    """A raw prompt of about `n_tokens` tokens (the bench prompt repeated and cut)."""
    model = engine.model
    toks: list[int] = []
    while len(toks) < n_tokens:
        toks += model.tokenize(BENCH_PROMPT, add_special=False)
    return model.detokenize(toks[:n_tokens - 1])


def tg_run(engine: LocalEngine, n_tokens: int, params: SamplerParams, limit_s: float) -> tuple[float, int]:
    """Generation tok/s over `n_tokens` (end-of-text cannot stop it), from the first token
    to the last; a run still going after `limit_s` seconds is cut there (a fixed thread
    count that starves can take seconds a token) and rated over what it made. Returns the
    rate and the tokens it was measured over."""
    engine.clear_cache()
    gen = engine.submit(Request(prompt=BENCH_PROMPT, mode="raw", max_tokens=n_tokens, ignore_eos=True,
                                params=params))
    first = last = 0.0
    n = 0
    for ev in gen:
        if ev.done:
            break
        last = time.perf_counter()
        n += 1
        if n == 1:
            first = last
        elif last - first > limit_s:
            gen.cancel()
    gen.wait(30)
    return ((n - 1) / (last - first) if n > 1 and last > first else 0.0), n


def pp_run(engine: LocalEngine, prompt: str, limit_s: float = 1e9) -> float:
    """Prompt processing tok/s of `prompt`, nothing reused from the KV cache; after
    `limit_s` seconds rated over the part processed so far."""
    engine.clear_cache()
    gen = engine.submit(Request(prompt=prompt, mode="raw", max_tokens=1, ignore_eos=True,
                                params=SamplerParams(temperature=0.0)))
    if not gen.wait(limit_s):
        done, elapsed = gen.prompt_done, time.perf_counter() - gen.t_submit
        gen.cancel()
        gen.wait(30)
        return done / elapsed
    for _ in gen:
        pass
    assert gen.stats is not None
    return gen.stats.prompt_tps


def _label(n: int | None) -> str:
    return "auto" if n is None else str(n)


def bench_engine_load(engine: LocalEngine, loads: list[int], *, n_tokens: int, pp_tokens: int, reps: int,
                      limit_s: float, progress: Progress) -> list[dict[str, Any]]:
    """Generation and prompt tok/s at each load, for each fixed count and auto."""
    cores = engine.thread_choice().cores
    settings: list[int | None] = [*range(1, cores + 1), None]
    params = SamplerParams(temperature=0.8, seed=42)
    prompt = prompt_of(engine, pp_tokens)
    rows = []
    for load in loads:
        tg: dict[str, list[float]] = {_label(s): [] for s in settings}
        pp: dict[str, list[float]] = {_label(s): [] for s in settings}
        cut: dict[str, int] = {}
        chosen: list[str] = []
        for rep in range(reps):
            order = settings[rep % len(settings):] + settings[:rep % len(settings)]
            with busy_processes(load, limit_s=len(settings) * 3 * limit_s + 60):
                for s in order:
                    progress(f"load {load}: threads {_label(s)} ({rep + 1}/{reps})")
                    engine.set_threads(s)
                    rate, made = tg_run(engine, n_tokens, params, limit_s)
                    tg[_label(s)].append(rate)
                    if made < n_tokens:
                        cut[_label(s)] = made
                    pp[_label(s)].append(pp_run(engine, prompt, limit_s))
                    if s is None:
                        chosen.append(engine.thread_choice().label)
        engine.set_threads(None)
        med_tg = {k: round(statistics.median(v), 1) for k, v in tg.items()}
        med_pp = {k: round(statistics.median(v), 1) for k, v in pp.items()}
        fixed_tg = {k: v for k, v in med_tg.items() if k != "auto"}
        fixed_pp = {k: v for k, v in med_pp.items() if k != "auto"}
        best_tg = max(fixed_tg, key=lambda k: fixed_tg[k])
        best_pp = max(fixed_pp, key=lambda k: fixed_pp[k])
        # judged on the median of each repetition's own ratio (its runs are seconds apart), as
        # the VM's speed drifts by a third within minutes; the ratio of medians is kept beside it
        paired_tg = paired_ratios(tg["auto"], tg[best_tg])
        paired_pp = paired_ratios(pp["auto"], pp[best_pp])
        rows.append({"load": load, "tg_tps": med_tg, "pp_tps": med_pp, "best_fixed_tg": int(best_tg),
                     "best_fixed_pp": int(best_pp), "auto_chose": chosen, "cut": cut,
                     "tg_runs": {k: [round(x, 1) for x in v] for k, v in tg.items()},
                     "paired_tg": paired_tg, "paired_pp": paired_pp,
                     "auto_of_best_tg": round(statistics.median(paired_tg), 3) if paired_tg else 0.0,
                     "auto_of_best_pp": round(statistics.median(paired_pp), 3) if paired_pp else 0.0,
                     "medians_ratio_tg": round(med_tg["auto"] / fixed_tg[best_tg], 3) if fixed_tg[best_tg] else 0.0})
    return rows


def bench_tui_load(path: Path, best_fixed: int, *, load: int, n_tokens: int, reps: int, esc_trials: int,
                   progress: Progress) -> dict[str, Any]:
    """At `load` busy processes: the TUI (auto threads) against the headless engine at
    `best_fixed` threads, one engine read both ways in adjacent pairs, raw and chat; then
    Esc-to-stopped through the TUI."""
    from ..tui.app import MAX_PANES
    from ..tui.widgets.prompt import PromptInput
    from .ui import _generate_headless, _interleaved, _ready, _save_settings, _send, _timed_app, esc_latencies

    async def through_ui(app: Any, pilot: Any) -> tuple[float, float]:
        app.engine.set_threads(None)
        await app.chat.action_new_conversation()
        cpu0 = time.thread_time()
        t0 = await _send(app, pilot, app.chat.query_one(PromptInput))
        await asyncio.wait_for(app.finished.wait(), 900)
        share = (time.thread_time() - cpu0) / (app.t_done - t0)
        return app.chat.last_stats.generated_tokens / (app.t_done - t0), share

    def headless(engine: LocalEngine, mode: str) -> float:
        engine.set_threads(best_fixed)
        try:
            return _generate_headless(engine, n_tokens, mode)[0]
        finally:
            engine.set_threads(None)

    async def pairs(mode: str) -> tuple[list[float], list[float], list[float]]:
        _save_settings(mode=mode, max_tokens=n_tokens)
        engine = LocalEngine(path, n_ctx=4096, n_parallel=MAX_PANES)
        app = _timed_app(engine=engine)  # the app closes it
        async with app.run_test(size=(120, 40)) as pilot:
            await _ready(app)
            return await _interleaved(reps, lambda: headless(engine, mode), lambda: through_ui(app, pilot),
                                      (f"load {load}, {mode}: headless engine, {best_fixed} threads",
                                       f"load {load}, {mode}: TUI, auto"), progress)

    modes: dict[str, Any] = {}
    with private_home(), busy_processes(load, limit_s=1800):
        _save_settings(seed=5, n_ctx=4096, cursor_blink=False)
        for mode in ("raw", "chat"):
            head, tui, shares = asyncio.run(pairs(mode))
            ratios = paired_ratios(tui, head)
            modes[mode] = {"headless_runs": [round(x, 1) for x in head], "tui_runs": [round(x, 1) for x in tui],
                           "paired_ratios": ratios, "ratio": statistics.median(ratios),
                           "ui_cpu_share": round(statistics.median(shares), 3)}
        progress(f"load {load}: Esc latency, {esc_trials} trials")
        _save_settings(mode="chat")
        lat = sorted(asyncio.run(esc_latencies(esc_trials, first_tokens_within=120)))
    return {"load": load, "best_fixed": best_fixed, "n_tokens": n_tokens, "modes": modes,
            "esc_ms": {"median": round(statistics.median(lat) * 1000, 1),
                       "p95": round(percentile(lat, 0.95) * 1000, 1), "max": round(lat[-1] * 1000, 1),
                       "trials": len(lat)}}


def bench_load(path: Path, *, loads: list[int] | None = None, n_tokens: int = 128, pp_tokens: int = 256,
               reps: int = 3, tui: bool = True, tui_tokens: int = 256, esc_trials: int = 10, limit_s: float = 15.0,
               progress: Progress = quiet) -> dict[str, Any]:
    """`limit_s`: a run of a fixed thread count that is still going after this long is cut
    and rated over what it made (said in the report)."""
    cores = cpu_cores()
    loads = list(range(cores + 1)) if loads is None else loads
    with LocalEngine(path, n_ctx=2048, n_parallel=1) as engine:
        engine_run(engine, BENCH_PROMPT, 8, SamplerParams(seed=1))  # warm-up: first decode allocates
        rows = bench_engine_load(engine, loads, n_tokens=n_tokens, pp_tokens=pp_tokens, reps=reps,
                                 limit_s=limit_s, progress=progress)
    report: dict[str, Any] = {"benchmark": "load", "model": str(path), "cores": cores, "n_tokens": n_tokens,
                              "pp_tokens": pp_tokens, "reps": reps, "limit_s": limit_s, "engine": rows,
                              "targets": {"auto_of_best": TARGET_AUTO, "auto_of_best_idle": TARGET_AUTO_IDLE,
                                          "tui_of_best_fixed": TARGET_TUI, "esc_p95_ms": TARGET_ESC_P95_MS}}
    if tui and min(1, cores) in loads:
        load1 = next(r for r in rows if r["load"] == min(1, cores))
        report["tui"] = bench_tui_load(path, load1["best_fixed_tg"], load=load1["load"], n_tokens=tui_tokens,
                                       reps=reps, esc_trials=esc_trials, progress=progress)
    return report


def format_load_report(r: dict[str, Any]) -> str:
    t = r["targets"]
    lines = [f"model: {r['model']}  cores: {r['cores']}  generation: {r['n_tokens']} tokens each (end-of-text "
             f"cannot stop a run)  prompt: {r['pp_tokens']} tokens  {r['reps']} repetitions, each running every "
             f"setting once (the order rotated); auto / best: the median of the repetitions' own ratios",
             "load = busy processes beside it (sh -c 'while :; do :; done', one core each)"]
    for row in r["engine"]:
        target = t["auto_of_best_idle"] if row["load"] == 0 else t["auto_of_best"]
        tg = "  ".join(f"{k}: {v}" for k, v in row["tg_tps"].items())
        pp = "  ".join(f"{k}: {v}" for k, v in row["pp_tps"].items())
        lines.append(f"load {row['load']}: generation tok/s by threads  {tg}  -> auto / best fixed "
                     f"({row['best_fixed_tg']}) {row['auto_of_best_tg']}x (target >= {target}x: "
                     f"{ok(row['auto_of_best_tg'] >= target)})")
        lines.append(f"        prompt tok/s by threads      {pp}  -> auto / best fixed ({row['best_fixed_pp']}) "
                     f"{row['auto_of_best_pp']}x (target >= {t['auto_of_best']}x: "
                     f"{ok(row['auto_of_best_pp'] >= t['auto_of_best'])})")
        lines.append("        generation runs: " + "  ".join(f"{k}: {v}" for k, v in row["tg_runs"].items()))
        if "paired_tg" in row:
            lines.append(f"        auto / best fixed in each repetition: generation {row['paired_tg']}, prompt "
                         f"{row['paired_pp']} (ratio of the medians: {row['medians_ratio_tg']}x)")
        lines.append(f"        auto ended its runs on: {', '.join(row['auto_chose'])}")
        if row["cut"]:
            lines.append("        cut at " + f"{r['limit_s']:.0f} s and rated over what they made (starving): "
                         + ", ".join(f"threads {k}: {v} tokens" for k, v in row["cut"].items()))
    if "tui" in r:
        u = r["tui"]
        for mode, m in u["modes"].items():
            lines.append(f"TUI at load {u['load']}, {mode}, {u['n_tokens']} tokens: TUI (auto) {m['tui_runs']} tok/s, "
                         f"headless engine at {u['best_fixed']} threads {m['headless_runs']}; paired "
                         f"{m['paired_ratios']} median {m['ratio']}x (target >= {t['tui_of_best_fixed']}x: "
                         f"{ok(m['ratio'] >= t['tui_of_best_fixed'])}); "
                         f"UI thread {m['ui_cpu_share'] * 100:.1f}% of a core")
        esc = u["esc_ms"]
        lines.append(f"Esc to stopped at load {u['load']} over {esc['trials']} trials: median {esc['median']} ms, "
                     f"p95 {esc['p95']} ms, max {esc['max']} ms (target p95 <= {t['esc_p95_ms']} ms: "
                     f"{ok(esc['p95'] <= t['esc_p95_ms'])})")
    return "\n".join(lines)
