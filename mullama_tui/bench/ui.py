"""`mullama-tui bench --ui [--compare]`: the real TUI (Textual's headless `run_test`) against
the same generations from the headless engine, interleaved, on the same machine.

Main screen: end-to-end tok/s both ways and their ratio, the cost growth over a long
reply, UI-thread CPU per screen update, Esc-to-stopped latency.
Compare screen: 3 panes in one batch, aggregate tok/s both ways and their ratio, the UI
thread's share of a core while streaming, Esc-to-all-stopped latency.

The UI thread's CPU is `time.thread_time()` read on the UI thread itself: on 2 cores
every millisecond of it is taken from llama.cpp's two compute threads.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..engine.generation import drain_together
from ..engine.local import LocalEngine
from ..engine.types import Request, SamplerParams
from .common import Progress, ok, paired_ratios, percentile, private_home, quiet

UI_PROMPT = "Write a very long story about a lighthouse keeper and the sea, with many chapters."
COMPARE_TEMPS = (0.1, 0.7, 1.2)
Stamps = list[tuple[float, int]]


def _arrivals_of(stamps: Stamps, lo: int, hi: int) -> tuple[int, int, int, int] | None:
    """In `stamps` of (clock, tokens in this batch): the indices of the batches that
    brought token `lo` and token `hi`, with the cumulative counts there; None if the
    stamps do not reach `hi` or both tokens came in one batch."""
    total, first, n_lo = 0, None, 0
    for i, (_, n) in enumerate(stamps):
        total += n
        if first is None and total >= lo:
            first, n_lo = i, total
        if total >= hi:
            return (first, i, n_lo, total) if first is not None and i > first else None
    return None


def _rate_between(stamps: Stamps, lo: int, hi: int) -> float:
    """tok/s between the arrival of token `lo` and token `hi` (cumulative counts)."""
    span = _arrivals_of(stamps, lo, hi)
    if span is None:
        return 0.0
    i, j, n_lo, n_hi = span
    dt = stamps[j][0] - stamps[i][0]
    return (n_hi - n_lo) / dt if dt > 0 else 0.0


def _engine(path: Path, n_ctx: int) -> LocalEngine:
    """The engine configured exactly as the TUI configures it (context size, sequence
    slots), so the difference is the UI's cost and nothing else."""
    from ..tui.app import MAX_PANES

    return LocalEngine(path, n_ctx=n_ctx, n_parallel=MAX_PANES)


def _request(mode: str, n_tokens: int, temperature: float = 0.8) -> Request:
    return Request(prompt=UI_PROMPT, mode=mode, max_tokens=n_tokens, ignore_eos=True,  # type: ignore[arg-type]
                   params=SamplerParams(seed=5, temperature=temperature))


def _headless(path: Path, n_tokens: int, n_ctx: int, mode: str) -> tuple[float, Stamps]:
    with _engine(path, n_ctx) as engine:
        return _generate_headless(engine, n_tokens, mode)


def _generate_headless(engine: LocalEngine, n_tokens: int, mode: str) -> tuple[float, Stamps]:
    """One generation read event by event: tok/s from submit to the last token, and when
    each token arrived."""
    engine.clear_cache()  # as the TUI's new conversation does: both prefill the whole prompt
    gen = engine.submit(_request(mode, n_tokens))
    stamps = [(time.perf_counter(), 0 if e.done else 1) for e in gen]
    return n_tokens / (stamps[-1][0] - gen.t_submit), stamps


def _compare_batch(engine: LocalEngine, n_tokens: int, mode: str) -> float:
    """Aggregate tok/s of the compare panes' requests, batched, read as the screen reads them."""
    engine.clear_cache()  # as the screen's runs: the prompt prefilled (once, shared by the panes)
    t0 = time.perf_counter()
    gens = [engine.submit(_request(mode, n_tokens, t)) for t in COMPARE_TEMPS]
    drain_together(gens, interval=0.2)
    return sum(g.stats.generated_tokens for g in gens if g.stats) / (time.perf_counter() - t0)


