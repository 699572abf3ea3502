"""One prompt, 2-6 panes side by side, each at its own temperature (and seed), streaming at
the same time from one batch in the engine: an instrument for what temperature does.

Why it is shaped this way: on a 2-core machine every millisecond of UI work is taken from
llama.cpp's two compute threads (and stalls the other one at its barrier), so the screen
costs what the main screen costs and no more:
- one thread worker reads every pane's generation together (`drain_together`) and posts
  ONE `CompareBatch` per frame (5 a second) for all panes, applied in one
  `batch_update()`: one screen refresh per frame, however many panes;
- pane text streams into the same cheap-append widget as the main screen (a tail that
  reserves its height ahead, frozen chunks), so most frames lay nothing out;
- live figures (a pane's tokens, tok/s and state; the batch's total and its sparkline)
  are fixed-size lines and border titles, which repaint without a layout pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Input, Label, Sparkline, Static

from ...engine.generation import Generation, drain_together
from ...engine.types import MullamaError, Request, Stats, TokenEvent
from ...history import RunRecord
from ..widgets.gauge import FLAT, _Line
from ..widgets.output import FollowingScroll, RawOutput
from ..widgets.tokens import TokenItem, TokenView, percent
from ..widgets.prompt import PromptInput, with_blink
from .base import WorkerScreen

if TYPE_CHECKING:
    from ..app import MullamaApp

MIN_PANE_WIDTH = 38
MIN_PANE_HEIGHT = 10  # below this a pane is unreadable: stack the panes and scroll instead
STACKED_PANE_HEIGHT = 14
DEFAULT_TEMPS = (0.1, 0.7, 1.2)
PANE_KEYS = ["f5", "f6", "f7", "f8", "f9", "f10"]
INSIGHT_TOP = 10  # alternatives recorded per token in the token view
FRAME = 0.33  # seconds between screen updates while streaming: 3 a second (3 panes of text)
LIVE_EVERY = 3  # frames between updates of the live figures (the panes' title lines, the batch line)


def pane_output(text: str = "") -> RawOutput:
    """A pane's text: as tall as the pane from the start, then, while it streams, its
    newest lines in the pane's height (no layout pass at all while streaming); at the end
    of the run its whole height, to scroll."""
    return RawOutput(text, fill=True, window=True)


def summary_line(stats: dict, chars: int) -> str:
    """A finished pane's row (from `Stats.to_dict()`, live or from history)."""
    ttft = f"{stats['ttft'] * 1000:.0f} ms" if stats.get("ttft") is not None else "-"
    return (f"{stats['generated_tokens']} tok  {stats['gen_tps']:.1f} tok/s  first {ttft}  "
            f"{stats['finish_reason']}  {chars} chars")  # spaced like the title line: fits a half-width pane


@dataclass
class PaneUpdate:
    """What one pane got since the last frame: its new text and tokens, and its stats
    (or error) if it finished."""

    pane: int
    text: str = ""
    n_tokens: int = 0
    items: list[TokenItem] = field(default_factory=list)
    done: bool = False
    stats: Stats | None = None
    error: str | None = None


@dataclass
class CompareBatch(Message):
    """Every pane's news of one frame, in one message (one screen refresh)."""

    updates: list[PaneUpdate] = field(default_factory=list)


