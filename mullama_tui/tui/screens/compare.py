"""One prompt, 2-6 panes side by side, each with its own settings (temperature, seed, top-k,
top-p, min-p, repeat penalty, system prompt) and, if it likes, its own model (a local GGUF
or an OpenAI-compatible server), streaming at the same time: an instrument for what
temperature does, and an arena for models, quantizations and settings (blind if you like).
Panes on one local model share its batch.

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

import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import Footer, Header, Sparkline, Static

from ...engine.generation import Generation
from ...engine.types import Agreement, InvalidParamsError, MullamaError, Request
from ...history import HistoryError, RunRecord
from ...panes import PRESETS, SETTINGS, PaneSetup
from ..messages import TokenBatch
from ..stream import INSIGHT_TOP, News, TokenItem, pump
from ..widgets.compare_pane import ComparePane
from ..widgets.gauge import FLAT, OneLine
from ..widgets.prompt import PromptInput, with_blink
from ..widgets.tokens import TokenView
from .base import WorkerScreen
from .pane import model_label

if TYPE_CHECKING:
    from ..app import MullamaApp

log = logging.getLogger("mullama_tui.compare")

MIN_PANE_WIDTH = 38
MIN_PANE_HEIGHT = 10  # below this a pane is unreadable: stack the panes and scroll instead
STACKED_PANE_HEIGHT = 14
PANE_CHROME = 4  # a pane's rows that are not text: its two borders, the knobs line, the summary
DEFAULT_TEMPS = (0.1, 0.7, 1.2)
FRAME = 0.33  # seconds between screen updates while streaming: 3 a second (3 panes of text)
LIVE_EVERY = 3  # frames between updates of the live figures (the panes' title lines, the batch line)


LETTERS = "ABCDEF"
MAX_PANES = len(LETTERS)  # as many as the app's engines decode in one batch (app.MAX_PANES)


@dataclass
class AgreementFound(Message):
    """What the agreement pass after a run of two models found: its one-line summary, its
    figures, and per disputed token of the reference pane what the other model would pick."""

    summary: str
    found: Agreement
    notes: dict[int, str]


def transcript(panes: list[tuple[str, str]]) -> str:
    """Every pane's text under its heading (its model and settings), as Markdown (history, Ctrl+Y)."""
    return "\n\n".join(f"## {heading}\n\n{text}" for heading, text in panes)


def heading(setup: PaneSetup, base: PaneSetup | None = None) -> str:
    """A pane's heading in a transcript: its model (if its own), settings and seed."""
    return " · ".join(w for w in (setup.model_label, setup.knobs(base), f"seed {setup.seed}") if w)


