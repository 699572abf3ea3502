"""A modal to edit sampler and generation settings; returns the new Settings or None."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Switch

from ...config import Settings
from ...engine.threads import parse_threads
from ...engine.types import InvalidParamsError
from ..widgets.prompt import with_blink

FIELDS = [  # (settings field, label, type)
    ("temperature", "Temperature", float), ("max_tokens", "Max tokens", int),
    ("top_k", "Top-k", int), ("top_p", "Top-p", float), ("min_p", "Min-p", float),
    ("repeat_penalty", "Repeat penalty", float), ("seed", "Seed (0 = random)", int),
]


def optional_int(raw: str) -> int | None:
    return int(raw) if raw.strip() else None


class ParamsScreen(ModalScreen[Settings | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Close"), Binding("ctrl+s", "save", "Save")]
    DEFAULT_CSS = """
    ParamsScreen { align: center middle; }
    ParamsScreen > Vertical { width: 72; height: auto; max-height: 100%; border: thick $primary;
                              background: $surface; padding: 1 2; overflow-y: auto; }
    ParamsScreen Grid { grid-size: 2; grid-columns: 22 1fr; grid-rows: 3; height: auto; }
    ParamsScreen Label { padding: 1 0 0 0; }
    ParamsScreen #buttons { height: 3; align-horizontal: right; }
    ParamsScreen #error { color: $error; height: auto; }
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        s = self.settings

        def field(value: str, **kwargs: Any) -> Input:
            return with_blink(Input(value, **kwargs), s.cursor_blink)

        with Vertical():
            yield Label("Generation parameters (saved to the config file)")
            with Grid():
                for name, label, _ in FIELDS:
                    yield Label(label)
                    yield field(str(getattr(s, name)), id=name)
                yield Label("Stop strings (|-separated)")
                yield field("|".join(s.stop), id="stop")
                yield Label("System prompt")
                yield field(s.system, id="system")
                yield Label("Chat mode")
                yield Switch(s.mode == "chat", id="chat")
                yield Label("Backend (local/openai)")
                yield field(s.backend, id="backend")
                yield Label("Server URL (openai)")
                yield field(s.base_url, placeholder="http://host:8080/v1", id="base_url")
                yield Label("Remote model")
                yield field(s.remote_model, id="remote_model")
                yield Label("Thinking budget")
                yield field("" if s.thinking_budget is None else str(s.thinking_budget),
                            placeholder="empty: no limit (thinking models)", id="thinking_budget")
                yield Label("Think (on/off/auto)")
                yield field({True: "on", False: "off", None: "auto"}[s.think], id="think")
                yield Label("Show thinking")
                yield Switch(s.show_thinking, id="show_thinking")
                yield Label("JSON output")
                yield field(s.json_output, placeholder="empty: text; object; or a JSON schema file",
                            id="json_output")
                yield Label("CPU threads")
                yield field(str(s.threads), placeholder="auto: chosen while it runs; or a number",
                            id="threads")
                yield Label("GPU layers (-1 all)")
                yield field("" if s.gpu_layers is None else str(s.gpu_layers),
                            placeholder="empty: all where the build can", id="gpu_layers")
            yield Label("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Save", variant="primary", id="save")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        try:
            values = {}
            for name, label, typ in FIELDS:
                raw = self.query_one(f"#{name}", Input).value.strip()
                try:
                    values[name] = typ(raw)
                except ValueError:
                    raise InvalidParamsError(f"{label}: {raw!r} is not a {typ.__name__}") from None
            raw_layers = self.query_one("#gpu_layers", Input).value.strip()
            try:
                gpu_layers = optional_int(raw_layers)
            except ValueError:
                raise InvalidParamsError(f"GPU layers: {raw_layers!r} is not a whole number") from None
            if gpu_layers is not None and gpu_layers < -1:
                raise InvalidParamsError("GPU layers: -1 (all), 0 (none) or a number of layers")
            raw_budget = self.query_one("#thinking_budget", Input).value.strip()
            try:
                budget = optional_int(raw_budget)
            except ValueError:
                raise InvalidParamsError(f"Thinking budget: {raw_budget!r} is not a whole number") from None
            if budget is not None and budget < 0:
                raise InvalidParamsError("Thinking budget: a number of tokens, 0 or more")
            raw_threads = self.query_one("#threads", Input).value.strip() or "auto"
            try:
                fixed, _ = parse_threads(raw_threads)
            except ValueError:
                raise InvalidParamsError(f"CPU threads: {raw_threads!r}: auto or a whole number >= 1") from None
            threads: int | str = "auto" if fixed is None else int(raw_threads)
            think_word = self.query_one("#think", Input).value.strip().lower()
            if think_word not in ("on", "off", "auto", ""):
                raise InvalidParamsError(f"Think: {think_word!r}: on, off or auto")
            think = {"on": True, "off": False}.get(think_word)
            stop = [x for x in self.query_one("#stop", Input).value.split("|") if x]
            backend = self.query_one("#backend", Input).value.strip() or "local"
            base_url = self.query_one("#base_url", Input).value.strip()
            if backend not in ("local", "openai"):
                raise InvalidParamsError(f"Backend {backend!r}: use local or openai")
            if backend == "openai" and not base_url.startswith(("http://", "https://")):
                raise InvalidParamsError("the openai backend needs a server URL starting with http:// or https://")
            new = replace(self.settings, stop=stop, system=self.query_one("#system", Input).value,
                          mode="chat" if self.query_one("#chat", Switch).value else "raw",
                          backend=backend, base_url=base_url,
                          remote_model=self.query_one("#remote_model", Input).value.strip(),
                          gpu_layers=gpu_layers, threads=threads, thinking_budget=budget,
                          json_output=self.query_one("#json_output", Input).value.strip(), think=think,
                          show_thinking=self.query_one("#show_thinking", Switch).value, **values)
            new.sampler().validate()
            if new.max_tokens < 1:
                raise InvalidParamsError("Max tokens must be at least 1")
        except InvalidParamsError as e:  # (a JSON schema file that cannot be read too, from sampler())
            self.query_one("#error", Label).update(str(e))
            return
        self.dismiss(new)
