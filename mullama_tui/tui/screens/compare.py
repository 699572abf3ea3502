"""One prompt, 2-6 panes side by side, each at its own temperature (and seed), streaming
at the same time from one batch in the engine.

One thread worker reads all the panes' generations together (`drain_together`) and posts
one `PaneBatch` per pane every ~100 ms; per-pane stats come from the engine's `Stats`.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static

from ...engine.generation import Generation, drain_together
from ...engine.types import MullamaError, Request, Stats, TokenEvent
from ...history import RunRecord
from ..widgets.output import RawOutput
from ..widgets.prompt import PromptInput, with_blink
from .params import sampler_params

MIN_PANE_WIDTH = 38
DEFAULT_TEMPS = (0.1, 0.7, 1.2)
PANE_KEYS = ["f5", "f6", "f7", "f8", "f9", "f10"]


def summary_line(stats: dict, chars: int) -> str:
    """A finished pane's row (from `Stats.to_dict()`, live or from history)."""
    ttft = f"{stats['ttft'] * 1000:.0f} ms" if stats.get("ttft") is not None else "-"
    return (f"{stats['generated_tokens']} tok · {stats['gen_tps']:.1f} tok/s · first {ttft} · "
            f"{stats['finish_reason']} · {chars} chars")


class PaneBatch(Message):
    def __init__(self, pane: int, text: str, n_tokens: int) -> None:
        super().__init__()
        self.pane, self.text, self.n_tokens = pane, text, n_tokens


class PaneFinished(Message):
    def __init__(self, pane: int, stats: Stats | None, error: str | None = None) -> None:
        super().__init__()
        self.pane, self.stats, self.error = pane, stats, error


class ComparePane(Vertical):
    """A temperature/seed header, the streaming text, and a stats line."""

    DEFAULT_CSS = """
    ComparePane { border: round $panel; height: 1fr; min-height: 10; }
    ComparePane.running { border: round $primary; }
    ComparePane.cancelled { border: round $warning; }
    ComparePane Horizontal.knobs { height: 3; }
    ComparePane Horizontal.knobs Label { padding: 1 0 0 1; width: auto; }
    ComparePane Horizontal.knobs Input { width: 1fr; }
    ComparePane VerticalScroll { height: 1fr; padding: 0 1; }
    ComparePane .pane-stats { height: auto; padding: 0 1; color: $text-muted; }
    """

    def __init__(self, index: int, temperature: float, seed: int) -> None:
        super().__init__(id=f"pane-{index}")
        self.index = index
        self._temperature, self._seed = temperature, seed
        self.tokens = 0
        self.text = ""
        self.t_start = 0.0
        self.stats: Stats | None = None
        self.done = True

    def compose(self) -> ComposeResult:
        with Horizontal(classes="knobs"):
            yield Label("temp")
            blink = self.app.settings.cursor_blink  # type: ignore[attr-defined]
            yield with_blink(Input(str(self._temperature), id=f"temp-{self.index}", classes="temp"), blink)
            yield Label("seed")
            yield with_blink(Input(str(self._seed), id=f"seed-{self.index}", classes="seed"), blink)
        with VerticalScroll():
            yield RawOutput()
        yield Static("", classes="pane-stats", markup=False)

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).anchor()
        self.border_title = f"pane {self.index + 1} ({PANE_KEYS[self.index]} cancels)"

    @property
    def temperature(self) -> float:
        return float(self.query_one(".temp", Input).value)

    @property
    def seed(self) -> int:
        return int(self.query_one(".seed", Input).value)

    async def reset(self) -> None:
        await self.query_one(RawOutput).remove()
        await self.query_one(VerticalScroll).mount(RawOutput())
        self.tokens, self.text, self.stats, self.done = 0, "", None, False
        self.t_start = time.perf_counter()
        self.remove_class("cancelled")
        self.add_class("running")
        self.show_line("waiting...")

    def add(self, text: str, n: int) -> None:
        self.tokens += n
        self.text += text
        if text:
            self.query_one(RawOutput).append(text)
        elapsed = time.perf_counter() - self.t_start
        self.show_line(f"{self.tokens} tok · {self.tokens / elapsed if elapsed else 0:.1f} tok/s · running")

    def finish(self, stats: Stats | None, error: str | None) -> None:
        self.stats = stats
        self.done = True
        self.query_one(RawOutput).finish()
        self.remove_class("running")
        reason = str(stats.finish_reason) if stats and stats.finish_reason else "error"
        if reason == "cancelled":
            self.add_class("cancelled")
        if stats is None:
            self.show_line(f"error: {error}")
            return
        self.show_line(summary_line(stats.to_dict(), len(self.text)))

    def show_line(self, line: str) -> None:
        self.query_one(".pane-stats", Static).update(Text(line))

    def show_text(self, text: str) -> None:
        self.text = text
        self.query_one(RawOutput).append(text)
        self.query_one(RawOutput).finish()


