"""The Textual app: the engine's lifecycle, settings, themes, keymap and screens.

The conversation itself lives in `screens/chat.py` (the default screen); the compare,
history, models, params and help screens are pushed over it. Everything that needs a
generation asks the app for one (`submit`), with a request built from the settings in one
place (`request`), so no screen reaches into the engine's loading state.

Workers never wedge the UI: every crashed worker (anything but the typed errors a worker
handles itself) lands in `_handle_worker_error`, which ends that worker's run the normal
way (finished with an error) and says so loudly.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.reactive import reactive
from textual.worker import Worker, WorkerState

from ..backends import BackendChoice, is_server, open_engine, open_pane_engine
from ..config import Settings, session_store
from ..engine.api import Engine
from ..engine.generation import Generation
from ..engine.types import MullamaError, Request, SamplerParams
from ..history import History, RunRecord
from .messages import ModelChoice, ModelFailed, ModelLoaded, ModelLoadProgress, ModelSwitched
from .screens.chat import ChatScreen
from .themes import load_themes

if TYPE_CHECKING:  # the other screens load when first opened: the first frame does not wait for them
    from textual.driver import Driver

    from .screens.compare import CompareScreen

log = logging.getLogger("mullama_tui.tui")

MAX_PANES = 6  # the engine decodes up to this many sequences in one batch (compare panes)

AppState = Literal["loading", "ready", "waiting for model", "generating", "cancelling", "cancelled", "error"]


def calm_garbage_collector() -> None:
    """Keep Python's collector from pausing a stream or a cancel key.

    A full collection walks every object the app, Textual and the model loader made
    (~100 ms on a small machine: measured as the rare slow Esc). Freezing what exists
    once the model is loaded takes those objects out of every later collection, and a
    higher first threshold makes the young collections rarer; nothing stays uncollected.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, 10_000), gen1, gen2)


class NoModelError(MullamaError):
    """A generation was asked for, but no model could be loaded."""


def describe_engine(engine: Engine, asked_as: str | None = None) -> tuple[str, str]:
    """(name, detail) for the header and status line: a name a person recognises (see
    models/naming.py), and the file size, kind and where it runs."""
    from ..models.naming import display_name

    info = engine.model.info
    detail = info.description if not info.file_bytes else f"{info.file_bytes / 1e6:.0f} MB, {info.description}"
    placement = engine.model.placement
    if placement is not None:  # a local model: its file and where it runs
        detail += f", {Path(info.path).name}"
        detail += f", {placement.summary}"
    if engine.model.placement is None:  # a remote model: the server's name for it
        return info.name or "remote model", detail
    return display_name(info.path, asked_as=asked_as, gguf_name=info.name, description=info.description,
                        n_params=info.n_params), detail