class ComparePane(Vertical):
    """Title line (pane, temperature, seed; live tokens, tok/s and state on the right),
    one line of knobs, the streaming text and a one-line summary."""

    DEFAULT_CSS = """
    ComparePane { border: round $panel; height: 1fr; padding: 0 1; border-subtitle-color: $text-muted; }
    ComparePane.running { border: round $primary; }
    ComparePane.cancelled { border: round $warning; }
    ComparePane.failed { border: round $error; }
    ComparePane Horizontal.knobs { height: 1; }
    ComparePane Horizontal.knobs Label { width: auto; padding: 0 1 0 0; color: $text-muted; }
    ComparePane Horizontal.knobs Input { width: 6; margin: 0 1 0 0; }
    ComparePane Horizontal.knobs .live { width: 1fr; text-align: right; color: $accent; }
    /* no scrollbar drawn (the wheel and keys still scroll): a scrollbar moves with every new
       line, and as it is as tall as the pane, each move repaints every row of every pane */
    ComparePane VerticalScroll { height: 1fr; overflow-y: scroll; scrollbar-size-vertical: 0; }
    ComparePane .pane-stats { color: $text-muted; }
    """

    def __init__(self, index: int, temperature: float, seed: int) -> None:
        super().__init__(id=f"pane-{index}")
        self.index = index
        self._temperature, self._seed = temperature, seed
        self.tokens = 0
        self.text = ""
        self.t_start = 0.0
        self.t_first: float | None = None
        self.stats: Stats | None = None
        self.done = True
        self.state = "ready"
        self.items: list[TokenItem] = []

    def _body(self) -> RawOutput | TokenView:
        """The text, or (in the token view) the tokens."""
        if self.app.settings.token_view:  # type: ignore[attr-defined]
            return TokenView(list(self.items))
        return pane_output(self.text)

    async def set_tokens(self, on: bool) -> None:
        body = self.query_one(VerticalScroll).children[0]
        if on != isinstance(body, TokenView):
            await body.remove()
            await self.query_one(VerticalScroll).mount(self._body())

    def compose(self) -> ComposeResult:
        blink = self.app.settings.cursor_blink  # type: ignore[attr-defined]
        with Horizontal(classes="knobs"):
            yield Label("temp")
            yield with_blink(Input(str(self._temperature), id=f"temp-{self.index}", classes="temp", compact=True),
                             blink)
            yield Label("seed")
            yield with_blink(Input(str(self._seed), id=f"seed-{self.index}", classes="seed", compact=True), blink)
            yield _Line("", classes="live")
        with FollowingScroll():
            yield self._body()
        yield _Line("", classes="pane-stats")

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).anchor()
        self._title()

    def _title(self) -> None:
        try:
            knobs = f"t {self.temperature:g} · seed {self.seed}"
        except ValueError:
            knobs = "?"
        self.border_title = f"{self.index + 1} · {knobs} · {PANE_KEYS[self.index]} cancels"

    @on(Input.Changed)
    def _knob_changed(self) -> None:
        self._title()

    @property
    def temperature(self) -> float:
        return float(self.query_one(".temp", Input).value)

    @property
    def seed(self) -> int:
        return int(self.query_one(".seed", Input).value)

    @property
    def rate(self) -> float:
        """Live tok/s since this pane's first token (the engine's figure once finished)."""
        if self.stats is not None:
            return self.stats.gen_tps
        if self.t_first is None or self.tokens < 2:
            return 0.0
        elapsed = time.perf_counter() - self.t_first
        return (self.tokens - 1) / elapsed if elapsed > 0 else 0.0

    async def reset(self) -> None:
        scroll = self.query_one(VerticalScroll)
        body = scroll.children[0]
        if isinstance(body, RawOutput) and not self.app.settings.token_view:  # type: ignore[attr-defined]
            body.clear()
        else:
            self.items, self.text = [], ""
            await body.remove()
            await scroll.mount(self._body())
        scroll.scroll_home(animate=False)
        self.items = []
        self.tokens, self.text, self.stats, self.done = 0, "", None, False
        self.t_start, self.t_first = time.perf_counter(), None
        self.remove_class("cancelled", "failed")
        self.add_class("running")
        self.state = "waiting"
        self.show_live()
        self.show_line("")
        self._title()

    async def add(self, text: str, n: int, items: list[TokenItem] | None = None) -> None:
        if n and self.t_first is None:
            self.t_first = time.perf_counter()
        self.tokens += n
        if self.state != "running":
            self.state = "running"
            self.show_live()
        self.items.extend(items or [])
        body = self.query_one(VerticalScroll).children[0]
        if isinstance(body, TokenView):
            self.text += text
            body.extend(items or [])
        elif text:
            self.text += text
            await body.append(text)  # type: ignore[union-attr]

    def show_live(self) -> None:
        """The knobs line's right side: tokens, tok/s, state. A fixed-size line: updating
        it repaints that one line (a border title would repaint the whole pane)."""
        self.query_one(".live", _Line).show(Text(f"{self.tokens} tok  {self.rate:.1f} tok/s  {self.state}"))

    async def finish(self, stats: Stats | None, error: str | None) -> None:
        self.stats = stats
        self.done = True
        body = self.query_one(VerticalScroll).children[0]
        if isinstance(body, TokenView):
            body.fit()
        else:
            await body.finish()  # type: ignore[union-attr]
        self.remove_class("running")
        reason = str(stats.finish_reason) if stats and stats.finish_reason else ("error" if error else "cancelled")
        self.state = reason
        if reason == "cancelled":
            self.add_class("cancelled")
        elif reason == "error":
            self.add_class("failed")
        if stats is not None:
            self.tokens = stats.generated_tokens
        self.show_live()
        if error or stats is None:
            self.show_line(f"error: {error}" if error else "cancelled before it started")
            return
        self.show_line(summary_line(stats.to_dict(), len(self.text)))

    def show_line(self, line: str) -> None:
        self.query_one(".pane-stats", _Line).show(Text(line))

    async def show_text(self, text: str, items: list[TokenItem] | None = None) -> None:
        self.text, self.items = text, list(items or [])
        scroll = self.query_one(VerticalScroll)
        await scroll.children[0].remove()
        await scroll.mount(self._body())

    def on_token_view_selected(self, msg: TokenView.Selected) -> None:
        """A token under the cursor in this pane: why it was chosen, on the pane's last line."""
        msg.stop()
        item = msg.view.items[msg.index]
        i = item.insight
        if i is None:
            self.show_line(f"token {msg.index} {item.text!r}: no insight recorded")
            return
        top = ", ".join(f"{c.text!r} {percent(c.prob)}" + (f" (cut: {c.cut_by})" if c.cut_by else "")
                        for c in i.top[:4])
        self.show_line(f"token {msg.index} {item.text!r} · model {percent(i.prob)} · sampler "
                       f"{percent(i.sampled_prob)} · H {i.entropy:.2f} · {top}")


