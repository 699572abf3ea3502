"""The Textual app: prompt, streaming output pane, live gauge, cancel keys, history, themes.

Message flow (why it is shaped this way):
- the model loads in a thread worker, so the screen is interactive at once; a prompt sent
  before it is ready waits for it (the generation worker blocks on `_engine_ready`);
- a generation's tokens are decoded by the engine's scheduler thread; a thread worker
  here drains the generation's channel and posts one `TokenBatch` every 200 ms with
  `post_message` (which never blocks), so the UI gets 5 updates a second
  whatever the token rate, and decoding never waits for the screen to draw;
- Esc / Ctrl+C are priority bindings enabled only while generating (`check_action`), so
  they win over the inputs' own Ctrl+C (copy) and the app's quit hint; they call the
  generation's `cancel()`, which the scheduler honours before its next decode step.
"""

from __future__ import annotations

import threading
from pathlib import Path
import time

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import Hit, Hits, Provider
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from ..config import Settings
from ..engine.backends import BackendChoice, open_engine
from ..engine.generation import Generation
from ..engine.types import MullamaError, Request, Stats
from ..history import History, RunRecord
from .messages import (GenerationFinished, GenerationStarted, ModelFailed, ModelLoaded, ModelLoadProgress,
                       ModelSwitched, TokenBatch)
from .screens.compare import CompareScreen
from .screens.help import HelpScreen
from .screens.history import HistoryScreen
from .screens.models import ModelChoice, ModelsScreen
from .screens.params import ParamsScreen, sampler_params
from .themes import load_themes
from .widgets.gauge import Gauge
from .widgets.output import MarkdownReply, RawOutput
from .widgets.prompt import PromptInput, with_blink

# Seconds between TokenBatch messages: 5 screen updates a second while streaming, each
# carrying the new text and the gauge (so the gauge refreshes at 5 Hz). Every frame
# preempts one of llama.cpp's two compute threads on a 2-core machine (measured: UI-thread
# CPU per 1000 tokens 0.55 s at 4 frames/s, 0.85 s at 8, 1.3 s at 10 before the layout
# savings in widgets/output.py and widgets/gauge.py), so frames are kept few and cheap.
BATCH_INTERVAL = 0.2
MAX_PANES = 6  # the engine decodes up to this many sequences in one batch (compare panes)
GAUGE_INTERVAL = 0.2  # the gauge refreshes 5 times a second while generating


def describe_engine(engine) -> tuple[str, str]:
    """(name, detail) for the header and status line: the model's name, file size and kind."""
    info = engine.model.info
    detail = info.description if not info.file_bytes else f"{info.file_bytes / 1e6:.0f} MB, {info.description}"
    path = getattr(engine.model, "path", None)
    if path is not None:
        detail += f", {Path(path).name}"
    return info.name or "remote model", detail


def user_turn(text: str) -> Static:
    """A user's prompt in the output pane (never parsed as markup)."""
    return Static(Text(text), classes="user-turn", markup=False)


def assistant_turn(text: str, mode: str) -> MarkdownReply | RawOutput:
    """A reply: Markdown in chat mode, plain text in raw mode."""
    if mode == "chat":
        return MarkdownReply(text, classes="assistant-turn")
    return RawOutput(text, classes="assistant-turn raw")


class AppCommands(Provider):
    """Every app action in the command palette."""

    COMMANDS = [
        ("Parameters", "params", "Edit temperature, max tokens, stop strings, system prompt"),
        ("History", "history", "Browse, search, reopen and delete past runs"),
        ("Compare temperatures", "compare", "One prompt, several temperatures side by side"),
        ("Models", "models", "Pick a local model to load, or make one the default"),
        ("New conversation", "new_conversation", "Clear the conversation and the KV cache"),
        ("Toggle chat / raw mode", "toggle_mode", "Chat template or raw prompt"),
        ("Cancel generation", "cancel", "Stop the running generation"),
        ("Help", "help", "List every key"),
    ]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self.COMMANDS:
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name),
                          lambda a=action: self.app.run_action(a), help=help_text)