class AppCommands(Provider):
    """Every app action in the command palette."""

    COMMANDS = [
        ("Parameters", "params", "Edit temperature, max tokens, stop strings, system prompt"),
        ("History", "history", "Browse, search, reopen and delete past runs"),
        ("Compare temperatures", "compare", "One prompt, several temperatures side by side"),
        ("Arena standings", "arena", "Win rates of the models and settings you voted on blind"),
        ("Models", "models", "Pick a local model to load, or make one the default"),
        ("New conversation", "screen.new_conversation", "Clear the conversation and the KV cache"),
        ("Toggle chat / raw mode", "screen.toggle_mode", "Chat template or raw prompt"),
        ("Token view", "screen.toggle_tokens", "Each token coloured by its probability; why it was chosen; branch"),
        ("Next branch", "screen.next_branch", "Show the next branch of the last reply"),
        ("Regenerate the last reply", "screen.regenerate", "Make it again with another seed, as a new branch (F7)"),
        ("Continue the last reply", "screen.continue_reply", "The model goes on from where it stopped (F8)"),
        ("Edit a turn", "screen.edit", "Edit a question (answered again) or a reply (continued from the edit)"),
        ("Copy the last reply", "screen.copy_reply", "The reply's text to the clipboard"),
        ("Cancel generation", "screen.cancel", "Stop the running generation"),
        ("Help", "help", "List every key"),
    ]

    async def discover(self) -> Hits:
        """Every command listed as soon as the palette opens (not only after typing)."""
        for name, action, help_text in self.COMMANDS:
            yield DiscoveryHit(name, lambda a=action: self.app.run_action(a), help=help_text)

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
        Binding("f1", "help", "Help", id="help"),
        Binding("f2", "params", "Params", id="params"),
        Binding("f3", "history", "History", id="history"),
        Binding("f4", "compare", "Compare", id="compare"),
        Binding("f5", "models", "Models", id="models"),
        Binding("ctrl+q", "quit", "Quit", show=False, id="quit"),
    ]

    state: reactive[AppState] = reactive("loading")
    compare_screen_class: type[CompareScreen] | None = None  # benchmarks push a timed subclass

    def __init__(self, model: str | None = None, theme_name: str | None = None,
                 ignore_eos: bool = False, compare: tuple[list[float], str | None] | None = None,
                 backend: BackendChoice | None = None, engine: Engine | None = None,
                 gpu_layers: int | None = None, threads: int | None = None,
                 compare_models: list[str] | None = None, arena: bool = False) -> None:
        """`compare=(temps, prompt)` opens the compare screen at start (and runs the prompt),
        with a pane per model of `compare_models` and temperature; `arena`: the standings.
        `engine`: use this backend instead of opening one. `ignore_eos` is for benchmarks
        only: every run generates exactly max_tokens."""
        super().__init__()
        self._start_compare = compare
        self._compare_models = compare_models
        self._start_arena = arena
        self._backend = backend
        self._ignore_eos = ignore_eos
        self._given_engine = engine
        self._gpu_layers = gpu_layers
        self._threads = threads
        self.model_arg = model
        self._asked_as: str | None = None  # the name the picker chose a model by
        self._pane_engines: dict[str, Engine] = {}  # compare panes' other models, by path
        self._pane_lock = threading.Lock()
        # held while a worker reads models outside their engines (the agreement pass):
        # no engine closes under it (llama.cpp would read freed memory)
        self.models_in_use = threading.Lock()
        # the model's name as a person knows it (titles, history rows) and what the status line adds
        self.model_label, self.model_detail = "loading...", ""
        self._theme_arg = theme_name
        try:
            self.settings = Settings.load()
            self._config_problems: list[str] = list(self.settings.problems)
        except ValueError as e:
            self.settings = Settings()
            self._config_problems = [f"config file ignored: {e}"]
        self.engine: Engine | None = None
        self.engine_error: str | None = None
        self._engine_changed = threading.Condition()
        self.history = History()
        # saved conversations' KV caches (None: kv_cache_max_mb = 0), shared by every engine
        # this app opens; written by the store's own thread
        self.sessions = session_store(self.settings)
        self.switching: str | None = None  # the model the picker is loading, if any
        self.switch_progress = 0.0
        self._retiring: list[Engine] = []  # engines replaced mid-generation, closed when it ends
        self._chat = ChatScreen()
        self._signal_loop: asyncio.AbstractEventLoop | None = None  # where signals hand their work
        self._ending = False

    # -- screens -----------------------------------------------------------------------
    def get_default_screen(self) -> ChatScreen:
        return self._chat

    @property
    def chat(self) -> ChatScreen:
        """The conversation screen (always at the bottom of the stack)."""
        return self._chat

    def on_mount(self) -> None:
        self._install_signal_handlers()
        themes, problems = load_themes()
        for t in themes:
            self.register_theme(t)
        for p in problems + self._config_problems:
            self.notify(p, severity="warning", timeout=8)
        if self.history.recovered is not None:
            self.notify(f"the history file was damaged: it was moved to {self.history.recovered} (kept, "
                        f"not deleted) and a new history started", title="History", severity="warning",
                        timeout=15)
        elif self.history.read_only:
            self.notify(f"the history is read-only ({self.history.path}): runs will not be saved",
                        title="History", severity="warning", timeout=10)
        wanted = self._theme_arg or self.settings.theme
        if wanted in self.available_themes:
            self.theme = wanted
        else:
            self.notify(f"unknown theme {wanted!r}; using the default", severity="warning")
            self.theme = "mullama-dark" if "mullama-dark" in self.available_themes else "textual-dark"
        if self.settings.keymap:
            self.set_keymap(self.settings.keymap)
        if self._given_engine is not None:
            self._engine_opened(self._given_engine)
        else:
            self._load_model()
        if self._start_compare is not None:
            temps, prompt = self._start_compare
            self.push_screen(self._compare_screen(temps, prompt, models=self._compare_models))
        elif self._start_arena:
            self.action_arena()

    def watch_theme(self, theme: str) -> None:
        if theme and getattr(self, "settings", None) is not None and theme != self.settings.theme:
            self.settings.theme = theme
            self.save_settings()

    def watch_state(self, state: AppState) -> None:
        self.sub_title = state
        self._chat.refresh_status()

    def save_settings(self) -> None:
        try:
            self.settings.save()
        except OSError as e:
            self.notify(f"could not save settings: {e}", severity="error")

    # -- generations: the one way screens get one ------------------------------------------
    def request(self, *, prompt: str | None = None, messages: list[dict[str, str]] | None = None,
                params: SamplerParams | None = None) -> Request:
        """A request for this prompt or transcript with the current settings."""
        return self.settings.request(prompt=prompt, messages=messages, params=params,
                                     ignore_eos=self._ignore_eos)

    @property
    def engine_ready(self) -> bool:
        return self.engine is not None

    @property
    def n_ctx(self) -> int:
        return (self.engine.n_ctx if self.engine is not None else 0) or self.settings.n_ctx

    def submit(self, request: Request, cancelled: Callable[[], bool] = lambda: False) -> Generation | None:
        """From a worker thread: wait until the engine is ready (a prompt sent while the
        model loads waits for it), then submit. Returns None if `cancelled()` turned true
        while waiting (`wake_waiters` makes it look again); raises `MullamaError`."""
        with self._engine_changed:
            self._engine_changed.wait_for(lambda: self.engine is not None or self.engine_error is not None
                                          or cancelled())
            engine, error = self.engine, self.engine_error
        if cancelled():
            return None
        if engine is None:
            raise NoModelError(error or "no model")
        return engine.submit(request)

    def pane_engine(self, path: str) -> Engine:
        """From a worker thread: the engine of a compare pane's own model, a GGUF or
        `openai:URL` (loaded once however many panes use it; `release_pane_engines`
        unloads the unused). The app's own model is the app's engine."""
        engine = self.engine
        if engine is not None and engine.model.placement is not None and not is_server(path) and \
                Path(engine.model.info.path).resolve() == Path(path).resolve():
            return engine
        with self._pane_lock:
            found = self._pane_engines.get(path)
            if found is None:
                found = open_pane_engine(path, n_ctx=self.settings.n_ctx, n_parallel=MAX_PANES,
                                         n_threads=self.n_threads, n_gpu_layers=self.gpu_layers,
                                         timeout=self.settings.timeout)
                self._pane_engines[path] = found
            return found

    def release_pane_engines(self, keep: frozenset[str] | set[str] = frozenset()) -> None:
        """Unload the pane models no pane uses any more (all of them when the compare screen closes)."""
        with self.models_in_use, self._pane_lock:
            for path in [p for p in self._pane_engines if p not in keep]:
                self._pane_engines.pop(path).close()

    def wake_waiters(self) -> None:
        """A waiting `submit` looks at its `cancelled()` again."""
        with self._engine_changed:
            self._engine_changed.notify_all()

    def clear_cache(self) -> None:
        if self.engine is not None:
            self.engine.clear_cache()

    def generation_ended(self) -> None:
        """A screen's generation finished: engines replaced during it can go now."""
        while self._retiring:
            self._retiring.pop().close()

    def _set_engine(self, engine: Engine | None, error: str | None = None) -> None:
        with self._engine_changed:
            self.engine, self.engine_error = engine, error
            self._engine_changed.notify_all()

    # -- model loading ---------------------------------------------------------------------
    @work(thread=True, group="load", exclusive=True, exit_on_error=False, description="open the model")
    def _load_model(self) -> None:
        s = self.settings
        choice = self._backend or BackendChoice(s.backend, s.base_url, s.api_key, s.remote_model, s.timeout)
        try:
            engine = open_engine(choice, self.model_arg, s.default_model, n_ctx=s.n_ctx,
                                 n_parallel=MAX_PANES, n_threads=self.n_threads,
                                 n_gpu_layers=self.gpu_layers, sessions=self.sessions)
        except MullamaError as e:
            self._set_engine(None, str(e))
            self.post_message(ModelFailed(str(e)))
            return
        self._set_engine(engine)
        self.post_message(ModelLoaded(*describe_engine(engine, self.model_asked_as)))

    @property
    def model_asked_as(self) -> str | None:
        """The MODEL the user named (or the configured default), for the model's display name."""
        return self._asked_as or self.model_arg or self.settings.default_model

    @property
    def gpu_layers(self) -> int | None:
        """`--gpu-layers` if given, else the config's (None: all layers where the build can)."""
        return self._gpu_layers if self._gpu_layers is not None else self.settings.gpu_layers

    def threads_label(self) -> str:
        """'threads 1/2 auto' for a local engine ('' for a remote one): what it decodes on now."""
        choice = self.engine.thread_choice() if self.engine is not None else None
        return choice.short if choice is not None else ""

    @property
    def n_threads(self) -> int | None:
        """`--threads` if given, else the config's: None for auto (chosen while it runs)."""
        return self._threads if self._threads is not None else self.settings.thread_count()

    def _engine_opened(self, engine: Engine) -> None:
        self._set_engine(engine)
        self.on_model_loaded(ModelLoaded(*describe_engine(engine, self.model_asked_as)))

    def reload_engine(self) -> None:
        """Switch backend (or model): close the old engine, load the new one in the background."""
        self._chat.cancel_running()
        old = self.engine
        self._set_engine(None)
        self.model_label, self.model_detail = "loading...", ""
        self.state = "loading"
        if old is not None:
            old.close()
        self._load_model()

    @property
    def model_name(self) -> str:
        """The status line's: the name and where it runs ("SmolLM2-135M-Instruct Q4_1 (98 MB, ..., CPU)")."""
        return f"{self.model_label} ({self.model_detail})" if self.model_detail else self.model_label

    def on_model_loaded(self, msg: ModelLoaded) -> None:
        self.model_label, self.model_detail = msg.name, msg.detail
        self.title = f"mullama-tui · {msg.name}"
        if self.state == "loading":
            self.state = "ready"
        self._chat.refresh_status()
        calm_garbage_collector()

    def on_model_failed(self, msg: ModelFailed) -> None:
        self.model_label, self.model_detail = "no model", ""
        self.state = "error"
        self.notify(msg.error, title="Model failed to load", severity="error", timeout=15)

    # -- switching models (the picker) ----------------------------------------------------
    def action_models(self) -> None:
        current = Path(self.engine.model.info.path) if self.engine is not None and self.engine.model.placement else None

        def done(choice: ModelChoice | None) -> None:
            if choice is not None:
                self.switch_model(choice)

        from .screens.models import ModelsScreen

        self.push_screen(ModelsScreen(current, self.settings.default_model), done)

    def switch_model(self, choice: ModelChoice) -> None:
        """Load `choice` in the background; the current engine keeps serving until it is ready."""
        if self.switching is not None:
            self.notify(f"already loading {self.switching}", severity="warning")
            return
        self.switching = choice.name
        self._chat.refresh_status()
        self._load_switch(choice)

    @work(thread=True, group="switch", exclusive=True, exit_on_error=False, description="load a picked model")
    def _load_switch(self, choice: ModelChoice) -> None:
        from ..engine.local import LocalEngine

        last = [-1.0]

        def progress(fraction: float) -> None:
            if fraction - last[0] >= 0.05 or fraction >= 1.0:  # ~20 messages per load, not thousands
                last[0] = fraction
                self.post_message(ModelLoadProgress(choice.name, fraction))

        s = self.settings
        try:
            engine = LocalEngine(choice.path, n_ctx=s.n_ctx, n_parallel=MAX_PANES, n_threads=self.n_threads,
                                 n_gpu_layers=self.gpu_layers, on_progress=progress, sessions=self.sessions)
        except MullamaError as e:  # the old model stays
            self.post_message(ModelSwitched(None, choice, str(e)))
            return
        self.post_message(ModelSwitched(engine, choice))

    def on_model_load_progress(self, msg: ModelLoadProgress) -> None:
        self.switch_progress = msg.fraction
        self._chat.refresh_status()

    def on_model_switched(self, msg: ModelSwitched) -> None:
        self.switching, self.switch_progress = None, 0.0
        if msg.engine is None:
            self.notify(msg.error or "?", title=f"Could not load {msg.choice.name}", severity="error", timeout=15)
            self._chat.refresh_status()
            return
        old = self.engine
        self._backend = BackendChoice("local")  # a picked model is local, whatever ran before
        self.model_arg = str(msg.choice.path)
        self._asked_as = msg.choice.name
        self._set_engine(msg.engine)
        if old is not None:
            if self._chat.current is not None:
                self._retiring.append(old)  # closed when the running generation ends
            else:
                old.close()
        if msg.choice.make_default:
            self.settings.default_model = str(msg.choice.path) if msg.choice.name == "bundled" else msg.choice.name
            self.save_settings()
        self.on_model_loaded(ModelLoaded(*describe_engine(msg.engine, self.model_asked_as)))
        if self.state in ("error", "loading"):
            self.state = "ready"
        self.notify(f"now using {msg.choice.name}" + (" (saved as the default)" if msg.choice.make_default else ""))

    # -- workers that crashed --------------------------------------------------------------
    @on(Worker.StateChanged)
    def handle_worker_error(self, event: Worker.StateChanged) -> None:
        """One place for every worker that raised what it did not handle itself: its owner
        ends the run it was doing as failed (`worker_failed(group, error)`), and the user
        is told. Without this a crashed generation worker left the app 'generating'."""
        worker = event.worker
        if event.state is not WorkerState.ERROR:
            return
        error = worker.error
        text = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
        log.error("worker %s (%s) failed: %s", worker.group, worker.description, text, exc_info=error)
        owner = worker.node
        if hasattr(owner, "worker_failed"):
            owner.worker_failed(worker.group, text)
        self.notify(text, title=f"Unexpected error ({worker.description or worker.group})", severity="error",
                    timeout=20)

    def worker_failed(self, group: str, error: str) -> None:
        """The app's own workers: a failed load leaves no model, a failed switch keeps the old one."""
        if group == "load":
            self._set_engine(None, error)
            self.post_message(ModelFailed(error))
        elif group == "switch":
            self.switching, self.switch_progress = None, 0.0
            self._chat.refresh_status()

    # -- actions -------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """On the compare screen F4 means nothing, and F5 is the screen's own (a pane's model)."""
        if action in ("compare", "models") and self.screen.has_class("compare"):
            return False
        return True

    def _compare_screen(self, *args: object, **kwargs: object) -> CompareScreen:
        from .screens.compare import CompareScreen

        return (self.compare_screen_class or CompareScreen)(*args, **kwargs)  # type: ignore[arg-type]

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        self.push_screen(HelpScreen(getattr(self.screen, "HELP_NOTES", ()), below=self.screen))

    def action_params(self) -> None:
        def done(new: Settings | None) -> None:
            if new is None:
                return
            def backend_of(x: Settings) -> tuple[object, ...]:
                return (x.backend, x.base_url, x.api_key, x.remote_model, x.gpu_layers)

            reload = backend_of(new) != backend_of(self.settings)
            threads_changed = new.threads != self.settings.threads
            self.settings = new
            self.save_settings()
            self._chat.refresh_status()
            self.notify("parameters saved")
            if reload:
                self._backend = None  # from now on the saved settings choose the backend
                self._gpu_layers = None
                self.reload_engine()
            elif threads_changed:
                self._threads = None  # the saved setting rules from now on
                if self.engine is not None:
                    self.engine.set_threads(self.n_threads)  # the running engine, from its next step

        from .screens.params import ParamsScreen

        self.push_screen(ParamsScreen(self.settings), done)

    def action_history(self) -> None:
        def done(rec: RunRecord | None) -> None:
            if rec is not None and rec.kind == "compare":
                self.push_screen(self._compare_screen(record=rec))
            elif rec is not None:
                self.call_later(self._chat.reopen, rec)

        from .screens.history import HistoryScreen

        self.push_screen(HistoryScreen(self.history, self.sessions), done)

    def action_arena(self) -> None:
        """The standings of the blind votes; Enter on a vote reopens its comparison."""
        from .screens.arena import ArenaScreen

        def done(rec: RunRecord | None) -> None:
            if rec is not None:
                self.push_screen(self._compare_screen(record=rec))

        self.push_screen(ArenaScreen(self.history), done)

    def action_compare(self) -> None:
        """F4: the prompt typed on the chat screen comes along."""
        prompt = self._chat.prompt_text.strip() if self.screen is self._chat else ""
        self.push_screen(self._compare_screen(prompt=prompt or None, carry=True))

    async def action_quit(self) -> None:
        self._chat.cancel_running()
        self.exit()

    def get_driver_class(self) -> type[Driver]:
        """Textual's terminal driver, made safe for a terminal that goes away (tui/terminal.py)."""
        chosen = super().get_driver_class()
        if chosen.__module__ == "textual.drivers.linux_driver":  # not on Windows, nor a driver set by TEXTUAL_DRIVER
            from .terminal import TerminalDriver

            return TerminalDriver
        return chosen

    def end_soon(self) -> None:
        """From any thread or a signal handler: end as Ctrl+Q does (SIGTERM; SIGHUP; the
        terminal went away: its window closed, ssh dropped, and nothing more is written to it)."""
        loop = self._signal_loop
        if loop is not None:
            loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._signalled()))

    def _install_signal_handlers(self) -> None:
        """SIGTERM (kill, a closing session manager) and SIGHUP (the terminal window
        closed) end the app as Ctrl+Q does: the running generation is cancelled and saved
        as cancelled, and Textual restores the terminal (alternate screen, mouse
        tracking). Python's default for both is to die on the spot, leaving the terminal
        unusable."""
        import signal

        self._signal_loop = asyncio.get_running_loop()

        def handler(_sig: int, _frame: object) -> None:
            # runs in the main thread between two bytecodes: hand the work to the event loop
            self.end_soon()

        for sig in (signal.SIGTERM, signal.SIGHUP):
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError, AttributeError):  # not the main thread (tests), or Windows
                pass

    async def _signalled(self) -> None:
        if self._ending:  # SIGHUP and a failed write to the gone terminal both say it
            return
        self._ending = True
        chat = self._chat
        ended = chat.ended
        running = chat.current is not None or self.state in ("generating", "waiting for model", "cancelling")
        if running:  # as Esc: also a generation whose worker has not submitted it yet
            chat.action_cancel()
            # let the cancelled run reach the history before the app goes
            await chat.wait_finished(ended, 3.0)
        self.exit(return_code=0)

    def on_unmount(self) -> None:
        self._chat.cancel_running()
        self.release_pane_engines()
        with self.models_in_use:
            for engine in [self.engine, *self._retiring]:
                if engine is not None:
                    engine.close()  # a reply cancelled here is saved as it ends
        if self.sessions is not None:
            self.sessions.close()  # every queued save on disk before the process goes
        self.history.close()