class CompareScreen(Screen[None]):
    HELP_NOTES = (
        "Compare: F5..F10 cancel one pane, Esc cancels all (or goes back), Ctrl+A / Ctrl+D add or "
        "remove a pane. The panes decode in one batch. Each is a faithful sample at its temperature "
        "and seed; it is also the exact text of `mullama-tui run` with that temperature and seed only "
        "where this machine decodes batches bit-identically to single runs "
        "(`mullama-tui show --system` tells; on GPUs and some CPUs a pane can part ways after a "
        "near-tie between two tokens).",
    )
    BINDINGS = [
        Binding("escape", "cancel_all", "Cancel all / back", priority=True),
        Binding("ctrl+c", "cancel_all", "Cancel all", priority=True, show=False),
        Binding("ctrl+a", "add_pane", "Add pane", priority=True),
        Binding("ctrl+d", "remove_pane", "Remove pane", priority=True),
        *[Binding(k, f"cancel_pane({i})", f"Cancel pane {i + 1}", show=False, priority=True)
          for i, k in enumerate(PANE_KEYS)],
    ]
    DEFAULT_CSS = """
    CompareScreen #panes { height: 1fr; grid-gutter: 0 1; }
    CompareScreen #panes.stacked { height: auto; }
    CompareScreen #scroller { height: 1fr; }
    CompareScreen #panes.stacked ComparePane { height: 14; }
    CompareScreen #prompt { height: 4; border: round $primary; }
    """

    def __init__(self, temps: tuple[float, ...] | list[float] = DEFAULT_TEMPS, prompt: str | None = None,
                 record: RunRecord | None = None) -> None:
        super().__init__()
        self.temps = list(temps)
        self.initial_prompt = prompt
        self.record = record
        self.gens: list[Generation] = []
        self.running = False
        self._prompt = ""

    def compose(self) -> ComposeResult:
        yield Header()
        seed = self.app.settings.seed or 42  # type: ignore[attr-defined]
        with VerticalScroll(id="scroller"):
            with Grid(id="panes"):
                for i, t in enumerate(self.temps):
                    yield ComparePane(i, t, seed)
        yield with_blink(PromptInput(id="prompt"), self.app.settings.cursor_blink)  # type: ignore[attr-defined]
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "compare temperatures"
        self._relayout()
        self.query_one(PromptInput).focus()
        if self.record is not None:
            self.call_after_refresh(self._show_record, self.record)
        elif self.initial_prompt:
            self.call_after_refresh(self.run_prompt, self.initial_prompt)

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        grid = self.query_one("#panes", Grid)
        n = len(self.query(ComparePane))
        cols = max(1, min(n, self.size.width // MIN_PANE_WIDTH))
        grid.styles.grid_size_columns = cols
        stacked = cols < n
        grid.set_class(stacked, "stacked")
        rows = -(-n // cols)
        grid.styles.grid_size_rows = rows

    def panes(self) -> list[ComparePane]:
        return list(self.query(ComparePane))

    # -- running ---------------------------------------------------------------------------
    @on(PromptInput.Submitted)
    async def on_submit(self, event: PromptInput.Submitted) -> None:
        event.stop()
        await self.run_prompt(event.text)

    async def run_prompt(self, prompt: str) -> None:
        if self.running:
            self.notify("a comparison is running: Esc cancels it", severity="warning")
            return
        app = self.app
        try:
            knobs = [(p.temperature, p.seed) for p in self.panes()]
        except ValueError:
            self.notify("every pane needs a number for temperature and seed", severity="error")
            return
        base = sampler_params(app.settings)  # type: ignore[attr-defined]
        ignore_eos = getattr(app, "_ignore_eos", False)  # benchmarks and tests only
        s = app.settings  # type: ignore[attr-defined]
        requests = []
        for t, seed in knobs:
            params = base.with_(temperature=t, seed=seed)
            if s.mode == "chat":
                requests.append(Request(prompt=prompt, mode="chat", system=s.system or None,
                                        params=params, max_tokens=s.max_tokens, ignore_eos=ignore_eos))
            else:
                requests.append(Request(prompt=prompt, mode="raw", params=params, max_tokens=s.max_tokens,
                                        ignore_eos=ignore_eos))
        try:
            for r in requests:
                r.validate()
        except MullamaError as e:
            self.notify(str(e), severity="error")
            return
        self._prompt = prompt
        for p in self.panes():
            await p.reset()
        self.running = True
        self.sub_title = "generating"
        self._generate(requests)

    @work(thread=True, group="compare", exit_on_error=False)
    def _generate(self, requests: list[Request]) -> None:
        app = self.app
        while not app._engine_ready.wait(0.05):  # type: ignore[attr-defined]
            if not self.running:
                return
        engine = app.engine  # type: ignore[attr-defined]
        if engine is None:
            for i in range(len(requests)):
                self.post_message(PaneFinished(i, None, app._engine_error or "no model"))  # type: ignore[attr-defined]
            return
        gens: list[Generation] = []
        try:
            for r in requests:
                gens.append(engine.submit(r))
        except MullamaError as e:
            for g in gens:
                g.cancel()
            for i in range(len(requests)):
                self.post_message(PaneFinished(i, None, str(e)))
            return
        self.gens = gens

        def forward(i: int, events: list[TokenEvent]) -> None:
            text = "".join(e.text for e in events)
            n = sum(1 for e in events if not e.done)
            self.post_message(PaneBatch(i, text, n))
            if events[-1].done:
                st = events[-1].stats
                self.post_message(PaneFinished(i, st, st.error if st else None))

        drain_together(gens, interval=0.1, on_events=forward)

    def on_pane_batch(self, msg: PaneBatch) -> None:
        self.panes()[msg.pane].add(msg.text, msg.n_tokens)

    def on_pane_finished(self, msg: PaneFinished) -> None:
        self.panes()[msg.pane].finish(msg.stats, msg.error)
        if all(p.done for p in self.panes()):
            self.running = False
            self.gens = []
            self.sub_title = "done"
            self._save()

    def _save(self) -> None:
        panes = [{"temperature": p.temperature, "seed": p.seed, "text": p.text,
                  "stats": p.stats.to_dict() if p.stats else None} for p in self.panes()]
        out = "\n\n".join(f"## temperature {d['temperature']} · seed {d['seed']}\n\n{d['text']}" for d in panes)
        try:
            self.app.history.add(RunRecord(  # type: ignore[attr-defined]
                model=self.app.model_name, mode=self.app.settings.mode, prompt=self._prompt,  # type: ignore[attr-defined]
                output=out, kind="compare", params={"panes": [{"temperature": d["temperature"],
                                                              "seed": d["seed"]} for d in panes]},
                stats={"panes": panes}, finish_reason="compare"))
        except Exception as e:
            self.notify(f"could not save history: {e}", severity="warning")

    async def _show_record(self, rec: RunRecord) -> None:
        panes = rec.stats.get("panes", [])
        self.temps = [d["temperature"] for d in panes]
        self.query_one(PromptInput).load_text(rec.prompt)
        for pane, d in zip(self.panes(), panes):
            pane.query_one(".temp", Input).value = str(d["temperature"])
            pane.query_one(".seed", Input).value = str(d["seed"])
            pane.show_text(d["text"])
            if d.get("stats"):
                pane.show_line(summary_line(d["stats"], len(d["text"])))

    # -- actions ------------------------------------------------------------------------------
    def action_cancel_all(self) -> None:
        if self.running:
            for g in self.gens:
                g.cancel()
            self.sub_title = "cancelling"
        else:
            self.dismiss(None)

    def action_cancel_pane(self, index: int) -> None:
        if self.running and index < len(self.gens):
            self.gens[index].cancel()

    async def action_add_pane(self) -> None:
        panes = self.panes()
        if self.running or len(panes) >= 6:
            return
        t = round(min(2.0, (panes[-1].temperature if panes else 0.7) + 0.4), 2)
        await self.query_one("#panes", Grid).mount(ComparePane(len(panes), t, panes[0].seed if panes else 42))
        self._relayout()

    async def action_remove_pane(self) -> None:
        panes = self.panes()
        if self.running or len(panes) <= 2:
            return
        await panes[-1].remove()
        self._relayout()
