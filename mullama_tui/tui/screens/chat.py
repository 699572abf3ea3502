"""The main screen: one conversation, its streaming reply, the live gauge and the status line.

Message flow (why it is shaped this way):
- a generation's tokens are decoded by the engine's scheduler thread; a thread worker
  here drains the generation's channel and posts one `TokenBatch` every 200 ms with
  `post_message` (which never blocks), so the screen gets 5 updates a second whatever
  the token rate, and decoding never waits for the screen to draw;
- a prompt sent before the model is ready waits for it in that worker (`app.submit`);
- Esc / Ctrl+C are priority bindings enabled only while generating (`check_action`), so
  they win over the prompt's own Ctrl+C (copy) and the app's quit hint; they call the
  generation's `cancel()`, which the scheduler honours before its next decode step.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widget import Widget
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from ...engine.generation import Generation
from ...engine.types import MullamaError, Request, Stats, TokenInsight
from ...history import RunRecord
from ..messages import GenerationFinished, GenerationStarted, PromptProgress, TokenBatch
from ..stream import INSIGHT_TOP, News, TokenItem, forced_insight, pump
from ..widgets.gauge import Gauge
from ..widgets.prompt import PromptInput, with_blink
from ..widgets.reply import FollowingScroll
from ..widgets.tokens import TokenPanel, TokenView
from ..widgets.turn import AssistantTurn, ReplyBranch
from .base import WorkerScreen

if TYPE_CHECKING:
    from ..app import MullamaApp
    from .edit import TurnEdit

# Seconds between TokenBatch messages: 5 screen updates a second while streaming, each
# carrying the new text and the gauge (so the gauge refreshes at 5 Hz). Every frame
# preempts one of llama.cpp's two compute threads on a 2-core machine (measured: UI-thread
# CPU per 1000 tokens 0.55 s at 4 frames/s, 0.85 s at 8, 1.3 s at 10 before the layout
# savings in widgets/output.py and widgets/gauge.py), so frames are kept few and cheap.
BATCH_INTERVAL = 0.2
EMPTY_HINT = ("Type a prompt below and press Enter to send it · Ctrl+J for a new line · F7 makes a reply "
              "again, F8 goes on with it, F6 edits a turn · F1 for every key")


def new_conversation_id() -> str:
    """A fresh conversation's name (its saved KV cache's file name)."""
    import uuid

    return "chat-" + uuid.uuid4().hex[:12]


def user_turn(text: str) -> Static:
    """A user's prompt in the output pane (never parsed as markup)."""
    return Static(Text(text), classes="user-turn", markup=False)


def assistant_turn(text: str, mode: str, tokens: bool = False, items: list[TokenItem] | None = None) -> AssistantTurn:
    """A reply: Markdown in chat mode, plain text in raw mode, tokens in the token view."""
    return AssistantTurn(mode, tokens, [ReplyBranch(items=list(items or []), text=text)],
                         classes="assistant-turn" + (" raw" if mode == "raw" else ""))


