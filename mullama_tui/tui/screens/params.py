"""A modal to edit sampler and generation settings; returns the new Settings or None.

A bad value is said under its own field (which gets the focus), not at the foot of the
form; Save and Cancel stay on screen however short the terminal (the fields scroll
between them), and Ctrl+S saves from anywhere in the form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static, Switch, TextArea

from ...config import Settings
from ...engine.threads import parse_threads
from ...engine.types import InvalidParamsError
from ..widgets.prompt import with_blink

FIELDS = [  # (settings field, label, type)
    ("temperature", "Temperature", float), ("max_tokens", "Max tokens", int),
    ("top_k", "Top-k", int), ("top_p", "Top-p", float), ("min_p", "Min-p", float),
    ("repeat_penalty", "Repeat penalty", float), ("seed", "Seed (0 = random)", int),
]


def whole_or_empty(screen: ModalScreen[Any], field: str) -> int | None:
    """The whole number in field `field`, or None when it is empty; FieldError otherwise."""
    raw = screen.query_one(f"#{field}", Input).value.strip()
    try:
        return int(raw) if raw else None
    except ValueError:
        raise FieldError(field, f"{raw!r} is not a whole number") from None


def form_foot() -> ComposeResult:
    """Under a form's fields: the line that says what is wrong, and Cancel and Save."""
    yield Label("", id="error")
    with Horizontal(id="buttons"):
        yield Button("Cancel (Esc)", id="cancel")
        yield Button("Save (Ctrl+S)", variant="primary", id="save")


def form_row(label: str, widget: Any) -> ComposeResult:
    """A label, and the field with the line under it where its error shows (the forms' grid)."""
    yield Label(label)
    with Vertical(classes="field"):
        yield widget
        yield Static("", classes="field-error", id=f"{widget.id}-error", markup=False)


def show_field_error(screen: ModalScreen[Any], labels: dict[str, str], field: str | None, message: str) -> None:
    """A bad value said under its field, which gets the focus and is scrolled into view;
    the foot of the form (`#error`) says which field it is (`labels`: field -> label)."""
    for shown in screen.query(".field-error.-shown"):
        shown.remove_class("-shown")
    label = labels.get(field or "", (field or "").replace("_", " "))
    screen.query_one("#error", Label).update(f"{label}: {message}" if field else message)
    if field is None:
        return
    note = screen.query_one(f"#{field}-error", Static)
    note.update(message)
    note.add_class("-shown")
    widget = screen.query_one(f"#{field}")
    widget.focus()
    widget.scroll_visible(animate=False)


def read_numbers(screen: ModalScreen[Any], fields: list[tuple[str, str, type]]) -> dict[str, Any]:
    """The typed values of the number fields (field, label, int or float); FieldError names
    the first one that is not a number."""
    values: dict[str, Any] = {}
    for name, _label, typ in fields:
        raw = screen.query_one(f"#{name}", Input).value.strip()
        try:
            values[name] = typ(raw)
        except ValueError:
            raise FieldError(name, f"{raw!r} is not {'a whole number' if typ is int else 'a number'}") from None
    return values


def field_error(e: InvalidParamsError, fields: list[tuple[str, str, type]],
                fallback: str | None = None) -> InvalidParamsError:
    """The sampler's complaint as the error of the field it names ("penalty_repeat=..." is
    the repeat penalty's), else of `fallback`, else of the form."""
    text = str(e).replace("penalty_repeat", "repeat_penalty")
    named = next((n for n, _, _ in fields if n in text or n.replace("_", "-") in text), fallback)
    return FieldError(named, str(e)) if named else e


def submit_form(screen: ModalScreen[Any], labels: dict[str, str], build: Callable[[], Any]) -> None:
    """Dismiss the form with what `build` makes of it; a bad value is said under its field
    (nothing is changed)."""
    try:
        value = build()
    except FieldError as e:
        show_field_error(screen, labels, e.field, str(e))
        return
    except InvalidParamsError as e:
        show_field_error(screen, labels, None, str(e))
        return
    screen.dismiss(value)


