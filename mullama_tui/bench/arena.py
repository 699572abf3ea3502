"""`bench --arena`: two different local models side by side (the bundled model and a Q8_0
of it made here with llama.cpp's quantizer), over a fixed number of tokens each:

- both generating at once, as the arena runs them (each engine on `threads = "auto"`:
  their tuners see the other team and share the cores out), against the two run one
  after another: the target is at most 1.1x of the sum, i.e. nothing lost to two OpenMP
  teams fighting over the cores;
- the same two models in the real TUI (the compare screen, a pane on each model): its wall
  time against the headless side-by-side run, and the UI thread's share of a core;
- all of it on the idle machine and beside one busy process (the everyday case);
- the agreement pass (the second model reading the first's tokens, engine/agreement.py):
  its cost per token against decoding a token.

The runs of one repetition come in a rotated order, and the ratio is judged per
repetition (a VM's speed drifts within minutes).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ..engine.agreement import agreement
from ..engine.generation import Generation, drain_together
from ..engine.llama import quantize
from ..engine.local import LocalEngine
from ..engine.types import Request, SamplerParams
from .common import BENCH_PROMPT, Progress, ok, private_home, quiet
from .load import busy_processes

TARGET = 1.1
TARGET_UI_SHARE = 0.10


def _request(n_tokens: int) -> Request:
    return Request(prompt=BENCH_PROMPT, mode="raw", max_tokens=n_tokens, ignore_eos=True,
                   params=SamplerParams(temperature=0.8, seed=42))


def _run(engines: list[LocalEngine], n_tokens: int) -> tuple[float, list[list[int]]]:
    """All of `engines` generating at once: wall seconds from submit to the last token, and
    each one's token ids."""
    for e in engines:
        e.clear_cache()
    t0 = time.perf_counter()
    gens: list[Generation] = [e.submit(_request(n_tokens)) for e in engines]
    ids: list[list[int]] = [[] for _ in gens]

    def collect(i: int, events: list[Any]) -> None:
        ids[i] += [ev.token_id for ev in events if not ev.done]

    drain_together(gens, interval=0.02, on_events=collect)
    return time.perf_counter() - t0, ids


def _side_by_side(a: LocalEngine, b: LocalEngine, n_tokens: int, reps: int, progress: Progress,
                  label: str) -> tuple[dict[str, list[float]], list[float], list[int]]:
    """`reps` repetitions of: a then b one after another, and both at once (the order
    rotated); each repetition's together / sum."""
    rows: dict[str, list[float]] = {"a": [], "b": [], "together": []}
    ratios: list[float] = []
    tokens: list[int] = []
    for rep in range(reps):
        for kind in (["sequential", "together"] if rep % 2 == 0 else ["together", "sequential"]):
            progress(f"{label}: rep {rep + 1}/{reps}: {kind}")
            if kind == "sequential":
                ta, ids = _run([a], n_tokens)
                tb, _ = _run([b], n_tokens)
                rows["a"].append(ta)
                rows["b"].append(tb)
                tokens = ids[0]
            else:
                rows["together"].append(_run([a, b], n_tokens)[0])
        ratios.append(rows["together"][-1] / (rows["a"][-1] + rows["b"][-1]))
    return rows, ratios, tokens


def _through_tui(path: Path, second: Path, n_tokens: int) -> dict[str, float]:
    """The compare screen with a pane on each model, `n_tokens` each: wall seconds from
    the prompt to both panes done, and the UI thread's CPU over it (read on that thread)."""
    from .ui import _save_settings, _timed_app

    async def go() -> dict[str, float]:
        _save_settings(max_tokens=n_tokens, mode="raw", seed=5, cursor_blink=False, temperature=0.8)
        app = _timed_app(compare=([0.8, 0.8], None))
        async with app.run_test(size=(160, 45)):
            while app.engine is None:
                await asyncio.sleep(0.05)
            screen = app.screen
            screen.panes()[1].set_model(str(second), "Q8_0")
            await asyncio.to_thread(app.pane_engine, str(second))  # loaded before the clock starts
            app.reset_stamps()
            cpu0, t0 = time.thread_time(), time.perf_counter()
            await screen.run_prompt(BENCH_PROMPT)
            await asyncio.wait_for(app.finished.wait(), 900)
            wall, cpu = app.t_done - t0, time.thread_time() - cpu0
            tokens = sum(p.stats.generated_tokens for p in screen.panes() if p.stats)
            screen.workers.cancel_group(screen, "agreement")
        return {"seconds": wall, "tokens": tokens, "ui_share": cpu / wall}

    with private_home():
        return asyncio.run(go())