async def _interleaved(reps: int, headless: Callable[[], float],
                       through_ui: Callable[[], Awaitable[tuple[float, float]]],
                       labels: tuple[str, str], progress: Progress) -> tuple[list[float], list[float], list[float]]:
    """`reps` pairs of runs of one engine, read headless (in a thread; the app is idle) and
    through the app that holds it, in the order AB BA AB ...: adjacent runs, and neither
    side always first, so drift touches both alike. (Two engines loaded side by side slow
    each other: ~100 and ~76 tok/s against ~120.) Returns headless tok/s, UI tok/s and
    the UI thread's share of a core in each UI run."""
    head_runs, ui_runs, shares = [], [], []
    for i in range(reps):
        for side in ("headless", "ui") if i % 2 == 0 else ("ui", "headless"):
            progress(f"{labels[side == 'ui']} ({i + 1}/{reps})")
            if side == "headless":
                head_runs.append(await asyncio.to_thread(headless))
            else:
                tps, share = await through_ui()
                ui_runs.append(tps)
                shares.append(share)
    return head_runs, ui_runs, shares


def _timed_app(**kwargs: Any) -> Any:
    """The real app with stamps on what reaches the screens; the harness waits on events,
    never polls (polling would itself steal CPU from decoding on a 2-core machine)."""
    from ..tui.app import MullamaApp
    from ..tui.messages import GenerationFinished, TokenBatch
    from ..tui.screens.chat import ChatScreen
    from ..tui.screens.compare import CompareScreen

    class TimedChat(ChatScreen):
        async def on_token_batch(self, msg: TokenBatch) -> None:
            app = self.app
            app.stamps.append((time.perf_counter(), msg.n_tokens))  # type: ignore[attr-defined]
            app.cpu_stamps.append((time.thread_time(), msg.n_tokens))  # type: ignore[attr-defined]
            await super().on_token_batch(msg)
            if sum(n for _, n in app.stamps) > 10:  # type: ignore[attr-defined]
                app.tokens_seen.set()  # type: ignore[attr-defined]

        def action_cancel(self) -> None:
            self.app.t_cancel = time.perf_counter()  # type: ignore[attr-defined]
            super().action_cancel()

        async def on_generation_finished(self, msg: GenerationFinished) -> None:
            app = self.app
            app.t_done = app.t_done or time.perf_counter()  # type: ignore[attr-defined]
            await super().on_generation_finished(msg)
            app.finished.set()  # type: ignore[attr-defined]

    class TimedCompare(CompareScreen):
        async def on_token_batch(self, msg: TokenBatch) -> None:
            app = self.app
            n = msg.n_tokens
            app.stamps.append((time.perf_counter(), n))  # type: ignore[attr-defined]
            app.cpu_stamps.append((time.thread_time(), n))  # type: ignore[attr-defined]
            await super().on_token_batch(msg)
            if sum(s for _, s in app.stamps) > 30:  # type: ignore[attr-defined]
                app.tokens_seen.set()  # type: ignore[attr-defined]
            if not self.running and all(p.done for p in self.panes()):
                app.t_done = app.t_done or time.perf_counter()  # type: ignore[attr-defined]
                app.finished.set()  # type: ignore[attr-defined]

        def action_cancel_all(self) -> None:
            self.app.t_cancel = time.perf_counter()  # type: ignore[attr-defined]
            super().action_cancel_all()

    class TimedApp(MullamaApp):
        def __init__(self) -> None:
            super().__init__(ignore_eos=True, **kwargs)
            self._chat = TimedChat()
            self.compare_screen_class = TimedCompare
            self.reset_stamps()

        def reset_stamps(self) -> None:
            self.stamps: Stamps = []
            self.cpu_stamps: Stamps = []  # (UI-thread CPU seconds, tokens)
            self.finished = asyncio.Event()
            self.tokens_seen = asyncio.Event()
            self.t_cancel = self.t_done = 0.0

    return TimedApp()


def _save_settings(**values: Any) -> None:
    from ..config import Settings

    s = Settings.load()
    for k, v in values.items():
        setattr(s, k, v)
    s.save()


async def _ready(app: Any) -> None:
    while app.engine is None:
        await asyncio.sleep(0.05)