class MullamaApp(App[None]):
    CSS_PATH = Path(__file__).parent / "app.tcss"
    TITLE = "mullama-tui"
    COMMANDS = App.COMMANDS | {AppCommands}
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", priority=True, id="cancel"),
        Binding("ctrl+c", "cancel", "Cancel", priority=True, show=False, id="cancel-ctrl-c"),
        Binding("f1", "help", "Help", id="help"),
        Binding("f2", "params", "Params", id="params"),
        Binding("f3", "history", "History", id="history"),
        Binding("f4", "compare", "Compare", id="compare"),
        Binding("f5", "models", "Models", id="models"),
        Binding("ctrl+n", "new_conversation", "New chat", id="new-conversation"),
        Binding("ctrl+r", "toggle_mode", "Chat/Raw", id="toggle-mode"),
        Binding("ctrl+q", "quit", "Quit", id="quit"),
    ]

    state: reactive[str] = reactive("loading")

    def __init__(self, model: str | None = None, theme_name: str | None = None,
                 ignore_eos: bool = False, compare: tuple[list[float], str | None] | None = None,
                 backend: BackendChoice | None = None) -> None:
        """`compare=(temps, prompt)` opens the compare screen at start (and runs the prompt).
        `ignore_eos` is for benchmarks only: every run generates exactly max_tokens."""
        super().__init__()
        self._start_compare = compare
        self._backend = backend
        self._ignore_eos = ignore_eos
        self.model_arg = model
        self._theme_arg = theme_name
        try:
            self.settings = Settings.load()
            self._config_problem: str | None = None
        except ValueError as e:
            self.settings = Settings()
            self._config_problem = f"config file ignored: {e}"
        self.engine = None
        self._engine_ready = threading.Event()
        self._engine_error: str | None = None
        self.history = History()
        self.messages: list[dict[str, str]] = []
        self.current: Generation | None = None
        self._cancel_requested = False
        self._output_text = ""
        self._output_widget: MarkdownReply | RawOutput | None = None
        self._run_request: Request | None = None
        self.last_stats: Stats | None = None
        self.model_name = "loading..."
        self._switching: str | None = None  # the model the picker is loading, if any
        self._switch_progress = 0.0
        self._retiring: list = []  # engines replaced mid-generation, closed when it ends
        self._cursor_blink = True

    # -- layout ----------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="status", markup=False)
        yield VerticalScroll(id="output")
        yield Gauge(id="gauge")
        yield with_blink(PromptInput(id="prompt"), self.settings.cursor_blink)
        yield Footer()

    def on_mount(self) -> None:
        themes, problems = load_themes()
        for t in themes:
            self.register_theme(t)
        for p in problems + ([self._config_problem] if self._config_problem else []):
            self.notify(p, severity="warning", timeout=8)
        wanted = self._theme_arg or self.settings.theme
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self.notify(f"unknown theme {wanted!r}; using the default", severity="warning")
            self.theme = "mullama-dark" if "mullama-dark" in self.available_themes else "textual-dark"
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        self.query_one("#output", VerticalScroll).anchor()
        self._gauge_timer = self.set_interval(GAUGE_INTERVAL, self._tick, pause=True)
        self.query_one(PromptInput).focus()
        self._cursor_blink = self.query_one(PromptInput).cursor_blink
        self._update_status()
        self._load_model()
        if self._start_compare is not None:
            temps, prompt = self._start_compare
            self.push_screen(CompareScreen(temps, prompt))

    def watch_theme(self, theme: str) -> None:
        if theme and getattr(self, "settings", None) is not None and theme != self.settings.theme:
            self.settings.theme = theme
            self._save_settings()

    def watch_state(self, state: str) -> None:
        self.sub_title = state
        self._update_status()

    def _save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as e:
            self.notify(f"could not save settings: {e}", severity="error")

    def _update_status(self) -> None:
        if not self.is_mounted:
            return
        s = self.settings
        text = (f"{self.state} · {s.mode} · temp {s.temperature} · top-k {s.top_k} · "
                f"top-p {s.top_p} · min-p {s.min_p} · rep {s.repeat_penalty} · max {s.max_tokens}"
                f" · seed {s.seed or 'random'} · {self.model_name}")
        if self._switching:
            text += f" · loading {self._switching} {self._switch_progress:.0%}"
        self.query_one("#status", Static).update(Text(text))

    # -- model loading -----------------------------------------------------------------
    @work(thread=True, group="load", exclusive=True, exit_on_error=False)
    def _load_model(self) -> None:
        try:
            s = self.settings
            choice = self._backend or BackendChoice(s.backend, s.base_url, s.api_key, s.remote_model, s.timeout)
            engine = open_engine(choice, self.model_arg, s.default_model, n_ctx=s.n_ctx,
                                 n_parallel=MAX_PANES, n_threads=s.threads or None)
        except MullamaError as e:
            self._engine_error = str(e)
            self._engine_ready.set()
            self.post_message(ModelFailed(str(e)))
            return
        except Exception as e:  # an unexpected failure must still reach the UI, not crash it
            self._engine_error = f"{type(e).__name__}: {e}"
            self._engine_ready.set()
            self.post_message(ModelFailed(self._engine_error))
            return
        self.engine = engine
        self._engine_ready.set()
        self.post_message(ModelLoaded(*describe_engine(engine)))

    def reload_engine(self) -> None:
        """Switch backend (or model): close the old engine, load the new one in the background."""
        if self.current is not None:
            self.current.cancel()
        old, self.engine = self.engine, None
        self._engine_ready.clear()
        self._engine_error = None
        self.model_name = "loading..."
        self.state = "loading"
        if old is not None:
            old.close()
        self._load_model()

    # -- switching models (the picker) ----------------------------------------------------
    def action_models(self) -> None:
        current = getattr(getattr(self.engine, "model", None), "path", None)

        def done(choice: ModelChoice | None) -> None:
            if choice is not None:
                self.switch_model(choice)

        self.push_screen(ModelsScreen(current, self.settings.default_model), done)

    def switch_model(self, choice: ModelChoice) -> None:
        """Load `choice` in the background; the current engine keeps serving until it is ready."""
        if self._switching is not None:
            self.notify(f"already loading {self._switching}", severity="warning")
            return
        self._switching = choice.name
        self._update_status()
        self._load_switch(choice)

    @work(thread=True, group="switch", exclusive=True, exit_on_error=False)
    def _load_switch(self, choice: ModelChoice) -> None:
        from ..engine.local import LocalEngine

        last = [-1.0]

        def progress(fraction: float) -> None:
            if fraction - last[0] >= 0.05 or fraction >= 1.0:  # ~20 messages per load, not thousands
                last[0] = fraction
                self.post_message(ModelLoadProgress(choice.name, fraction))

        s = self.settings
        try:
            engine = LocalEngine(choice.path, n_ctx=s.n_ctx, n_parallel=MAX_PANES, n_threads=s.threads or None,
                                 on_progress=progress)
        except Exception as e:  # a typed MullamaError, or anything unexpected: the old model stays
            self.post_message(ModelSwitched(None, choice, str(e)))
            return
        self.post_message(ModelSwitched(engine, choice))

    def on_model_load_progress(self, msg: ModelLoadProgress) -> None:
        self._switch_progress = msg.fraction
        self._update_status()

    def on_model_switched(self, msg: ModelSwitched) -> None:
        self._switching, self._switch_progress = None, 0.0
        if msg.engine is None:
            self.notify(msg.error or "?", title=f"Could not load {msg.choice.name}", severity="error", timeout=15)
            self._update_status()
            return
        old, self.engine = self.engine, msg.engine
        self._backend = BackendChoice("local")  # a picked model is local, whatever ran before
        self.model_arg = str(msg.choice.path)
        self._engine_error = None
        self._engine_ready.set()
        if old is not None:
            if self.current is not None:
                self._retiring.append(old)  # closed when the running generation ends
            else:
                old.close()
        if msg.choice.make_default:
            self.settings.default_model = str(msg.choice.path) if msg.choice.name == "bundled" else msg.choice.name
            self._save_settings()
        self.on_model_loaded(ModelLoaded(*describe_engine(msg.engine)))
        if self.state in ("error", "loading"):
            self.state = "ready"
        self.notify(f"now using {msg.choice.name}" + (" (saved as the default)" if msg.choice.make_default else ""))

    def on_model_loaded(self, msg: ModelLoaded) -> None:
        self.model_name = f"{msg.name} ({msg.detail})"
        self.title = f"mullama-tui · {msg.name}"
        if self.state == "loading":
            self.state = "ready"
        self._update_status()

    def on_model_failed(self, msg: ModelFailed) -> None:
        self.model_name = "no model"
        self.state = "error"
        self.notify(msg.error, title="Model failed to load", severity="error", timeout=15)

    # -- sending -----------------------------------------------------------------------
    @on(PromptInput.Submitted)
    async def send(self, event: PromptInput.Submitted) -> None:
        if self.current is not None or self.state in ("generating", "cancelling", "waiting for model"):
            self.notify("a generation is running: Esc cancels it", severity="warning")
            return
        if self._engine_error:
            self.notify(self._engine_error, title="No model", severity="error")
            return
        s = self.settings
        prompt = event.text
        if s.mode == "chat":
            self.messages.append({"role": "user", "content": prompt})
            request = Request(messages=list(self.messages), mode="chat", system=s.system or None,
                              params=sampler_params(s), max_tokens=s.max_tokens,
                              ignore_eos=self._ignore_eos)
        else:
            request = Request(prompt=prompt, mode="raw", params=sampler_params(s),
                              max_tokens=s.max_tokens, ignore_eos=self._ignore_eos)
        self._run_request = request
        out = self.query_one("#output", VerticalScroll)
        widget = assistant_turn("", s.mode)
        await out.mount(user_turn(prompt), widget)
        self._output_widget = widget
        self._output_text = ""
        self._cancel_requested = False
        gauge = self.query_one(Gauge)
        gauge.start(s.max_tokens, self.engine.n_ctx if self.engine else s.n_ctx)
        self.state = "generating" if self._engine_ready.is_set() else "waiting for model"
        self._gauge_timer.resume()
        self.query_one(PromptInput).cursor_blink = False  # 2 frames a second fewer while streaming
        out.anchor()
        self._generate(request)

    @work(thread=True, group="generate", exit_on_error=False)
    def _generate(self, request: Request) -> None:
        """Drain the generation and post batched tokens; never one message per token."""
        worker = get_current_worker()
        while not self._engine_ready.wait(0.05):
            if self._cancel_requested or worker.is_cancelled:
                self.post_message(GenerationFinished(None, None))
                return
        if self.engine is None:
            self.post_message(GenerationFinished(None, self._engine_error or "no model"))
            return
        try:
            gen = self.engine.submit(request)
        except MullamaError as e:
            self.post_message(GenerationFinished(None, str(e)))
            return
        self.current = gen
        if self._cancel_requested:
            gen.cancel()
        self.post_message(GenerationStarted(len(gen.prompt_tokens)))
        pending: list[str] = []
        count = 0
        ttft: float | None = None
        last_post = time.perf_counter()
        while True:
            if worker.is_cancelled:
                gen.cancel()
            # Sleep until the next batch is due (or the generation ends) rather than wake
            # on every token: on 2 cores each wake-up preempts one of llama.cpp's threads.
            gen.wait(max(0.0, last_post + BATCH_INTERVAL - time.perf_counter()))
            events = gen.take(timeout=0)
            final = None
            for ev in events:
                if ev.text:
                    pending.append(ev.text)
                    if ttft is None:
                        ttft = time.perf_counter() - gen.t_submit
                if ev.done:
                    final = ev
                else:
                    count += 1
            now = time.perf_counter()
            if (pending or count) and (final is not None or now - last_post >= BATCH_INTERVAL):
                self.post_message(TokenBatch("".join(pending), count, ttft))
                pending, count, last_post = [], 0, now
            if final is not None:
                self.post_message(GenerationFinished(final.stats, final.stats.error if final.stats else None))
                return

    def on_generation_started(self, msg: GenerationStarted) -> None:
        if self.state == "waiting for model":
            self.state = "generating"
        gauge = self.query_one(Gauge)
        gauge.prompt_tokens = msg.prompt_tokens

    async def on_token_batch(self, msg: TokenBatch) -> None:
        gauge = self.query_one(Gauge)
        gauge.add_tokens(msg.n_tokens, msg.ttft)
        if gauge.due(GAUGE_INTERVAL):  # ride on this batch's screen refresh, not a separate one
            gauge.tick()
        self._gauge_timer.reset()  # the fallback ticks only when batches stop coming
        if not msg.text or self._output_widget is None:
            return
        self._output_text += msg.text
        if isinstance(self._output_widget, MarkdownReply):
            await self._output_widget.append(msg.text)
        else:
            self._output_widget.append(msg.text)

    async def on_generation_finished(self, msg: GenerationFinished) -> None:
        """Show that it stopped first (state, gauge, mark), then do the slower work: the
        final full Markdown render, the conversation and the history row."""
        self._gauge_timer.pause()
        self.query_one(PromptInput).cursor_blink = self._cursor_blink
        stats = msg.stats
        reason = str(stats.finish_reason) if stats and stats.finish_reason else (
            "error" if msg.error else "cancelled")
        self.current = None
        self.last_stats = stats
        while self._retiring:
            self._retiring.pop().close()
        self.query_one(Gauge).done(stats, reason)
        self.state = reason if reason in ("cancelled", "error") else "ready"
        in_conversation = self._output_widget is not None  # not after Ctrl+N mid-stream
        if reason == "cancelled" and in_conversation:
            self._output_widget.add_class("cancelled")
            await self.query_one("#output", VerticalScroll).mount(
                Static(Text("[Generation cancelled]"), classes="cancel-mark", markup=False))
        if msg.error:
            self.notify(msg.error, title="Generation failed", severity="error", timeout=10)
        if isinstance(self._output_widget, MarkdownReply):
            await self._output_widget.finish()  # one final full Markdown render
        elif self._output_widget is not None:
            self._output_widget.finish()
        if in_conversation and msg.error:
            if self.settings.mode == "chat" and self.messages and self.messages[-1]["role"] == "user" \
                    and not self._output_text:
                self.messages.pop()  # nothing to answer; keep the conversation consistent
        elif in_conversation and self.settings.mode == "chat":
            self.messages.append({"role": "assistant", "content": self._output_text})
        self._save_run(stats, reason)

    def _save_run(self, stats: Stats | None, reason: str) -> None:
        req = self._run_request
        if req is None or stats is None:
            return
        try:
            self.history.add(RunRecord(
                model=self.model_name, mode=req.mode, prompt=req.prompt or "",
                messages=list(req.messages or []), params=req.params.to_dict() | {"max_tokens": req.max_tokens},
                output=self._output_text, stats=stats.to_dict(), finish_reason=reason))
        except Exception as e:  # history must never break generation
            self.notify(f"could not save history: {e}", severity="warning")

    def _tick(self) -> None:
        """Fallback while no tokens arrive (prompt processing): keep elapsed time moving."""
        gauge = self.query_one(Gauge)
        if gauge.due(GAUGE_INTERVAL):
            gauge.tick()

    # -- actions -------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "cancel":
            return self.state in ("generating", "waiting for model")
        return True

    def action_cancel(self) -> None:
        self._cancel_requested = True
        if self.current is not None:
            self.current.cancel()
        self.state = "cancelling"

    def action_help(self) -> None:
        self.push_screen(HelpScreen(getattr(self.screen, "HELP_NOTES", ())))

    def action_params(self) -> None:
        def done(new: Settings | None) -> None:
            if new is None:
                return
            key = lambda x: (x.backend, x.base_url, x.api_key, x.remote_model)  # noqa: E731
            backend_changed = key(new) != key(self.settings)
            self.settings = new
            self._save_settings()
            self._update_status()
            self.notify("parameters saved")
            if backend_changed:
                self._backend = None  # from now on the saved settings choose the backend
                self.reload_engine()

        self.push_screen(ParamsScreen(self.settings), done)

    def action_history(self) -> None:
        def done(rec: RunRecord | None) -> None:
            if rec is not None and rec.kind == "compare":
                self.push_screen(CompareScreen(record=rec))
            elif rec is not None:
                self.call_later(self.reopen, rec)

        self.push_screen(HistoryScreen(self.history), done)

    async def reopen(self, rec: RunRecord) -> None:
        """Show a past run and continue its conversation."""
        await self.action_new_conversation()
        out = self.query_one("#output", VerticalScroll)
        turns = rec.messages or [{"role": "user", "content": rec.prompt}]
        for m in turns:
            if m["role"] == "user":
                await out.mount(user_turn(m["content"]))
            elif m["role"] == "assistant":
                await out.mount(assistant_turn(m["content"], "chat"))
        await out.mount(assistant_turn(rec.output, rec.mode))
        if rec.mode == "chat":
            self.messages = [m for m in turns if m["role"] in ("user", "assistant")]
            self.messages.append({"role": "assistant", "content": rec.output})
        self.notify(f"reopened run {rec.id}")

    async def action_new_conversation(self) -> None:
        if self.current is not None:
            self.current.cancel()
        self.messages = []
        # a reply still streaming belongs to the old conversation: its last batches, its
        # end mark and its final render go nowhere, and it is not added to the new one
        self._output_widget = None
        await self.query_one("#output", VerticalScroll).remove_children()
        if self.engine is not None:
            self.engine.clear_cache()
        if self.state in ("cancelled", "error") and self.engine is not None:
            self.state = "ready"

    def action_compare(self) -> None:
        self.push_screen(CompareScreen())

    def action_toggle_mode(self) -> None:
        self.settings.mode = "raw" if self.settings.mode == "chat" else "chat"
        self._save_settings()
        self._update_status()
        self.notify(f"{self.settings.mode} mode")

    async def action_quit(self) -> None:
        if self.current is not None:
            self.current.cancel()
        self.exit()

    def on_unmount(self) -> None:
        if self.current is not None:
            self.current.cancel()
        for engine in [self.engine, *self._retiring]:
            if engine is not None:
                engine.close()
        self.history.close()