def bench_arena(path: Path, *, n_tokens: int = 128, reps: int = 3, loads: tuple[int, ...] = (0, 1),
                progress: Progress = quiet) -> dict[str, Any]:
    per_load: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="mullama-arena-") as tmp:
        progress("quantizing a Q8_0 of the model (llama.cpp's quantizer)")
        second = quantize(path, Path(tmp) / "second-Q8_0.gguf", "Q8_0")
        a = LocalEngine(path, n_ctx=1024, n_parallel=1)
        b = LocalEngine(second, n_ctx=1024, n_parallel=1)
        try:
            for e in (a, b):  # warm-up: the first decode allocates
                _run([e], 8)
            tokens: list[int] = []
            for load in loads:
                label = f"load {load}"
                with busy_processes(load):
                    rows, ratios, tokens = _side_by_side(a, b, n_tokens, reps, progress, label)
                    chose = [a.thread_choice().label, b.thread_choice().label]
                    progress(f"{label}: the compare screen, a pane on each model")
                    tui = _through_tui(path, second, n_tokens)
                together = statistics.median(rows["together"])
                per_load.append({
                    "load": load, "seconds": {k: [round(x, 3) for x in v] for k, v in rows.items()},
                    "threads_after": chose, "together_of_sum": [round(r, 3) for r in ratios],
                    "ratio": round(statistics.median(ratios), 3),
                    "tui": {"seconds": round(tui["seconds"], 3), "tokens": int(tui["tokens"]),
                            "of_headless": round(tui["seconds"] / together, 3),
                            "of_sum": round(tui["seconds"] / (statistics.median(rows["a"])
                                                              + statistics.median(rows["b"])), 3),
                            "ui_share": round(tui["ui_share"], 3)}})
            progress("agreement pass")
            prompt = a.prompt_tokens(_request(n_tokens))
            t0 = time.perf_counter()
            found = agreement(a.model, b.model, prompt, tokens)
            agree_s = time.perf_counter() - t0
        finally:
            a.close()
            b.close()
    idle = per_load[0]["seconds"]
    per_token_decode = (statistics.median(idle["a"]) + statistics.median(idle["b"])) / (2 * n_tokens)
    per_token_agree = agree_s / max(1, len(tokens))
    return {"benchmark": "arena", "model": str(path), "second": "Q8_0 of it", "n_tokens": n_tokens, "reps": reps,
            "loads": per_load, "ratio": max(x["ratio"] for x in per_load), "target": TARGET,
            "ui_share": max(x["tui"]["ui_share"] for x in per_load), "target_ui_share": TARGET_UI_SHARE,
            "prompt_tokens": len(prompt),
            "agreement": {"seconds": round(agree_s, 3), "per_token_ms": round(per_token_agree * 1000, 2),
                          "of_decode": round(per_token_agree / per_token_decode, 3),
                          "summary": found.summary("the model", "its Q8_0")}}


def format_arena_report(r: dict[str, Any]) -> str:
    n = r["n_tokens"]
    lines = [f"model: {r['model']} and a {r['second']}; {n} tokens each (end-of-text cannot stop a run); "
             f"{r['reps']} repetitions per load, order alternated; threads auto"]
    for x in r["loads"]:
        s, tui = x["seconds"], x["tui"]
        tps = {k: [round(n * (2 if k == "together" else 1) / t, 1) for t in v] for k, v in s.items()}
        lines += [
            f"load {x['load']} ({x['load']} busy process{'es' if x['load'] != 1 else ''} beside it):",
            f"  one after another: model {s['a']} s + Q8_0 {s['b']} s  ({tps['a']} and {tps['b']} tok/s)",
            f"  side by side, both at once: {s['together']} s  ({tps['together']} tok/s together); the engines "
            f"ended on {', '.join(x['threads_after'])}",
            f"  side by side / one after another, per repetition: {x['together_of_sum']} -> median {x['ratio']}x "
            f"(target <= {r['target']}x: {ok(x['ratio'] <= r['target'])})",
            f"  the compare screen, a pane on each model: {tui['seconds']} s for {tui['tokens']} tokens = "
            f"{tui['of_headless']}x of the headless side-by-side run, {tui['of_sum']}x of the two one after "
            f"another (target <= {r['target']}x: {ok(tui['of_sum'] <= r['target'])}); "
            f"UI thread {tui['ui_share'] * 100:.1f}% of a core "
            f"(target < {r['target_ui_share'] * 100:.0f}%: {ok(tui['ui_share'] < r['target_ui_share'])})"]
    lines.append(
        f"agreement pass (both models read the {r['prompt_tokens']}-token prompt and the {n} tokens, one "
        f"batch each): {r['agreement']['seconds']} s, {r['agreement']['per_token_ms']} ms a token = "
        f"{r['agreement']['of_decode']}x of decoding one ({r['agreement']['summary']})")
    return "\n".join(lines)