class FieldError(InvalidParamsError):
    """A value that cannot be saved, and the field it is in."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ParamsScreen(ModalScreen[Settings | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Close"),
                Binding("ctrl+s", "save", "Save", priority=True)]  # priority: the system prompt box is a TextArea
    DEFAULT_CSS = """
    ParamsScreen { align: center middle; }
    ParamsScreen > Vertical { width: 76; height: auto; max-height: 100%; border: thick $primary;
                              background: $surface; padding: 0 1; }
    ParamsScreen #fields { height: auto; max-height: 1fr; }
    ParamsScreen Grid { grid-size: 2; grid-columns: 22 1fr; grid-rows: auto; height: auto; padding: 0 1 0 0; }
    ParamsScreen Grid > Label { padding: 1 0 0 0; }
    ParamsScreen .field { height: auto; }
    ParamsScreen .field-error { color: $error; height: auto; display: none; }
    ParamsScreen .field-error.-shown { display: block; }
    ParamsScreen #system { height: 5; }
    ParamsScreen #buttons { height: 3; align-horizontal: right; dock: bottom; }
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
            with VerticalScroll(id="fields"), Grid():
                for name, label, _ in FIELDS:
                    yield from self._row(label, field(str(getattr(s, name)), id=name))
                yield from self._row("Stop strings (|-separated)", field("|".join(s.stop), id="stop"))
                yield from self._row("System prompt", with_blink(TextArea(s.system, id="system", soft_wrap=True),
                                                                 s.cursor_blink))
                yield from self._row("Chat mode", Switch(s.mode == "chat", id="chat"))
                yield from self._row("Backend (local/openai)", field(s.backend, id="backend"))
                yield from self._row("Server URL (openai)", field(s.base_url, placeholder="http://host:8080/v1",
                                                                  id="base_url"))
                yield from self._row("Remote model", field(s.remote_model, id="remote_model"))
                yield from self._row("Thinking budget", field(
                    "" if s.thinking_budget is None else str(s.thinking_budget),
                    placeholder="empty: no limit (thinking models)", id="thinking_budget"))
                yield from self._row("Think (on/off/auto)", field({True: "on", False: "off", None: "auto"}[s.think],
                                                                  id="think"))
                yield from self._row("Show thinking", Switch(s.show_thinking, id="show_thinking"))
                yield from self._row("JSON output", field(s.json_output, id="json_output",
                                                          placeholder="empty: text; object; or a JSON schema file"))
                yield from self._row("CPU threads", field(str(s.threads), id="threads",
                                                          placeholder="auto: chosen while it runs; or a number"))
                yield from self._row("GPU layers (-1 all)", field(
                    "" if s.gpu_layers is None else str(s.gpu_layers),
                    placeholder="empty: all where the build can", id="gpu_layers"))
            yield from form_foot()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#temperature", Input).focus()  # typing goes to the first field at once

    _row = staticmethod(form_row)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self.action_save()
        else:
            self.dismiss(None)

    def action_save(self) -> None:
        submit_form(self, {n: lbl for n, lbl, _ in FIELDS}, self._build)

    def _build(self) -> Settings:
        values = read_numbers(self, FIELDS)
        gpu_layers = whole_or_empty(self, "gpu_layers")
        if gpu_layers is not None and gpu_layers < -1:
            raise FieldError("gpu_layers", "-1 (all), 0 (none) or a number of layers")
        budget = whole_or_empty(self, "thinking_budget")
        if budget is not None and budget < 0:
            raise FieldError("thinking_budget", "a number of tokens, 0 or more")
        raw_threads = self.query_one("#threads", Input).value.strip() or "auto"
        try:
            fixed, _ = parse_threads(raw_threads)
        except ValueError:
            raise FieldError("threads", f"{raw_threads!r}: auto or a whole number >= 1") from None
        threads: int | str = "auto" if fixed is None else int(raw_threads)
        think_word = self.query_one("#think", Input).value.strip().lower()
        if think_word not in ("on", "off", "auto", ""):
            raise FieldError("think", f"{think_word!r}: on, off or auto")
        think = {"on": True, "off": False}.get(think_word)
        stop = [x for x in self.query_one("#stop", Input).value.split("|") if x]
        backend = self.query_one("#backend", Input).value.strip() or "local"
        base_url = self.query_one("#base_url", Input).value.strip()
        if backend not in ("local", "openai"):
            raise FieldError("backend", f"{backend!r}: use local or openai")
        if backend == "openai" and not base_url.startswith(("http://", "https://")):
            raise FieldError("base_url", "the openai backend needs a URL starting with http:// or https://")
        new = replace(self.settings, stop=stop, system=self.query_one("#system", TextArea).text.strip(),
                      mode="chat" if self.query_one("#chat", Switch).value else "raw",
                      backend=backend, base_url=base_url,
                      remote_model=self.query_one("#remote_model", Input).value.strip(),
                      gpu_layers=gpu_layers, threads=threads, thinking_budget=budget,
                      json_output=self.query_one("#json_output", Input).value.strip(), think=think,
                      show_thinking=self.query_one("#show_thinking", Switch).value, **values)
        if new.max_tokens < 1:
            raise FieldError("max_tokens", "at least 1")
        try:
            new.sampler().validate()
        except InvalidParamsError as e:  # which field: the one the message names
            raise field_error(e, FIELDS, "json_output" if new.json_output else None) from None
        return new