class CompareScreen(WorkerScreen[None]):
    HELP_NOTES = (
        "Compare: Esc stops all (or goes back), Ctrl+X the pane with the cursor (Tab to it), "
        "Ctrl+A / Ctrl+D add or remove a pane. F6 edits the pane with the cursor: its temperature, "
        "seed, top-k, top-p, min-p, repeat penalty, system prompt and model (a GGUF, a pulled name "
        "or openai:URL for a server). F5 (or Ctrl+L) picks its model from the local ones (panes on "
        "one model share its batch; two models decode side by side), Ctrl+G cycles its presets "
        "(greedy, precise, creative). Ctrl+B: blind mode (panes become A, B, C in a shuffled order "
        "until you vote with Ctrl+V); Ctrl+R (or `mullama-tui arena`) shows the standings. "
        "Two files of one model (two quantizations): the line under the panes says how often the "
        "second agrees with the first's tokens.",
        "The panes decode in one batch. Each is a faithful sample at its temperature "
        "and seed; it is also the exact text of `mullama-tui run` with that temperature and seed only "
        "where this machine decodes batches bit-identically to single runs "
        "(`mullama-tui show --system` tells; on GPUs and some CPUs a pane can part ways after a "
        "near-tie between two tokens).",
    )
    BINDINGS = [
        Binding("escape", "cancel_all", "Stop/Back", priority=True),
        Binding("ctrl+c", "cancel_all", "Cancel all", priority=True, show=False),
        Binding("ctrl+a", "add_pane", "Add", priority=True),
        Binding("ctrl+d", "remove_pane", "Remove", priority=True),
        Binding("ctrl+t", "toggle_tokens", "Tokens", priority=True),
        Binding("ctrl+l", "pick_model", "Model", priority=True),
        Binding("ctrl+g", "preset", "Preset", show=False, priority=True),
        Binding("f6", "edit_pane", "Edit pane", priority=True),
        Binding("ctrl+r", "standings", "Standings", show=False, priority=True),
        Binding("ctrl+b", "toggle_blind", "Blind", show=False, priority=True),
        Binding("ctrl+v", "vote", "Vote", show=False, priority=True),
        Binding("ctrl+y", "copy_panes", "Copy", show=False, priority=True),
        # one key map: F5 is Models everywhere (here: the model of the pane with the cursor),
        # and a pane is stopped from its own knobs (Tab to it), not by a per-pane F-key
        Binding("f5", "pick_model", "Models", show=False, priority=True),
        Binding("ctrl+x", "cancel_focused", "Stop pane", show=False, priority=True),
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
                 record: RunRecord | None = None, carry: bool = False, models: list[str] | None = None) -> None:
        """`prompt` runs at once, or with `carry` only fills the prompt box (F4 from the
        chat screen brings what was typed there); `record` shows a saved comparison;
        `models` (`compare --model A --model B`): a pane per model and temperature."""
        super().__init__(classes="compare")  # not an id: a comparison reopened from the history or the
        # arena opens on top of the one it was chosen from, and ids must be unique
        self.temps = list(temps)
        self.models = list(models or [])
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
        self.blind = False  # Ctrl+B: panes lettered in a shuffled order until the vote
        self.saved_panes: list[dict[str, Any]] = []  # the last run's panes as saved (a vote updates them)
        self.voted: str | None = None
        self.saved_id: int | None = None  # the history row of the last run (its vote goes there)
        self.agreement: str | None = None
        self.found: Agreement | None = None  # the agreement pass's figures (its strip under the panes)
        self.reopened: dict[str, Any] | None = None  # a blind run from history voted on later: its params
        self._first_request: Request | None = None  # the first pane's, as it ran

    @property
    def mullama(self) -> MullamaApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(Text("no prompt yet: type one below and press Enter"), id="compare-prompt", markup=False)
        base = self.base_setup()
        models: list[str | None] = [*self.models] or [None]
        with VerticalScroll(id="scroller"):
            with Grid(id="panes"):
                for i, (model, t) in enumerate((m, t) for m in models for t in self.temps):
                    yield self._pane(i, replace(base, temperature=t, model=model,
                                                model_label=model_label(model) if model else ""))
        # below the panes, where their newest lines are: Textual repaints the box around
        # everything that changed in a frame, so what changes together is kept together
        with Horizontal(id="aggregate"):
            yield OneLine("", id="total")
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
        self.query_one(Footer).show_command_palette = self.size.width >= 100  # the keys first at 80

    def _relayout(self) -> None:
        """Every pane on screen at once: the widest grid (a pane keeps MIN_PANE_WIDTH columns)
        whose panes get MIN_PANE_HEIGHT rows; else the grid with the most text in it (at
        80x24, three panes in two columns, a few lines each); only when not even one line
        of text per pane fits, one column of fixed-height panes that scrolls."""
        grid = self.query_one("#panes", Grid)
        n = len(self.query(ComparePane))
        width = self.size.width
        height = self.query_one("#scroller").size.height or max(0, self.size.height - 9)
        most = max(1, min(n, width // MIN_PANE_WIDTH))
        best: tuple[int, int, int] | None = None  # (text area, columns, rows)
        for cols in range(most, 0, -1):  # the widest grid whose panes are all readable
            rows = -(-n // cols)
            if height // rows >= MIN_PANE_HEIGHT:
                best = (0, cols, rows)
                break
        if best is None:  # none: the grid with the most text in it, while every pane shows a line
            for cols in range(1, most + 1):
                rows = -(-n // cols)
                text_h = height // rows - PANE_CHROME
                area = (width // cols - 4) * text_h
                if text_h >= 1 and (best is None or area > best[0]):
                    best = (area, cols, rows)
        stacked = best is None
        cols, rows = (1, n) if best is None else best[1:]
        grid.styles.grid_size_columns = cols
        grid.styles.grid_size_rows = rows
        grid.styles.grid_rows = str(STACKED_PANE_HEIGHT) if stacked else "1fr"
        grid.set_class(stacked, "stacked")

    def base_setup(self) -> PaneSetup:
        """A pane as the app's settings make it (a new pane starts from this; a pane's title
        names only what differs from it). The seed: the configured one, else 42, so the
        panes differ only by what the user changes."""
        s = self.mullama.settings
        return PaneSetup(temperature=s.temperature, seed=s.seed or 42, top_k=s.top_k, top_p=s.top_p,
                         min_p=s.min_p, repeat_penalty=s.repeat_penalty, system=s.system)

    def _pane(self, index: int, setup: PaneSetup) -> ComparePane:
        s = self.mullama.settings
        return ComparePane(index, setup, base=self.base_setup(), token_view=s.token_view, blink=s.cursor_blink)

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
            setups = [p.setup for p in self.panes()]
        except ValueError:
            self.notify("every pane needs a number for temperature and seed", severity="error")
            return
        self.voted, self.saved_id, self.agreement, self.found, self.reopened = None, None, None, None, None
        try:
            base = app.settings.sampler()
            requests = [app.request(prompt=prompt, params=setup.sampler(base)) for setup in setups]
            for r, setup in zip(requests, setups):
                r.logprobs = INSIGHT_TOP if app.settings.token_view else 0
                if r.mode == "chat":
                    r.system = setup.system or None
            for i, r in enumerate(requests):
                try:
                    r.validate()
                except MullamaError as e:
                    raise InvalidParamsError(f"pane {i + 1}: {e}") from None
        except MullamaError as e:
            self.notify(str(e), severity="error")
            return
        if self.blind:  # dealt out after the checks: what fails is said of the pane as the user set it
            order = self._shuffle_blind()
            requests = [requests[i] for i in order]
        else:
            for p in self.panes():
                p.set_blind(None)
        self._prompt = prompt
        self._first_request = requests[0]  # what the agreement pass reads again (its own system prompt too)
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
        """Stream every pane's generation, one frame for all panes at a time (`stream.pump`)."""
        gens: list[Generation] = []
        models = [p.model for p in self.panes()]
        self.mullama.release_pane_engines(keep={m for m in models if m})  # a model no pane uses goes
        try:
            # every pane's model loaded first (once for all its panes), then all submitted at
            # once: panes on one model start together and share its batch from the first step
            engines = {m: self.mullama.pane_engine(m) for m in models if m}
            for r, model in zip(requests, models):
                if model:
                    gen: Generation | None = engines[model].submit(r)
                else:
                    gen = self.mullama.submit(r, cancelled=lambda: not self.running)
                if gen is None:
                    break
                gens.append(gen)
        except MullamaError as e:
            for g in gens:
                g.cancel()
            self.post_message(TokenBatch([News(i, done=True, error=str(e)) for i in range(len(requests))]))
            return
        if len(gens) < len(requests):  # cancelled while waiting for the model
            for g in gens:
                g.cancel()
            self.post_message(TokenBatch([News(i, done=True) for i in range(len(requests))]))
            return
        self.gens = gens

        def frame(news: list[News]) -> None:
            self.post_message(TokenBatch(news))

        pump(gens, FRAME, frame)

    def worker_failed(self, group: str, error: str) -> None:
        """The app's one handler for crashed workers calls this: every pane still running
        ends as failed, so Esc leaves the screen again."""
        if group == "compare":
            for g in self.gens:
                g.cancel()
            self.post_message(TokenBatch([News(p.index, done=True, error=error) for p in self.panes() if not p.done]))

    async def on_token_batch(self, msg: TokenBatch) -> None:
        panes = self.panes()
        with self.app.batch_update():
            for news in msg.news:
                if news.index >= len(panes) or panes[news.index].done:
                    continue
                pane = panes[news.index]
                if news.text or news.n_tokens:
                    await pane.add(news.text, news.n_tokens, news.items)
                if news.done:
                    await pane.finish(news.stats, news.error)
            self._frames += 1
            if self._frames % LIVE_EVERY == 0 or any(n.done for n in msg.news):
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
            if self.blind:
                self.notify("which was best? Ctrl+V to vote (the panes say who they are after it)", timeout=8)
            self._check_agreement()

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
        parted = ("" if self.diverge is None else " · differ from the start" if self.diverge == 0
                  else f" · agree for {self.diverge} tokens")
        line = f"batch {total:.1f} tok/s · {tokens} tok · {len(panes)} panes · {state}{parted}"
        spark = [0.0, *self._rates[-120:]] if self._rates else FLAT
        if self.agreement and not (self.blind and self.voted is None):
            line = self.agreement  # after a run of two models, what matters most is where they differ
            if self.found is not None and self.found.kl:
                spark = [0.0, *self.found.kl]  # the strip: the KL token by token, its peaks where they part
        self.query_one("#total", OneLine).show(Text(line))
        spark_widget = self.query_one("#total-spark", Sparkline)
        spark_widget.data = spark
        tip = ("KL divergence token by token (peaks: where the two models part ways)"
               if self.found is not None and spark is not FLAT and line == self.agreement else "tok/s of the batch")
        if spark_widget.tooltip != tip:  # this runs every second while streaming: only a change is set
            spark_widget.tooltip = tip

    def _save(self) -> None:
        panes: list[dict[str, Any]] = []
        for p in self.panes():
            setup = p.setup_as_typed  # as it ran: the run checked every knob
            panes.append({**setup.to_saved(), "text": p.text, "stats": p.stats.to_dict() if p.stats else None,
                          "label": p.blind_label, "heading": heading(setup, p.base),
                          "tokens": [i.to_dict() for i in p.items if i.insight is not None]})
        self.saved_panes = panes
        out = transcript([(d["heading"], d["text"]) for d in panes])
        app = self.mullama
        try:
            self.saved_id = app.history.add(RunRecord(
                model=app.model_label, mode=app.settings.mode, prompt=self._prompt,
                output=out, kind="compare", params=self._params(panes),
                stats={"panes": panes}, finish_reason="compare"))
        except Exception as e:
            self.notify(f"could not save history: {e}", severity="warning")

    def _params(self, panes: list[dict[str, Any]]) -> dict[str, Any]:
        """What a comparison was: each pane's model and settings (and its letter in blind
        mode), and the vote once there is one (the arena's standings are made of these)."""
        if self.reopened is not None:  # voted on later: as it was saved (its models as named then), and the vote
            return {**self.reopened, "vote": self.voted}
        app_model = self.mullama.model_label
        params: dict[str, Any] = {"panes": [{**{k: d[k] for k in SETTINGS if k in d},
                                             "model": d.get("model") or app_model, "label": d.get("label")}
                                            for d in panes]}
        if any(d["label"] for d in panes):  # lettered: a blind run
            params["blind"] = True
        if self.voted is not None:
            params["vote"] = self.voted
        if self.found is not None and self.agreement:
            params["agreement"] = {"summary": self.agreement, **self.found.to_dict(),
                                   "notes": {str(i): n for i, n in self.panes()[0].disputed.items()}}
        return params

    async def _show_record(self, rec: RunRecord) -> None:
        saved = rec.stats.get("panes", [])
        while len(self.panes()) < len(saved):
            await self.action_add_pane()
        while len(self.panes()) > max(2, len(saved)):  # as many panes as it had
            await self.action_remove_pane()
        self.temps = [d["temperature"] for d in saved]
        base = self.base_setup()
        self._prompt = rec.prompt
        self.query_one(PromptInput).load_text(rec.prompt)
        self.query_one("#compare-prompt", Static).update(Text(rec.prompt))
        vote = rec.params.get("vote")
        if vote is not None:  # a blind run: who each letter was, and which one won
            letters = {p.get("label"): p.get("model") for p in rec.params.get("panes", [])}
            self.sub_title = f"blind run, voted {vote}" + (f" ({letters.get(vote)})" if vote in letters else "")
        agreed = rec.params.get("agreement")
        if agreed:  # the agreement pass's line, strip and struck tokens, as they were
            self.agreement, self.found = agreed["summary"], Agreement.from_dict(agreed)
            self._show_total()
        unvoted = vote is None and any(d.get("label") for d in saved)
        if unvoted:  # "vote later" said the vote: it is still blind, and Ctrl+V votes here
            self.saved_panes, self.saved_id, self.reopened = saved, rec.id, dict(rec.params)
            self.sub_title = "blind run, not voted yet: Ctrl+V votes"
        for pane, d in zip(self.panes(), saved):
            setup = PaneSetup.from_dict(d, default=base)
            if setup.model and not setup.model_label:
                setup = replace(setup, model_label=model_label(setup.model))
            if d.get("label") and not unvoted:  # a blind run: the letter each pane had, and the winner's star
                pane.revealed = f"{d['label']}{' ★' if d['label'] == vote else ''}"
            pane.set_setup(setup)
            if unvoted:
                pane.set_blind(d.get("label"))
            if agreed and pane is self.panes()[0]:
                pane.disputed = {int(i): n for i, n in agreed.get("notes", {}).items()}
            await pane.show_text(d["text"], [TokenItem.from_dict(t) for t in d.get("tokens", [])])
            if d.get("stats"):
                pane.show_saved_stats(d["stats"])

    # -- actions ------------------------------------------------------------------------------
    def on_unmount(self) -> None:
        self.mullama.release_pane_engines()  # the other models go with the screen

    def pane_with_cursor(self) -> ComparePane | None:
        """The pane whose knob has the cursor, if one has it."""
        focused = self.focused
        return next((p for p in self.panes() if focused is not None and focused in p.walk_children()), None)

    def focused_pane(self) -> ComparePane:
        """The pane with the cursor, else the first one."""
        return self.pane_with_cursor() or self.panes()[0]

    def label_of(self, pane: ComparePane) -> str:
        """A pane's model as a person knows it (the app's own model for a pane without one)."""
        return pane.model_label or self.mullama.model_label

    def action_pick_model(self) -> None:
        """Ctrl+L: the pane with the cursor gets a model of its own (from the local models)."""
        if self.running:
            self.notify("a comparison is running: Esc cancels it", severity="warning")
            return
        from ...models.naming import display_name
        from .models import ModelsScreen

        pane = self.focused_pane()

        def chosen(choice: Any) -> None:
            if choice is not None:
                pane.set_model(str(choice.path), display_name(choice.path, asked_as=choice.name))
                self.notify(f"pane {pane.index + 1}: {pane.model_label}")

        self.app.push_screen(ModelsScreen(Path(pane.model) if pane.model else None,
                                          self.mullama.settings.default_model, for_pane=pane.index + 1), chosen)

    def action_preset(self) -> None:
        """Ctrl+G: the pane with the cursor to the next preset (greedy, precise, creative):
        its temperature, top-k, top-p, min-p and repeat penalty together."""
        if self.running:
            return
        pane = self.focused_pane()
        setup = pane.setup_as_typed
        names = list(PRESETS)
        now = setup.preset()
        name = names[(names.index(now) + 1) % len(names)] if now in names else names[0]
        pane.set_setup(setup.with_preset(name))
        self.notify(f"pane {pane.index + 1}: {name} ({pane.setup.spelled()})")

    def action_edit_pane(self) -> None:
        """F6: the pane with the cursor's settings and model, in a form."""
        if self.running:
            self.notify("a comparison is running: Esc cancels it", severity="warning")
            return
        from .pane import PaneScreen

        pane = self.focused_pane()
        setup = pane.setup_as_typed

        def edited(new: PaneSetup | None) -> None:
            if new is not None:
                pane.set_setup(new)
                self.notify(f"pane {pane.index + 1}: {heading(new, pane.base)}")

        self.app.push_screen(PaneScreen(pane.index + 1, setup, self.mullama.model_label,
                                        self.mullama.settings.cursor_blink), edited)

    def action_standings(self) -> None:
        """Ctrl+R: the arena's standings (the blind votes so far); Enter on one reopens it."""
        self.mullama.action_arena()

    def action_toggle_blind(self) -> None:
        """Ctrl+B: blind mode on or off (from the next run on)."""
        if self.running:
            return
        self.blind = not self.blind
        self.notify("blind: the next run's panes are A, B, C in a shuffled order until you vote (Ctrl+V)"
                    if self.blind else "blind mode off")

    def _shuffle_blind(self) -> list[int]:
        """Deal the panes' models and settings out in a random order, and letter the panes;
        returns the order (pane i now has what pane order[i] had)."""
        panes = self.panes()
        setups = [p.setup for p in panes]
        order = list(range(len(panes)))
        random.shuffle(order)
        for p, i, letter in zip(panes, order, LETTERS):
            p.set_setup(setups[i])
            p.set_blind(letter)
        return order

    def action_vote(self) -> None:
        """Ctrl+V: after a blind run, the best pane (or a tie); then who each one was."""
        letters = [d["label"] for d in self.saved_panes if d.get("label")]
        if self.running or not letters or self.voted is not None:
            self.notify("a vote follows a blind run (Ctrl+B, then run a prompt)", severity="warning")
            return
        from .vote import VoteScreen

        def voted(vote: str | None) -> None:
            if vote is None:
                self.notify("vote later: Ctrl+V here, or on this comparison reopened from the history (F3)")
                return
            self.voted = vote
            panes = self.panes()
            names = [f"{p.blind_label} was {self.label_of(p)} ({p.setup.knobs(p.base)})" for p in panes]
            for p in panes:
                p.revealed = f"{p.blind_label}{' ★' if p.blind_label == vote else ''}"
                p.set_blind(None)
            self._update_saved()
            self.notify(f"vote: {vote}. " + "; ".join(names), timeout=12)
            if self.reopened is not None:
                self.sub_title = f"blind run, voted {vote}"
            self._show_total()

        self.app.push_screen(VoteScreen(letters), voted)

    def _check_agreement(self) -> None:
        """Two files of one model side by side: how often the second agrees with the first
        pane's tokens, measured in a worker once the run has ended."""
        panes = self.panes()
        first = panes[0]
        other = next((p for p in panes[1:] if (p.model or "") != (first.model or "")), None)
        if other is None or not first.items or self._first_request is None:
            return
        self._agree(first.model, other.model, self._first_request, [i.token_id for i in first.items],
                    self.label_of(first), self.label_of(other))

    @work(thread=True, group="agreement", exit_on_error=False, description="the agreement pass")
    def _agree(self, a: str | None, b: str | None, request: Request, tokens: list[int], name_a: str,
               name_b: str) -> None:
        from ...engine.agreement import agreement
        from ...engine.llama import LlamaModel

        app = self.mullama
        try:
            ea = app.pane_engine(a) if a else app.engine
            eb = app.pane_engine(b) if b else app.engine
            if ea is None or eb is None or not isinstance(ea.model, LlamaModel) or not isinstance(eb.model, LlamaModel):
                return  # a remote model gives no logits to compare
            prompt_tokens = ea.prompt_tokens(request)  # type: ignore[attr-defined]
            with app.models_in_use:  # no engine closes under the pass
                if ea.model.ptr is None or eb.model.ptr is None:
                    return  # closed before it began (the screen went)
                found = agreement(ea.model, eb.model, prompt_tokens, tokens)
                notes = {i: f"{name_b} would pick {eb.model.token_text(found.b_top[i])!r} · KL {found.kl[i]:.3f}"
                         for i, same in enumerate(found.agree) if not same}
        except MullamaError as e:  # two different models (no shared vocabulary): nothing per token to say
            log.info("no agreement pass: %s", e)
            return
        self.post_message(AgreementFound(found.summary(name_a, name_b), found, notes))

    def on_agreement_found(self, msg: AgreementFound) -> None:
        """The line under the panes says it, its strip draws the KL token by token, and the
        reference pane's token view strikes the tokens the other model would not pick."""
        self.agreement, self.found = msg.summary, msg.found
        self.panes()[0].dispute(msg.notes)
        self._show_total()
        self._update_saved()  # kept with the comparison in the history

    def _update_saved(self) -> None:
        """The last run's history row, with what came after it was saved (a vote, the agreement)."""
        if self.saved_id is None or not self.saved_panes:
            return
        try:
            self.mullama.history.set_params(self.saved_id, self._params(self.saved_panes))
        except HistoryError as e:
            self.notify(str(e), severity="warning")

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

    def action_copy_panes(self) -> None:
        """Ctrl+Y: the text of the pane whose knob has the focus, or else of every pane
        (each under its temperature and seed), to the clipboard."""
        with_cursor = self.pane_with_cursor()
        panes = [with_cursor] if with_cursor is not None else self.panes()
        if not any(p.text for p in panes):
            self.notify("nothing to copy yet", severity="warning")
            return
        text = panes[0].text if len(panes) == 1 else transcript([(heading(p.setup_as_typed, p.base), p.text)
                                                                   for p in panes])
        self.app.copy_to_clipboard(text)
        self.notify(f"copied {'pane ' + str(panes[0].index + 1) if len(panes) == 1 else 'every pane'} "
                    f"({len(text)} characters)")

    def action_cancel_pane(self, index: int) -> None:
        if self.running and index < len(self.gens):
            self.gens[index].cancel()

    def action_cancel_focused(self) -> None:
        """Ctrl+X: stop the pane with the cursor (Tab moves it from the prompt to the panes);
        the others go on. Esc stops them all."""
        pane = self.pane_with_cursor()
        if pane is None:
            self.notify("Tab to a pane's knobs, then Ctrl+X stops that pane (Esc stops all)", severity="warning")
            return
        self.action_cancel_pane(pane.index)

    async def action_add_pane(self) -> None:
        panes = self.panes()
        if self.running or len(panes) >= MAX_PANES:
            return
        base = self.base_setup()
        last = panes[-1].setup_as_typed if panes else base
        # the next temperature up, on the same model, with the first pane's seed
        setup = replace(last, temperature=round(min(2.0, last.temperature + 0.4), 2),
                        seed=panes[0].setup_as_typed.seed if panes else base.seed)
        await self.query_one("#panes", Grid).mount(self._pane(len(panes), setup))
        self._relayout()

    async def action_remove_pane(self) -> None:
        panes = self.panes()
        if self.running or len(panes) <= 2:
            return
        await panes[-1].remove()
        self._relayout()