async def _send(app: Any, pilot: Any, prompt_widget: Any) -> float:
    app.reset_stamps()
    prompt_widget.load_text(UI_PROMPT)
    prompt_widget.focus()
    t0 = time.perf_counter()
    await pilot.press("enter")
    return t0


async def esc_latencies(trials: int, first_tokens_within: float = 60.0) -> list[float]:
    """Esc-to-stopped on the main screen of a fresh app, `trials` times: a long reply
    is sent, Esc pressed once tokens flow, and the time to the generation's end taken."""
    from ..tui.widgets.prompt import PromptInput

    _save_settings(max_tokens=2000)
    app = _timed_app()
    out = []
    async with app.run_test(size=(120, 40)) as pilot:
        await _ready(app)
        for _ in range(trials):
            await _send(app, pilot, app.chat.query_one(PromptInput))
            await asyncio.wait_for(app.tokens_seen.wait(), first_tokens_within)
            await pilot.press("escape")
            await asyncio.wait_for(app.finished.wait(), 10)
            out.append(app.t_done - app.t_cancel)
            await app.chat.action_new_conversation()
    return out


def bench_ui(path: Path, *, n_tokens: int = 1000, long_tokens: int = 4000, esc_trials: int = 20,
             mode: str = "chat", reps: int = 3, progress: Progress = quiet) -> dict[str, Any]:
    """The main screen: headless engine vs the same generation through the real TUI.
    The end-to-end pair is run `reps` times, interleaved (engine TUI, TUI engine, ...),
    and the medians are compared, so a noisy neighbour hits both sides alike."""
    from ..tui.widgets.prompt import PromptInput

    n_ctx = max(4096, long_tokens + 512)

    async def tui_run(max_tokens: int) -> tuple[float, Stamps, Stamps, float]:
        _save_settings(max_tokens=max_tokens)
        app = _timed_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await _ready(app)
            return await tui_generation(app, pilot)

    async def tui_generation(app: Any, pilot: Any) -> tuple[float, Stamps, Stamps, float]:
        await app.chat.action_new_conversation()
        cpu0 = time.thread_time()
        t0 = await _send(app, pilot, app.chat.query_one(PromptInput))
        await asyncio.wait_for(app.finished.wait(), 900)
        share = (time.thread_time() - cpu0) / (app.t_done - t0)
        tps = app.chat.last_stats.generated_tokens / (app.t_done - t0)
        return tps, app.stamps, app.cpu_stamps, share

    async def pairs() -> tuple[list[float], list[float], list[float]]:
        _save_settings(max_tokens=n_tokens)
        engine = _engine(path, n_ctx)
        app = _timed_app(engine=engine)  # the app closes it
        async with app.run_test(size=(120, 40)) as pilot:
            await _ready(app)

            async def through_ui() -> tuple[float, float]:
                tps, _, _, share = await tui_generation(app, pilot)
                return tps, share

            return await _interleaved(reps, lambda: _generate_headless(engine, n_tokens, mode)[0], through_ui,
                                      (f"headless engine, {n_tokens} tokens", f"TUI, {n_tokens} tokens"), progress)

    with private_home():
        _save_settings(mode=mode, seed=5, n_ctx=n_ctx, cursor_blink=False)
        head_runs, tui_runs, shares = asyncio.run(pairs())
        head_stamps: Stamps = []
        tui_stamps: Stamps = []
        tui_cpu: Stamps = []
        if long_tokens:  # 0: no growth figures (a quick run)
            progress(f"headless engine, {long_tokens} tokens")
            _, head_stamps = _headless(path, long_tokens, n_ctx, mode)
            progress(f"TUI, {long_tokens} tokens")
            _, tui_stamps, tui_cpu, _ = asyncio.run(tui_run(long_tokens))
        progress(f"Esc latency, {esc_trials} trials")
        lat = sorted(asyncio.run(esc_latencies(esc_trials)))
    head_tps, tui_tps = statistics.median(head_runs), statistics.median(tui_runs)

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

    def growth(stamps: Stamps) -> dict[str, float]:
        first = _rate_between(stamps, 1, 500)
        last = _rate_between(stamps, long_tokens - 500, long_tokens)
        return {"first_500_tps": round(first, 1), "last_500_tps": round(last, 1),
                "ratio": round(last / first, 3) if first else 0.0}

    return {"benchmark": "ui", "screen": "main", "model": str(path), "mode": mode, "n_tokens": n_tokens,
            "headless_tps": round(head_tps, 1), "tui_tps": round(tui_tps, 1),
            "headless_runs": [round(x, 1) for x in head_runs], "tui_runs": [round(x, 1) for x in tui_runs],
            "ratio_of_medians": round(tui_tps / head_tps, 3), "paired_ratios": paired_ratios(tui_runs, head_runs),
            "ratio_e2e": statistics.median(paired_ratios(tui_runs, head_runs)), "target_e2e": 0.95,
            "ui_cpu_share": round(statistics.median(shares), 3),
            "long_tokens": long_tokens, "tui_growth": growth(tui_stamps),
            "headless_growth": growth(head_stamps),
            "ui_cpu_ms_per_update": {"first_500": cost_first, "last_500": cost_last,
                                    "ratio": round(cost_last / cost_first, 3) if cost_first else 0.0},
            "esc_ms": {"median": round(statistics.median(lat) * 1000, 1),
                       "p95": round(percentile(lat, 0.95) * 1000, 1), "max": round(lat[-1] * 1000, 1),
                       "trials": len(lat)}, "target_esc_p95_ms": 50}