class ChatScreen(WorkerScreen[None]):
    """Prompt, streaming output pane, gauge and status line: the app's default screen."""

    BINDINGS = [
        Binding("escape", "cancel", "Cancel", priority=True, id="cancel"),
        Binding("ctrl+c", "cancel", "Cancel", priority=True, show=False, id="cancel-ctrl-c"),
        # the footer shows what fits 80 columns (F1 and the palette list every key)
        Binding("ctrl+n", "new_conversation", "New", id="new-conversation"),
        Binding("ctrl+r", "toggle_mode", "Chat/Raw", show=False, id="toggle-mode"),
        Binding("ctrl+t", "toggle_tokens", "Tokens", id="token-view"),
        Binding("ctrl+b", "next_branch", "Branch", show=False, id="next-branch"),
        Binding("ctrl+o", "toggle_thinking", "Thinking", show=False, id="thinking"),
        # priority: the prompt box would take it as redo (copying a reply is what it is wanted for here)
        Binding("ctrl+y", "copy_reply", "Copy reply", show=False, priority=True, id="copy-reply"),
        # priority: the prompt box takes F6 as "select the line" (editing a turn is what it means here)
        Binding("f6", "edit", "Edit", show=False, priority=True, id="edit"),
        # priority: the prompt box takes F7 as "select all" (making the reply again is what it means here)
        Binding("f7", "regenerate", "Again", show=False, priority=True, id="regenerate"),
        Binding("f8", "continue_reply", "Go on", show=False, id="continue"),
        # the conversation scrolls from the prompt too (the prompt box has no pages of its own)
        Binding("pageup", "scroll_output(-1)", "Page up", show=False, priority=True),
        Binding("pagedown", "scroll_output(1)", "Page down", show=False, priority=True),
    ]

    def __init__(self) -> None:
        super().__init__(id="chat")
        self.messages: list[dict[str, str]] = []  # the conversation sent back to the model
        self.current: Generation | None = None
        self.ended = 0  # generations whose end was handled (shown and saved)
        self.last_stats: Stats | None = None
        # the reply streaming (or last streamed); None after Ctrl+N mid-stream: late text goes nowhere
        self._turn: AssistantTurn | None = None
        self._run_request: Request | None = None
        self._turn_requests: dict[int, Request] = {}  # each turn's request (to branch it later)
        self._cancel_requested = False
        # the conversation's name: its KV cache is saved under it after each turn, and its
        # history rows carry it (a reopened conversation resumes from the saved state)
        self.conversation = new_conversation_id()

    @property
    def reply_text(self) -> str:
        """The text of the reply streaming (or last streamed)."""
        return self._turn.text if self._turn is not None else ""

    @property
    def token_view(self) -> bool:
        return self.mullama.settings.token_view

    @property
    def mullama(self) -> MullamaApp:
        return self.app  # type: ignore[return-value]

    # -- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="status", markup=False)
        yield Static("", id="system-line", markup=False)  # the system prompt, when one is set
        with Horizontal(id="body"):
            with FollowingScroll(id="output"):
                yield self._hint()
            panel = TokenPanel(id="token-panel")
            panel.display = self.mullama.settings.token_view
            yield panel
        yield Gauge(id="gauge")
        yield with_blink(PromptInput(id="prompt"), self.mullama.settings.cursor_blink)
        yield Footer(compact=True)

    @staticmethod
    def _hint() -> Static:
        return Static(Text(EMPTY_HINT), id="empty-hint", markup=False)

    def on_mount(self) -> None:
        self.query_one("#output", VerticalScroll).anchor()
        self._gauge_timer = self.set_interval(Gauge.INTERVAL, self._tick, pause=True)
        self.query_one(PromptInput).focus()
        self.refresh_status()

    def on_resize(self, event: events.Resize) -> None:
        """The footer's "^p palette" only where it fits beside the keys (not at 80 columns)."""
        self.query_one(Footer).show_command_palette = event.size.width >= 100

    def refresh_status(self) -> None:
        """The status line: state, mode, sampler values, model (and a model being loaded)."""
        if not self.is_mounted:
            return
        app = self.mullama
        s = app.settings
        text = (f"{app.state} · {s.mode} · temp {s.temperature} · top-k {s.top_k} · "
                f"top-p {s.top_p} · min-p {s.min_p} · rep {s.repeat_penalty} · max {s.max_tokens}"
                f" · seed {s.seed or 'random'} · {app.model_name}")
        if app.switching:
            text += f" · loading {app.switching} {app.switch_progress:.0%}"
        self.query_one("#status", Static).update(Text(text))
        line = self.query_one("#system-line", Static)
        system = " ".join(s.system.split()) if s.mode == "chat" else ""
        line.display = bool(system)
        line.update(Text(f"system: {system}", no_wrap=True, overflow="ellipsis"))

    @property
    def prompt_text(self) -> str:
        return self.query_one(PromptInput).text

    # -- sending -----------------------------------------------------------------------
    @on(PromptInput.Submitted)
    async def send(self, event: PromptInput.Submitted) -> None:
        app = self.mullama
        busy = self.current is not None or app.state in ("generating", "cancelling", "waiting for model")
        if busy or app.engine_error:
            prompt_input = self.query_one(PromptInput)
            if not prompt_input.text:  # the prompt cleared itself on Enter: nothing typed is lost
                prompt_input.load_text(event.text)
                prompt_input.move_cursor(prompt_input.document.end)
            if busy:
                self.notify("a generation is running: your text is kept; Esc cancels the generation",
                            severity="warning")
            else:
                self.notify(app.engine_error or "", title="No model", severity="error")
            return
        await self._begin(event.text)

    async def _begin(self, prompt: str) -> None:
        """A new turn: `prompt` (the user's), its reply streamed below it."""
        app = self.mullama
        s = app.settings
        try:
            if s.mode == "chat":
                request = app.request(messages=[*self.messages, {"role": "user", "content": prompt}])
            else:
                request = app.request(prompt=prompt)
        except MullamaError as e:  # a setting that cannot be used (a JSON schema file gone)
            self.query_one(PromptInput).load_text(prompt)
            self.notify(str(e), title="Cannot send", severity="error", timeout=10)
            return
        if s.mode == "chat":
            self.messages.append({"role": "user", "content": prompt})
            request.session = self.conversation
            request.session_meta = {"title": self.messages[0]["content"][:80],
                                    "model": app.model_label}
        request.logprobs = INSIGHT_TOP if self.token_view else 0  # off: no cost at all
        out = self.query_one("#output", VerticalScroll)
        await self._clear_hint()
        turn = assistant_turn("", s.mode, self.token_view)
        await out.mount(user_turn(prompt), turn)
        self._turn_requests[id(turn)] = request
        self._start(turn, request)

    def _start(self, turn: AssistantTurn, request: Request, forced: TokenInsight | None = None) -> None:
        """Stream `request` into `turn`'s current branch."""
        app = self.mullama
        out = self.query_one("#output", VerticalScroll)
        self._turn = turn
        self._run_request = request
        self._cancel_requested = False
        gauge = self.query_one(Gauge)
        gauge.threads_source = app.threads_label
        gauge.start(request.max_tokens, app.n_ctx)
        app.state = "generating" if app.engine_ready else "waiting for model"
        self._gauge_timer.resume()
        self.query_one(PromptInput).cursor_blink = False  # 2 frames a second fewer while streaming
        out.add_class("streaming")  # no scrollbar to repaint on every line (see app.tcss)
        out.anchor()
        self._generate(request, forced)

    async def _clear_hint(self) -> None:
        for hint in self.query("#empty-hint"):
            await hint.remove()

    @work(thread=True, group="generate", exit_on_error=False, description="drain a generation")
    def _generate(self, request: Request, forced: TokenInsight | None = None) -> None:
        """Stream the generation into the reply, a frame at a time (`stream.pump`).
        `forced`: what is known of a branch's forced token (the engine sends it bare)."""
        worker = get_current_worker()
        try:
            gen = self.mullama.submit(request, cancelled=lambda: self._cancel_requested or worker.is_cancelled)
        except MullamaError as e:
            self.post_message(GenerationFinished(None, str(e)))
            return
        if gen is None:  # cancelled while waiting for the model
            self.post_message(GenerationFinished(None, None))
            return
        self.current = gen
        if self._cancel_requested:
            gen.cancel()
        self.post_message(GenerationStarted(len(gen.prompt_tokens)))

        def progress(g: Generation) -> None:
            elapsed = time.perf_counter() - g.t_submit
            done = g.prompt_done - g.cached_tokens
            self.post_message(PromptProgress(g.prompt_done, len(g.prompt_tokens), g.cached_tokens,
                                             done / elapsed if elapsed > 0 and done > 0 else 0.0))

        def frame(news: list[News]) -> None:
            self.post_message(TokenBatch(news))

        pump([gen], BATCH_INTERVAL, frame, forced={0: forced} if forced is not None else None,
             on_progress=progress, stop=lambda: worker.is_cancelled)
        self.post_message(GenerationFinished(gen.stats, gen.stats.error if gen.stats else None))

    def worker_failed(self, group: str, error: str) -> None:
        """The app's one handler for crashed workers calls this: end the run as failed, so
        the screen is never left 'generating'."""
        if group == "generate":
            if self.current is not None:
                self.current.cancel()
            self.post_message(GenerationFinished(self.current.stats if self.current else None, error))

    def on_generation_started(self, msg: GenerationStarted) -> None:
        if self.mullama.state == "waiting for model":
            self.mullama.state = "generating"
        self.query_one(Gauge).prompt_tokens = msg.prompt_tokens

    def on_prompt_progress(self, msg: PromptProgress) -> None:
        self.query_one(Gauge).prompt_progress(msg.done, msg.total, msg.cached, msg.rate)

    async def on_token_batch(self, msg: TokenBatch) -> None:
        gauge = self.query_one(Gauge)
        for news in msg.news:
            if not (news.text or news.thinking or news.moved or news.n_tokens):
                continue  # the end alone: GenerationFinished shows it
            gauge.add_tokens(news.n_tokens, news.ttft)
            if news.thinking or news.moved or gauge.thinking_tokens:
                gauge.add_channels(sum(1 for i in news.items if i.thinking), news.elapsed if news.text else None,
                                   moved=bool(news.moved))
            if self._turn is not None:
                await self._turn.append(news.text, news.items, news.thinking, news.moved, news.elapsed)
        if gauge.due():  # ride on this batch's screen refresh, not a separate one
            gauge.tick()
        self._gauge_timer.reset()  # the fallback ticks only when batches stop coming

    async def on_generation_finished(self, msg: GenerationFinished) -> None:
        """Show that it stopped first (state, gauge, mark), then do the slower work: the
        final full Markdown render, the conversation and the history row."""
        app = self.mullama
        self._gauge_timer.pause()
        self.query_one(PromptInput).cursor_blink = app.settings.cursor_blink
        self.query_one("#output", VerticalScroll).remove_class("streaming")
        stats = msg.stats
        reason = str(stats.finish_reason) if stats and stats.finish_reason else (
            "error" if msg.error else "cancelled")
        self.current = None
        self.last_stats = stats
        app.generation_ended()
        self.query_one(Gauge).done(stats, reason)
        app.state = "cancelled" if reason == "cancelled" else "error" if reason == "error" else "ready"
        reply = self._turn  # None after Ctrl+N mid-stream: this run left the conversation
        if reason == "cancelled" and reply is not None:
            reply.add_class("cancelled")
            await self.query_one("#output", VerticalScroll).mount(
                Static(Text("[Generation cancelled]"), classes="cancel-mark", markup=False))
        if msg.error:
            self.notify(msg.error, title="Generation failed", severity="error", timeout=10)
        if stats is not None and stats.notice:
            self.notify(stats.notice, severity="warning", timeout=10)
        if reply is not None:
            await reply.finish()  # one final full render
            if stats is not None and stats.thinking_tokens and reply.thinking_block is not None:
                # the engine's own figures: thinking tokens (the tags too) and how long it took
                reply.branch.thinking_tokens = stats.thinking_tokens
                reply.branch.thought_for = stats.thinking_time
                reply.thinking_block.summarise()
            if msg.error:
                if app.settings.mode == "chat" and self.messages and self.messages[-1]["role"] == "user" \
                        and not self.reply_text:
                    self.messages.pop()  # nothing to answer; keep the conversation consistent
            elif app.settings.mode == "chat":
                self._set_reply_message(self.reply_text)
        self._save_run(stats, reason)
        self._last_view_takes_tab()
        self.ended += 1

    def _last_view_takes_tab(self) -> None:
        """Only the last reply's token view is a Tab stop (the one a branch is made from):
        a long conversation is not a long chain of Tab stops. Clicks still select tokens
        in the earlier ones."""
        views = list(self.query(TokenView))
        for view in views:
            view.can_focus = view is views[-1]

    def _set_reply_message(self, text: str) -> None:
        """The last assistant message of the conversation is this reply (a new one, or the
        branch now shown in its place)."""
        if self.messages and self.messages[-1]["role"] == "assistant":
            self.messages[-1] = {"role": "assistant", "content": text}
        else:
            self.messages.append({"role": "assistant", "content": text})

    def _save_run(self, stats: Stats | None, reason: str) -> None:
        req, turn = self._run_request, self._turn
        if req is None or stats is None or turn is None:
            return
        params = req.params.to_dict() | {"max_tokens": req.max_tokens}
        if req.session:
            params["conversation"] = req.session
        if req.system:
            params["system"] = req.system  # exports and reopened runs say what the model was told
        branch = turn.branch
        if branch.at is not None:  # a branch of an earlier run: say of which, and where
            params["branch"] = {"of": turn.branches[0].run_id, "at": branch.at}
        if branch.edited:  # the user's edit of an earlier reply, continued by the model
            params["edited"] = {"of": turn.branches[0].run_id}
        if branch.origin:  # F7 made it again, F8 went on from where it stopped
            params[branch.origin] = {"of": turn.branches[0].run_id}
        try:
            branch.run_id = self.mullama.history.add(RunRecord(
                model=self.mullama.model_label, mode=req.mode, prompt=req.prompt or "",
                messages=list(req.messages or []), params=params, output=branch.text, stats=stats.to_dict(),
                finish_reason=reason, tokens=[i.to_dict() for i in branch.items], thinking=branch.thinking))
        except Exception as e:  # history must never break generation
            self.notify(f"could not save history: {e}", severity="warning")

    def _tick(self) -> None:
        """Fallback while no tokens arrive (prompt processing): keep elapsed time moving."""
        gauge = self.query_one(Gauge)
        if gauge.due():
            gauge.tick()

    # -- actions -------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.mullama.state in ("generating", "waiting for model")
        return True

    def action_cancel(self) -> None:
        self._cancel_requested = True
        if self.current is not None:
            self.current.cancel()
        self.mullama.state = "cancelling"
        self.mullama.wake_waiters()  # a prompt waiting for the model stops waiting

    async def wait_finished(self, ended_before: int, timeout: float) -> None:
        """Until a generation's end has been handled here (shown and saved) since
        `ended` was `ended_before`."""
        import asyncio

        deadline = asyncio.get_running_loop().time() + timeout
        while self.ended <= ended_before and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)

    def cancel_running(self) -> None:
        """Cancel whatever this screen is generating (quit, model switch, new conversation)."""
        if self.current is not None:
            self.current.cancel()

    async def reopen(self, rec: RunRecord) -> None:
        """Show a past run and continue its conversation."""
        await self.action_new_conversation()
        await self._clear_hint()
        out = self.query_one("#output", VerticalScroll)
        turns = rec.messages or [{"role": "user", "content": rec.prompt}]
        for m in turns:
            if m["role"] == "user":
                await out.mount(user_turn(m["content"]))
            elif m["role"] == "assistant":
                await out.mount(assistant_turn(m["content"], "chat"))
        items = [TokenItem.from_dict(d) for d in rec.tokens]
        turn = assistant_turn(rec.output, rec.mode, self.token_view and bool(items), items)
        turn.branch.run_id = rec.id
        turn.branch.thinking = rec.thinking
        if rec.thinking:
            turn.branch.thinking_tokens = int(rec.stats.get("thinking_tokens") or 0)
            turn.branch.thought_for = float(rec.stats.get("thinking_time") or 0.0)
        request = Request(prompt=rec.prompt or None, messages=list(rec.messages) or None, mode=rec.mode,  # type: ignore[arg-type]
                          params=self.mullama.settings.sampler(),
                          max_tokens=int(rec.params.get("max_tokens", self.mullama.settings.max_tokens)))
        self._turn_requests[id(turn)] = request
        await out.mount(turn)
        if rec.finish_reason == "cancelled":  # as it looked when it was stopped
            turn.add_class("cancelled")
            await out.mount(Static(Text("[Generation cancelled]"), classes="cancel-mark", markup=False))
        self._turn = turn
        saved = rec.params.get("conversation")
        self.conversation = saved if isinstance(saved, str) and saved else new_conversation_id()
        if rec.mode == "chat":
            self.messages = [m for m in turns if m["role"] in ("user", "assistant")]
            self.messages.append({"role": "assistant", "content": rec.output})
        self.notify(f"reopened run {rec.id}")

    async def action_new_conversation(self) -> None:
        self.cancel_running()
        self.messages = []
        # a reply still streaming belongs to the old conversation: its last batches, its
        # end mark and its final render go nowhere, and it is not added to the new one
        self._turn = None
        self._turn_requests = {}
        self.conversation = new_conversation_id()
        self.query_one(Gauge).reset()  # a new conversation uses none of the context yet
        out = self.query_one("#output", VerticalScroll)
        await out.remove_children()
        await out.mount(self._hint())
        self.mullama.clear_cache()
        if self.mullama.state in ("cancelled", "error") and self.mullama.engine is not None:
            self.mullama.state = "ready"

    # -- the token view -----------------------------------------------------------------
    async def action_toggle_tokens(self) -> None:
        """Ctrl+T: every reply as its tokens (coloured by probability, with a cursor and the
        panel), or as text again. New replies record why each token was chosen while on."""
        s = self.mullama.settings
        s.token_view = not s.token_view
        self.mullama.save_settings()
        panel = self.query_one(TokenPanel)
        panel.display = s.token_view
        with self.app.batch_update():
            for turn in self.query(AssistantTurn):
                await turn.set_tokens(s.token_view)
        if s.token_view:
            self._last_view_takes_tab()
            views = list(self.query(TokenView))
            if views:
                views[-1].focus()
                views[-1].select(len(views[-1].items) - 1)
        else:
            self.query_one(PromptInput).focus()
        self.notify("token view: ←/→ a token, ↑/↓ an alternative, B branches from it, Enter back to the prompt"
                    if s.token_view else "text view")

    def on_token_view_left(self, msg: TokenView.Left) -> None:
        self._to_prompt(msg.text)

    def _to_prompt(self, text: str) -> None:
        """Back to the prompt, with what was typed elsewhere (type-to-focus)."""
        prompt = self.query_one(PromptInput)
        prompt.focus()
        if text:
            prompt.insert(text)

    def on_key(self, event: events.Key) -> None:
        """A character typed while the conversation (not the prompt) has the focus goes to
        the prompt: nothing typed is lost."""
        if event.is_printable and event.character and not isinstance(self.focused, (PromptInput, TokenView)):
            event.stop()
            event.prevent_default()
            self._to_prompt(event.character)

    def on_token_view_selected(self, msg: TokenView.Selected) -> None:
        item = msg.view.items[msg.index] if 0 <= msg.index < len(msg.view.items) else None
        self.query_one(TokenPanel).show(item, msg.index, msg.pick)

    async def on_token_view_branch_requested(self, msg: TokenView.BranchRequested) -> None:
        """Enter on an alternative: cut the reply there, put the alternative in its place,
        and generate on from it; the original stays as another branch of the turn."""
        turn = next((a for a in msg.view.ancestors if isinstance(a, AssistantTurn)), None)
        turns = list(self.query(AssistantTurn))
        if turn is None or not turns or turn is not turns[-1]:
            self.notify("branch from the last reply (the conversation goes on from there)", severity="warning")
            return
        if self.current is not None or self.mullama.state in ("generating", "cancelling", "waiting for model"):
            self.notify("a generation is running: Esc cancels it", severity="warning")
            return
        base = self._turn_requests.get(id(turn))
        at = turn.branch.items[msg.index] if msg.index < len(turn.branch.items) else None
        if base is None or at is None or at.insight is None:
            self.notify("no insight was recorded for this token: branch from a reply made in the token view",
                        severity="warning")
            return
        prefix = turn.branch.items[:msg.index]
        # everything of the original request (thinking switches included), cut at the token;
        # a fresh budget of max_tokens after it (a branch at token 60 of 64 is not 4 tokens long)
        request = replace(base, logprobs=INSIGHT_TOP, max_tokens=base.max_tokens,
                          prefix=[i.token_id for i in prefix], force=msg.alt.token_id)
        await turn.add_branch(msg.index)
        self.query_one(PromptInput).focus()  # ←/→ edit the prompt again, not the old reply's cursor
        self._start(turn, request, forced_insight(at.insight, msg.alt))

    def _last_reply(self, what: str) -> tuple[AssistantTurn, Request] | None:
        """The last reply and the request that made it, if `what` (regenerate, continue)
        can be done now; else a notification says why."""
        turns = list(self.query(AssistantTurn))
        if self.current is not None or self.mullama.state in ("generating", "cancelling", "waiting for model"):
            self.notify("a generation is running: Esc cancels it", severity="warning")
            return None
        base = self._turn_requests.get(id(turns[-1])) if turns else None
        if base is None:
            self.notify(f"no reply to {what} yet", severity="warning")
            return None
        return turns[-1], base

    async def action_regenerate(self) -> None:
        """F7: the last reply made again (another seed), as a new branch: Ctrl+B goes back."""
        found = self._last_reply("make again")
        if found is None:
            return
        turn, base = found
        request = replace(base, params=replace(base.params, seed=0), prefix=[], force=None,
                          logprobs=INSIGHT_TOP if self.token_view else 0)
        if base.params.is_greedy:
            self.notify("temperature 0 (greedy): the reply will come out the same", severity="warning")
        await turn.add_regeneration()
        self._start(turn, request)

    async def action_continue_reply(self) -> None:
        """F8: the model goes on from the end of the last reply (one that stopped at max
        tokens, or was cancelled) with a fresh budget of max_tokens; the reply as it was
        stays a branch (Ctrl+B)."""
        found = self._last_reply("continue")
        if found is None:
            return
        turn, base = found
        if not turn.text:
            self.notify("the reply is empty: F7 makes it again", severity="warning")
            return
        request = replace(base, prefix=[], force=None, continue_text=turn.text,
                          logprobs=INSIGHT_TOP if self.token_view else 0)
        await turn.add_continuation()
        self._start(turn, request)

    def action_edit(self) -> None:
        """F6: edit a turn of the conversation and go on from it (see screens/edit.py)."""
        app = self.mullama
        if self.current is not None or app.state in ("generating", "cancelling", "waiting for model"):
            self.notify("a generation is running: Esc cancels it", severity="warning")
            return
        if app.settings.mode != "chat" or not self.messages:
            self.notify("nothing to edit yet: F6 edits the turns of a chat conversation", severity="warning")
            return
        from .edit import EditScreen

        def done(change: TurnEdit | None) -> None:
            if change is not None:
                self.call_later(self.apply_edit, change)

        app.push_screen(EditScreen(list(self.messages)), done)

    def _turn_widgets(self) -> list[Widget]:
        """The conversation's turns in the output pane, in order (one per message)."""
        out = self.query_one("#output", VerticalScroll)
        return [w for w in out.children if w.has_class("user-turn") or isinstance(w, AssistantTurn)]

    async def apply_edit(self, change: TurnEdit) -> None:
        """An edited question: the turns after it go, and the reply is made again. An edited
        reply: the turns after it go, and the model goes on from the end of the edit (a new
        branch of that turn; Ctrl+B shows the original). The KV cache holds the conversation
        up to the first changed token, so only what follows it is decoded."""
        turns = self._turn_widgets()
        i = change.index
        if len(turns) != len(self.messages) or not 0 <= i < len(turns):
            self.notify("this conversation's turns do not match what is shown: Ctrl+N starts a new one",
                        severity="warning")
            return
        out = self.query_one("#output", VerticalScroll)
        widget = turns[i]
        children = list(out.children)
        for later in children[children.index(widget) + 1:]:
            await later.remove()
        role = self.messages[i]["role"]
        self.messages = self.messages[:i]
        if role == "user":
            await widget.remove()
            await self._begin(change.text)
            return
        assert isinstance(widget, AssistantTurn)
        try:
            request = self.mullama.request(messages=list(self.messages))
        except MullamaError as e:
            self.notify(str(e), title="Cannot send", severity="error", timeout=10)
            return
        request.continue_text = change.text
        request.session = self.conversation
        request.logprobs = INSIGHT_TOP if self.token_view else 0
        await widget.add_edit(change.text)
        self._turn_requests[id(widget)] = request
        self._start(widget, request)

    def action_scroll_output(self, direction: int) -> None:
        out = self.query_one("#output", VerticalScroll)
        if direction < 0:
            out.scroll_page_up(animate=False)
        else:
            out.scroll_page_down(animate=False)

    def action_copy_reply(self) -> None:
        """Ctrl+Y: the last reply's text (as streamed so far) to the clipboard, without the
        borders, gauge and prompt a terminal's own selection would take with it."""
        turns = list(self.query(AssistantTurn))
        text = turns[-1].text if turns else ""
        if not text:
            self.notify("no reply to copy yet", severity="warning")
            return
        self.app.copy_to_clipboard(text)
        self.notify(f"copied the reply ({len(text)} characters)")

    def action_toggle_thinking(self) -> None:
        """Ctrl+O: open or fold the thinking of the last reply that has some."""
        for turn in reversed(list(self.query(AssistantTurn))):
            if turn.thinking_block is not None:
                turn.thinking_block.fold()
                return

    async def action_next_branch(self) -> None:
        """Ctrl+B: show the next branch of the last reply (the conversation follows it)."""
        turns = list(self.query(AssistantTurn))
        if not turns or len(turns[-1].branches) < 2 or self.current is not None:
            return
        branch = await turns[-1].cycle()
        if self.mullama.settings.mode == "chat":
            self._set_reply_message(branch.text)

    def action_toggle_mode(self) -> None:
        s = self.mullama.settings
        s.mode = "raw" if s.mode == "chat" else "chat"
        self.mullama.save_settings()
        self.refresh_status()
        self.notify(f"{s.mode} mode")