class CompareScreen(WorkerScreen[None]):
    HELP_NOTES = (
        "Compare: F5..F10 cancel one pane, Esc cancels all (or goes back), Ctrl+A / Ctrl+D add or "
        "remove a pane. The panes decode in one batch. Each is a faithful sample at its temperature "
        "and seed; it is also the exact text of `mullama-tui run` with that temperature and seed only "
        "where this machine decodes batches bit-identically to single runs "
        "(`mullama-tui show --system` tells; on GPUs and some CPUs a pane can part ways after a "
        "near-tie between two tokens).",
    )
    BINDINGS = [
        Binding("escape", "cancel_all", "Cancel/Back", priority=True),
        Binding("ctrl+c", "cancel_all", "Cancel all", priority=True, show=False),
        Binding("ctrl+a", "add_pane", "Add pane", priority=True),
        Binding("ctrl+d", "remove_pane", "Remove", priority=True),
        Binding("ctrl+t", "toggle_tokens", "Tokens", priority=True),
        *[Binding(k, f"cancel_pane({i})", f"Cancel pane {i + 1}", show=False, priority=True)
          for i, k in enumerate(PANE_KEYS)],
    ]
    DEFAULT_CSS = """
    CompareScreen #compare-prompt { height: auto; max-height: 3; padding: 0 1; color: $text-muted;
                                    background: $panel; }
    CompareScreen #aggregate { height: 1; padding: 0 1; }
    CompareScreen #aggregate #total { width: 74; color: $accent; text-style: bold; }
    CompareScreen #aggregate Sparkline { width: 1fr; height: 1; margin: 0 1; }
    CompareScreen #scroller { height: 1fr; }
    CompareScreen #panes { height: 100%; grid-gutter: 0 1; }
    CompareScreen #panes.stacked { height: auto; }
    CompareScreen #prompt { height: 4; border: round $primary; }
    """

    def __init__(self, temps: tuple[float, ...] | list[float] = DEFAULT_TEMPS, prompt: str | None = None,
                 record: RunRecord | None = None, carry: bool = False) -> None:
        """`prompt` runs at once, or with `carry` only fills the prompt box (F4 from the
        chat screen brings what was typed there); `record` shows a saved comparison."""
        super().__init__()
        self.temps = list(temps)
        self.initial_prompt = prompt
        self.carry = carry
        self.record = record
        self.gens: list[Generation] = []
        self.running = False
        self._prompt = ""
        self._rates: list[float] = []
        self._t_run = 0.0
        self._frames = 0
        self.diverge: int | None = None  # the first token at which the panes differ

    @property
    def mullama(self) -> MullamaApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text("no prompt yet: type one below and press Enter"), id="compare-prompt", markup=False)
        seed = self.mullama.settings.seed or 42
        with VerticalScroll(id="scroller"):
            with Grid(id="panes"):
                for i, t in enumerate(self.temps):
                    yield ComparePane(i, t, seed)
        # below the panes, where their newest lines are: Textual repaints the box around
        # everything that changed in a frame, so what changes together is kept together
        with Horizontal(id="aggregate"):
            yield _Line("", id="total")
            yield Sparkline(FLAT, id="total-spark")
        yield with_blink(PromptInput(id="prompt"), self.mullama.settings.cursor_blink)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "compare temperatures"
        self._relayout()
        self._show_total()
        prompt = self.query_one(PromptInput)
        prompt.focus()
        if self.record is not None:
            self.call_after_refresh(self._show_record, self.record)
        elif self.initial_prompt and self.carry:
            prompt.load_text(self.initial_prompt)
        elif self.initial_prompt:
            self.call_after_refresh(self.run_prompt, self.initial_prompt)

    def on_resize(self) -> None:
        self._relayout()

    def _relayout(self) -> None:
        """Side by side while each pane gets MIN_PANE_WIDTH columns and MIN_PANE_HEIGHT
        rows; otherwise one column of fixed-height panes that scrolls."""
        grid = self.query_one("#panes", Grid)
        n = len(self.query(ComparePane))
        cols = max(1, min(n, self.size.width // MIN_PANE_WIDTH))
        rows = -(-n // cols)
        height = self.query_one("#scroller").size.height or max(0, self.size.height - 9)
        stacked = height // rows < MIN_PANE_HEIGHT
        if stacked:
            cols, rows = 1, n
        grid.styles.grid_size_columns = cols
        grid.styles.grid_size_rows = rows
        grid.styles.grid_rows = str(STACKED_PANE_HEIGHT) if stacked else "1fr"
        grid.set_class(stacked, "stacked")

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
        app = self.mullama
        try:
            knobs = [(p.temperature, p.seed) for p in self.panes()]
        except ValueError:
            self.notify("every pane needs a number for temperature and seed", severity="error")
            return
        try:
            base = app.settings.sampler()
            requests = [app.request(prompt=prompt, params=base.with_(temperature=t, seed=seed)) for t, seed in knobs]
            for r in requests:
                r.logprobs = INSIGHT_TOP if app.settings.token_view else 0
            for r in requests:
                r.validate()
        except MullamaError as e:
            self.notify(str(e), severity="error")
            return
        self._prompt = prompt
        with self.app.batch_update():
            self.query_one("#compare-prompt", Static).update(Text(prompt))
            for p in self.panes():
                await p.reset()
        self.running = True
        self.diverge = None
        self._rates, self._t_run = [], time.perf_counter()
        self.sub_title = "generating"
        self._show_total()
        self._generate(requests)

    @work(thread=True, group="compare", exit_on_error=False, description="drain the compare panes")
    def _generate(self, requests: list[Request]) -> None:
        try:
            gens = []
            for r in requests:
                gen = self.mullama.submit(r, cancelled=lambda: not self.running)
                if gen is None:
                    break
                gens.append(gen)
        except MullamaError as e:
            for g in gens:
                g.cancel()
            self.post_message(CompareBatch([PaneUpdate(i, done=True, error=str(e)) for i in range(len(requests))]))
            return
        if len(gens) < len(requests):  # cancelled while waiting for the model
            for g in gens:
                g.cancel()
            self.post_message(CompareBatch([PaneUpdate(i, done=True) for i in range(len(requests))]))
            return
        self.gens = gens
        news: dict[int, PaneUpdate] = {}
        last = [time.perf_counter()]

        def collect(i: int, events: list[TokenEvent]) -> None:
            u = news.setdefault(i, PaneUpdate(i))
            u.text += "".join(e.text for e in events)
            u.items += [TokenItem(e.text, e.token_id, e.insight) for e in events if not e.done]
            u.n_tokens += sum(1 for e in events if not e.done)
            if events[-1].done:
                u.done, u.stats = True, events[-1].stats
                u.error = u.stats.error if u.stats else None

        def frame() -> None:
            if any(g.cancelled and not g.finished for g in gens):
                return  # cancelled ones end within a decode step: show them all in one frame
            now = time.perf_counter()
            if news and (now - last[0] >= FRAME or any(u.done for u in news.values())):
                self.post_message(CompareBatch(list(news.values())))
                news.clear()
                last[0] = now

        drain_together(gens, interval=FRAME, on_events=collect, on_round=frame)
        if news:
            self.post_message(CompareBatch(list(news.values())))

    def worker_failed(self, group: str, error: str) -> None:
        """The app's one handler for crashed workers calls this: every pane still running
        ends as failed, so Esc leaves the screen again."""
        if group == "compare":
            for g in self.gens:
                g.cancel()
            self.post_message(CompareBatch([PaneUpdate(p.index, done=True, error=error)
                                            for p in self.panes() if not p.done]))

    async def on_compare_batch(self, msg: CompareBatch) -> None:
        panes = self.panes()
        with self.app.batch_update():
            for u in msg.updates:
                if u.pane >= len(panes) or panes[u.pane].done:
                    continue
                pane = panes[u.pane]
                if u.text or u.n_tokens:
                    await pane.add(u.text, u.n_tokens, u.items)
                if u.done:
                    await pane.finish(u.stats, u.error)
            self._frames += 1
            if self._frames % LIVE_EVERY == 0 or any(u.done for u in msg.updates):
                # figures once a second: the text changes every frame, they need not
                for pane in panes:
                    if not pane.done:
                        pane.show_live()
                self._mark_divergence()
                self._show_total()
        if self.running and all(p.done for p in panes):
            self.running = False
            self.gens = []
            self.sub_title = "done"
            self.mullama.generation_ended()
            self._show_total()
            self._save()

    def _mark_divergence(self) -> None:
        """The first token at which the panes part ways (they share the prompt, so they
        agree until a sampled token differs), marked in every pane's token view."""
        panes = self.panes()
        n = min((len(p.items) for p in panes), default=0)
        at = next((i for i in range(n) if len({p.items[i].token_id for p in panes}) > 1), None)
        if at is None and any(len(p.items) > n for p in panes) and all(p.done for p in panes):
            at = n  # one ended where another went on
        if at != self.diverge:
            self.diverge = at
            for p in panes:
                for view in p.query(TokenView):
                    view.diverge = at
                    view.refresh()

    def _show_total(self) -> None:
        """The aggregate line: the batch's total tok/s (and its sparkline), tokens, panes."""
        panes = self.panes()
        total = sum(p.rate for p in panes if p.t_first is not None)
        tokens = sum(p.tokens for p in panes)
        live = sum(1 for p in panes if not p.done)
        if self.running:
            self._rates.append(total)
            state = f"{live} running"
        else:
            state = "done" if self._rates else "ready"
        parted = "" if self.diverge is None else f" · differ from token {self.diverge}"
        self.query_one("#total", _Line).show(
            Text(f"batch {total:.1f} tok/s · {tokens} tok · {len(panes)} panes · {state}{parted}"))
        self.query_one("#total-spark", Sparkline).data = [0.0, *self._rates[-120:]] if self._rates else FLAT

    def _save(self) -> None:
        panes = [{"temperature": p.temperature, "seed": p.seed, "text": p.text,
                  "stats": p.stats.to_dict() if p.stats else None,
                  "tokens": [i.to_dict() for i in p.items if i.insight is not None]} for p in self.panes()]
        out = "\n\n".join(f"## temperature {d['temperature']} · seed {d['seed']}\n\n{d['text']}" for d in panes)
        app = self.mullama
        try:
            app.history.add(RunRecord(
                model=app.model_name, mode=app.settings.mode, prompt=self._prompt,
                output=out, kind="compare", params={"panes": [{"temperature": d["temperature"],
                                                              "seed": d["seed"]} for d in panes]},
                stats={"panes": panes}, finish_reason="compare"))
        except Exception as e:
            self.notify(f"could not save history: {e}", severity="warning")

    async def _show_record(self, rec: RunRecord) -> None:
        saved = rec.stats.get("panes", [])
        while len(self.panes()) < len(saved):
            await self.action_add_pane()
        self.temps = [d["temperature"] for d in saved]
        self._prompt = rec.prompt
        self.query_one(PromptInput).load_text(rec.prompt)
        self.query_one("#compare-prompt", Static).update(Text(rec.prompt))
        for pane, d in zip(self.panes(), saved):
            pane.query_one(".temp", Input).value = str(d["temperature"])
            pane.query_one(".seed", Input).value = str(d["seed"])
            await pane.show_text(d["text"], [TokenItem.from_dict(t) for t in d.get("tokens", [])])
            if d.get("stats"):
                pane.show_line(summary_line(d["stats"], len(d["text"])))

    # -- actions ------------------------------------------------------------------------------
    def action_cancel_all(self) -> None:
        if self.running:
            for g in self.gens:
                g.cancel()
            if not self.gens:  # still waiting for the model
                self.running = False
                self.mullama.wake_waiters()
            self.sub_title = "cancelling"
        else:
            self.dismiss(None)

    async def action_toggle_tokens(self) -> None:
        """Ctrl+T: each pane as its tokens, coloured by probability (recorded for the next
        comparison on), with the first token where the panes part ways marked."""
        s = self.mullama.settings
        s.token_view = not s.token_view
        self.mullama.save_settings()
        with self.app.batch_update():
            for p in self.panes():
                await p.set_tokens(s.token_view)
        self.diverge = None
        self._mark_divergence()
        self._show_total()

    def action_cancel_pane(self, index: int) -> None:
        if self.running and index < len(self.gens):
            self.gens[index].cancel()

    async def action_add_pane(self) -> None:
        panes = self.panes()
        if self.running or len(panes) >= len(PANE_KEYS):
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
