"""`mullama-tui bench --insight`: what token insight costs. The engine with `logprobs=5`
against the same generations without (interleaved, fixed token counts), and the TUI with
the token view on against it off, end to end."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

from ..engine.local import LocalEngine
from ..engine.types import Request, SamplerParams
from .common import BENCH_PROMPT, Progress, ok, private_home, quiet, time_stream


def _engine_tps(engine: LocalEngine, n_tokens: int, logprobs: int) -> float:
    engine.clear_cache()
    gen = engine.submit(Request(prompt=BENCH_PROMPT, mode="raw", max_tokens=n_tokens, ignore_eos=True,
                                logprobs=logprobs, params=SamplerParams(seed=42)))
    return time_stream(len(gen.prompt_tokens), (e for e in gen if not e.done)).tg_tps


def bench_insight(path: Path, *, n_tokens: int = 256, ui_tokens: int = 600, reps: int = 3,
                  progress: Progress = quiet) -> dict[str, Any]:
    from .ui import UI_PROMPT, _ready, _save_settings, _timed_app

    off, on = [], []
    with LocalEngine(path, n_ctx=2048, n_parallel=1) as engine:
        _engine_tps(engine, 8, 5)  # warm-up
        for i in range(reps):
            progress(f"engine, logprobs off then 5 ({i + 1}/{reps})")
            off.append(_engine_tps(engine, n_tokens, 0))
            on.append(_engine_tps(engine, n_tokens, 5))

    async def tui(token_view: bool) -> float:
        from ..tui.widgets.prompt import PromptInput

        _save_settings(token_view=token_view, max_tokens=ui_tokens)
        app = _timed_app()
        async with app.run_test(size=(130, 40)) as pilot:
            await _ready(app)
            app.reset_stamps()
            prompt = app.chat.query_one(PromptInput)
            prompt.load_text(UI_PROMPT)
            prompt.focus()
            t0 = time.perf_counter()
            await pilot.press("enter")
            await asyncio.wait_for(app.finished.wait(), 600)
            return float(app.chat.last_stats.generated_tokens / (app.t_done - t0))

    ui_off, ui_on = [], []
    with private_home():
        _save_settings(mode="raw", seed=5, cursor_blink=False)
        for i in range(reps):
            progress(f"TUI, token view off then on ({i + 1}/{reps})")
            ui_off.append(asyncio.run(tui(False)))
            ui_on.append(asyncio.run(tui(True)))
    med = statistics.median
    return {"benchmark": "insight", "model": str(path), "n_tokens": n_tokens, "ui_tokens": ui_tokens,
            "engine_off": [round(x, 1) for x in off], "engine_on": [round(x, 1) for x in on],
            "engine_ratio": round(med(on) / med(off), 3),
            "tui_off": [round(x, 1) for x in ui_off], "tui_on": [round(x, 1) for x in ui_on],
            "tui_ratio": round(med(ui_on) / med(ui_off), 3), "target": 0.9}


def format_insight_report(r: dict[str, Any]) -> str:
    return "\n".join([
        f"model: {r['model']}",
        f"engine, {r['n_tokens']} tokens, logprobs=5 vs off (interleaved): {r['engine_on']} vs {r['engine_off']} "
        f"tok/s -> {r['engine_ratio']}x (target >= {r['target']}x: {ok(r['engine_ratio'] >= r['target'])})",
        f"TUI end to end, {r['ui_tokens']} tokens, token view on vs off: {r['tui_on']} vs {r['tui_off']} "
        f"tok/s -> {r['tui_ratio']}x (target >= {r['target']}x: {ok(r['tui_ratio'] >= r['target'])})",
    ])