def format_ui_report(r: dict[str, Any]) -> str:
    if r.get("screen") == "compare":
        return format_compare_report(r)
    tg, hg, esc = r["tui_growth"], r["headless_growth"], r["esc_ms"]
    return "\n".join([
        f"model: {r['model']}  screen: main  mode: {r['mode']}",
        f"end-to-end, {r['n_tokens']} tokens, median of {len(r['tui_runs'])} interleaved runs: headless engine "
        f"{r['headless_tps']} tok/s {r['headless_runs']}, through the TUI {r['tui_tps']} tok/s {r['tui_runs']} "
        f"-> {r['ratio_of_medians']}x; each TUI run over the engine run beside it {r['paired_ratios']}, "
        f"median {r['ratio_e2e']}x (target >= {r['target_e2e']}x: {ok(r['ratio_e2e'] >= r['target_e2e'])})",
        f"UI thread while streaming: {r['ui_cpu_share'] * 100:.1f}% of a core",
        f"{r['long_tokens']}-token run, last 500 vs first 500 tokens: TUI {tg['last_500_tps']} / "
        f"{tg['first_500_tps']} tok/s = {tg['ratio']}x; headless engine {hg['last_500_tps']} / "
        f"{hg['first_500_tps']} = {hg['ratio']}x (attention over a longer context); the UI's own share: "
        f"TUI ratio / engine ratio = {tg['ratio'] / hg['ratio'] if hg['ratio'] else 0:.3f}",
        f"UI-thread CPU per screen update: over the first 500 tokens {r['ui_cpu_ms_per_update']['first_500']} ms, "
        f"over the last 500 {r['ui_cpu_ms_per_update']['last_500']} ms -> {r['ui_cpu_ms_per_update']['ratio']}x "
        f"(near 1: the UI's cost does not grow with the length of the output)",
        f"Esc to stopped over {esc['trials']} trials: median {esc['median']} ms, p95 {esc['p95']} ms, "
        f"max {esc['max']} ms (target p95 <= {r['target_esc_p95_ms']} ms: {ok(esc['p95'] <= r['target_esc_p95_ms'])})",
    ])


