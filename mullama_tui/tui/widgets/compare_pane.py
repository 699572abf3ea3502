"""One compare pane: title line (pane, its model and the settings that set it apart; how
it stopped on the bottom border), a line of knobs (temperature, seed; live tokens and
tok/s on the right), the streaming text (or its tokens) and a one-line summary.

The pane's live figures are fixed-size lines (`OneLine`), which repaint without a layout
pass; its text streams into a `RawOutput` that fills the pane from the start and, while
it streams, shows its newest lines in the pane's height (see widgets/plain.py).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label

from ...engine.types import Stats
from ...panes import PaneSetup
from ..stream import TokenItem
from .gauge import OneLine
from .plain import RawOutput
from .prompt import with_blink
from .reply import FollowingScroll
from .tokens import TokenView, percent


def pane_output(text: str = "") -> RawOutput:
    """A pane's text: as tall as the pane from the start, then, while it streams, its
    newest lines in the pane's height (no layout pass at all while streaming); at the end
    of the run its whole height, to scroll."""
    return RawOutput(text, fill=True, window=True, id="pane-body")


def summary_line(stats: dict[str, Any], chars: int, width: int = 0) -> str:
    """A finished pane's row (from `Stats.to_dict()`, live or from history): why it
    stopped first, then the figures, in the longest form that fits `width` (0: any)."""
    ttft = stats.get("ttft")
    first = f"{ttft * 1000:.0f} ms" if ttft is not None else "-"
    n, tps, reason = stats["generated_tokens"], stats["gen_tps"], stats["finish_reason"]
    forms = [f"{reason} · {n} tok · {tps:.1f} tok/s · first {first} · {chars} chars",
             f"{reason} · {n} tok · {tps:.1f} tok/s · 1st {first}",
             f"{reason} · {n} tok · {tps:.1f}/s · 1st {first.replace(' ', '')}",
             f"{reason} · {n} tok · {tps:.1f}/s"]
    return next((f for f in forms if not width or len(f) <= width), forms[-1])


class ComparePane(Vertical):
    """Title line (pane, temperature, seed; live tokens, tok/s and state on the right),
    one line of knobs, the streaming text and a one-line summary."""

    DEFAULT_CSS = """
    ComparePane { border: round $panel; height: 1fr; padding: 0 1; border-subtitle-color: $text-muted;
                  border-subtitle-align: right; }
    ComparePane.running { border: round $primary; }
    ComparePane.cancelled { border: round $warning; }
    ComparePane.failed { border: round $error; }
    ComparePane Horizontal.knobs { height: 1; }
    ComparePane Horizontal.knobs Label { width: auto; padding: 0 1 0 0; color: $text-muted; }
    ComparePane Horizontal.knobs Input { width: 6; margin: 0; }
    ComparePane Horizontal.knobs .live { width: 1fr; text-align: right; color: $accent; }
    /* no scrollbar drawn (the wheel and keys still scroll): a scrollbar moves with every new
       line, and as it is as tall as the pane, each move repaints every row of every pane */
    ComparePane FollowingScroll { height: 1fr; overflow-y: scroll; scrollbar-size-vertical: 0; }
    ComparePane .pane-stats { color: $text-muted; }
    """

    def __init__(self, index: int, setup: PaneSetup, *, base: PaneSetup | None = None, token_view: bool = False,
                 blink: bool = True) -> None:
        """`setup`: the pane's model and settings (temperature and seed are on its knobs line;
        the pane editor has the rest); `base`: the app's settings, which the title leaves out.
        `token_view`: show tokens (coloured by probability) instead of text; the screen
        switches it with `set_tokens`. `blink`: the knobs' cursors blink."""
        super().__init__(id=f"pane-{index}")
        self.index = index
        self._setup = setup
        self.base = base or PaneSetup()
        self.token_view = token_view
        self._blink = blink
        self.tokens = 0
        self.text = ""
        self.t_start = 0.0
        self.t_first: float | None = None
        self.stats: Stats | None = None
        self.done = True
        self.state = "ready"
        self.items: list[TokenItem] = []
        self.blind_label: str | None = None  # blind mode: "A", "B"...; who it is stays hidden until the vote
        self.revealed = ""  # after the vote: the letter it had, and a star if it won ("B ★")
        # the agreement pass: the tokens another model would not have picked, with what it
        # would have picked (struck through in the token view; said when the cursor is on one)
        self.disputed: dict[int, str] = {}

    @property
    def model(self) -> str | None:
        """This pane's own model (a GGUF path or `openai:URL`; None: the app's model)."""
        return self._setup.model

    @property
    def model_label(self) -> str:
        """Its model's name as a person knows it ("" for the app's model)."""
        return self._setup.model_label

    @property
    def setup(self) -> PaneSetup:
        """The pane's model and settings, with the knobs line as typed (ValueError if a knob
        is not a number)."""
        return replace(self._setup, temperature=self.temperature, seed=self.seed)

    @property
    def setup_as_typed(self) -> PaneSetup:
        """`setup`, keeping the last good temperature or seed where a knob is not a number."""
        setup = self._setup
        try:
            setup = replace(setup, temperature=float(self.query_one(".temp", Input).value))
        except ValueError:
            pass
        try:
            setup = replace(setup, seed=int(self.query_one(".seed", Input).value))
        except ValueError:
            pass
        return setup

    def set_setup(self, setup: PaneSetup) -> None:
        """New settings (the pane editor, a preset, blind mode's shuffle): knobs and title."""
        self._setup = setup
        if self.is_mounted:
            self.query_one(".temp", Input).value = f"{setup.temperature:g}"
            self.query_one(".seed", Input).value = str(setup.seed)
        self._title()

    def set_model(self, path: str | None, label: str) -> None:
        self._setup = replace(self._setup, model=path, model_label=label if path else "")
        self._title()

    def set_blind(self, label: str | None) -> None:
        """Hide (a letter) or show again (None) which model and settings this pane is: its
        knobs, speed and summary would give it away."""
        self.blind_label = label
        for part in self.query(".knobs, .pane-stats"):
            part.display = label is None
        self._title()

    def _new_body(self) -> RawOutput | TokenView:
        """The text, or (in the token view) the tokens."""
        if self.token_view:
            view = TokenView(list(self.items), id="pane-body")
            view.disputed = frozenset(self.disputed)
            return view
        return pane_output(self.text)

    @property
    def body(self) -> RawOutput | TokenView:
        """What the pane shows now: its text or its tokens."""
        body = self.query_one("#pane-body")
        assert isinstance(body, (RawOutput, TokenView))
        return body

    async def _replace_body(self) -> None:
        await self.body.remove()
        await self.query_one(FollowingScroll).mount(self._new_body())

    async def set_tokens(self, on: bool) -> None:
        self.token_view = on
        if on != isinstance(self.body, TokenView):
            await self._replace_body()

    def compose(self) -> ComposeResult:
        blink = self._blink
        with Horizontal(classes="knobs"):
            yield Label("temp")
            yield with_blink(Input(f"{self._setup.temperature:g}", id=f"temp-{self.index}", classes="temp",
                                   compact=True), blink)
            yield Label("seed")
            yield with_blink(Input(str(self._setup.seed), id=f"seed-{self.index}", classes="seed", compact=True),
                             blink)
            yield OneLine("", classes="live")
        with FollowingScroll():
            yield self._new_body()
        yield OneLine("", classes="pane-stats")

    def on_mount(self) -> None:
        self.query_one(FollowingScroll).anchor()
        self._title()

    def _title(self) -> None:
        """Pane, its own model and what sets its settings apart (a preset's name, the knobs
        that differ from the app's, "sys") on the top border, else its temperature and
        seed; on the bottom one how to stop it while it runs (Ctrl+X with the cursor in
        it), else why it stopped."""
        if not self.is_mounted:
            return
        running = self.has_class("running")
        if self.blind_label is not None:
            self.border_title = self.blind_label
            self.border_subtitle = "running" if running else ""
            return
        try:
            setup = self.setup
            words = [w for w in [self.model_label, *setup.differences(self.base)] if w]
            title = " · ".join(words) or f"t {setup.temperature:g} · seed {setup.seed}"
        except ValueError:
            title = self.model_label or "?"
        self.border_title = f"{self.index + 1} · {self.revealed + ' = ' if self.revealed else ''}{title}"
        self.border_subtitle = "running · ^x stops it" if running else (self.state if self.done else "")

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
        body = self.body
        if isinstance(body, RawOutput) and not self.token_view:
            body.clear()
        else:
            self.items, self.text = [], ""
            await self._replace_body()
        self.query_one(FollowingScroll).scroll_home(animate=False)
        self.items, self.disputed = [], {}
        self.tokens, self.text, self.stats, self.done = 0, "", None, False
        self.t_start, self.t_first = time.perf_counter(), None
        self.remove_class("cancelled", "failed")
        self.revealed = ""
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
        self.text += text
        body = self.body
        if isinstance(body, TokenView):
            body.extend(items or [])
        elif text:
            await body.append(text)

    def show_live(self) -> None:
        """The knobs line's right side: tokens, tok/s, state. A fixed-size line: updating
        it repaints that one line (a border title would repaint the whole pane)."""
        self.query_one(".live", OneLine).show(Text(f"{self.tokens} tok {self.rate:.1f}/s"))

    async def finish(self, stats: Stats | None, error: str | None) -> None:
        self.stats = stats
        self.done = True
        body = self.body
        if isinstance(body, TokenView):
            body.fit()
        else:
            await body.finish()
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
        self._title()
        if error or stats is None:
            self.show_line(f"error: {error}" if error else "cancelled before it started")
            return
        self.show_line(summary_line(stats.to_dict(), len(self.text), self.content_region.width))

    def dispute(self, notes: dict[int, str]) -> None:
        """Mark the tokens another model would not have picked (`notes`: what it would have)."""
        self.disputed = notes
        for view in self.query(TokenView):
            view.disputed = frozenset(notes)
            view.refresh()

    def show_saved_stats(self, stats: dict[str, Any]) -> None:
        """A finished pane from the history: why it stopped on its border, its summary row."""
        self.state, self.done = str(stats.get("finish_reason") or ""), True
        self._title()
        self.show_line(summary_line(stats, len(self.text), self.content_region.width))

    def show_line(self, line: str) -> None:
        self.query_one(".pane-stats", OneLine).show(Text(line))

    async def show_text(self, text: str, items: list[TokenItem] | None = None) -> None:
        """A finished pane's text (a comparison reopened from history): laid out from its
        top, to scroll, as a pane looks once its run has ended."""
        self.text, self.items = text, list(items or [])
        await self._replace_body()
        body = self.body
        if isinstance(body, TokenView):
            body.fit()
        else:
            await body.finish()
        self.query_one(FollowingScroll).scroll_home(animate=False)

    def on_token_view_selected(self, msg: TokenView.Selected) -> None:
        """A token under the cursor in this pane: why it was chosen, on the pane's last line."""
        msg.stop()
        item = msg.view.items[msg.index]
        i = item.insight
        other = self.disputed.get(msg.index)
        if other is not None:  # the agreement pass said something about this token: that first
            self.show_line(f"token {msg.index} {item.text!r} · {other}")
            return
        if i is None:
            self.show_line(f"token {msg.index} {item.text!r}: no insight recorded")
            return
        top = ", ".join(f"{c.text!r} {percent(c.prob)}" + (f" (cut: {c.cut_by})" if c.cut_by else "")
                        for c in i.top[:4])
        self.show_line(f"token {msg.index} {item.text!r} · model {percent(i.prob)} · sampler "
                       f"{percent(i.sampled_prob)} · H {i.entropy:.2f} · {top}")