def bench_ui_compare(path: Path, *, n_tokens: int = 400, esc_trials: int = 10, mode: str = "chat",
                     reps: int = 3, progress: Progress = quiet) -> dict[str, Any]:
    """The compare screen with 3 panes through the real TUI against the same 3 requests
    batched headless, interleaved; aggregate tok/s, the UI thread's share of a core while
    streaming, Esc-to-all-stopped."""
    n_ctx = 4096

    async def screen_run(app: Any) -> tuple[float, float]:
        app.engine.clear_cache()
        screen = app.screen
        cpu0 = time.thread_time()
        t0 = time.perf_counter()
        app.reset_stamps()
        await screen.run_prompt(UI_PROMPT)
        await asyncio.wait_for(app.finished.wait(), 900)
        wall = app.t_done - t0
        tokens = sum(p.stats.generated_tokens for p in screen.panes() if p.stats)
        return tokens / wall, (time.thread_time() - cpu0) / wall

    async def pairs() -> tuple[list[float], list[float], list[float]]:
        _save_settings(max_tokens=n_tokens)
        engine = _engine(path, n_ctx)
        app = _timed_app(compare=(list(COMPARE_TEMPS), None), engine=engine)  # the app closes it
        async with app.run_test(size=(160, 45)):
            await _ready(app)
            return await _interleaved(reps, lambda: _compare_batch(engine, n_tokens, mode), lambda: screen_run(app),
                                      (f"headless engine, 3 panes x {n_tokens} tokens",
                                       f"compare screen, 3 panes x {n_tokens} tokens"), progress)

    async def esc_latencies() -> list[float]:
        _save_settings(max_tokens=2000)
        app = _timed_app(compare=(list(COMPARE_TEMPS), None))
        out = []
        async with app.run_test(size=(160, 45)) as pilot:
            await _ready(app)
            screen = app.screen
            for _ in range(esc_trials):
                app.reset_stamps()
                await screen.run_prompt(UI_PROMPT)
                await asyncio.wait_for(app.tokens_seen.wait(), 60)
                await pilot.press("escape")
                await asyncio.wait_for(app.finished.wait(), 10)
                out.append(app.t_done - app.t_cancel)
        return out

    with private_home():
        _save_settings(mode=mode, seed=5, n_ctx=n_ctx, cursor_blink=False)
        head_runs, tui_runs, shares = asyncio.run(pairs())
        progress(f"Esc latency, {esc_trials} trials")
        lat = sorted(asyncio.run(esc_latencies()))
    head_tps, tui_tps = statistics.median(head_runs), statistics.median(tui_runs)
    return {"benchmark": "ui", "screen": "compare", "model": str(path), "mode": mode, "panes": len(COMPARE_TEMPS),
            "n_tokens": n_tokens, "headless_tps": round(head_tps, 1), "tui_tps": round(tui_tps, 1),
            "headless_runs": [round(x, 1) for x in head_runs], "tui_runs": [round(x, 1) for x in tui_runs],
            "ratio_of_medians": round(tui_tps / head_tps, 3), "paired_ratios": paired_ratios(tui_runs, head_runs),
            "ratio": statistics.median(paired_ratios(tui_runs, head_runs)), "target_ratio": 0.9,
            "ui_cpu_share": round(statistics.median(shares), 3), "target_ui_cpu_share": 0.10,
            "esc_ms": {"median": round(statistics.median(lat) * 1000, 1),
                       "p95": round(percentile(lat, 0.95) * 1000, 1), "max": round(lat[-1] * 1000, 1),
                       "trials": len(lat)}, "target_esc_p95_ms": 50}


def format_compare_report(r: dict[str, Any]) -> str:
    esc = r["esc_ms"]
    return "\n".join([
        f"model: {r['model']}  screen: compare, {r['panes']} panes  mode: {r['mode']}",
        f"aggregate, {r['panes']} x {r['n_tokens']} tokens, median of {len(r['tui_runs'])} interleaved runs: "
        f"headless batch {r['headless_tps']} tok/s {r['headless_runs']}, compare screen {r['tui_tps']} tok/s "
        f"{r['tui_runs']} -> {r['ratio_of_medians']}x; each screen run over the batch run beside it "
        f"{r['paired_ratios']}, median {r['ratio']}x "
        f"(target >= {r['target_ratio']}x: {ok(r['ratio'] >= r['target_ratio'])})",
        f"UI thread while streaming: {r['ui_cpu_share'] * 100:.1f}% of a core (target < "
        f"{r['target_ui_cpu_share'] * 100:.0f}%: {ok(r['ui_cpu_share'] < r['target_ui_cpu_share'])})",
        f"Esc to all panes stopped over {esc['trials']} trials: median {esc['median']} ms, p95 {esc['p95']} ms, "
        f"max {esc['max']} ms (target p95 <= {r['target_esc_p95_ms']} ms: {ok(esc['p95'] <= r['target_esc_p95_ms'])})",
    ])
