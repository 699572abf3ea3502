"""One compare pane's settings in a form (F6 on the compare screen): its model (the app's, a
GGUF, a pulled name, or `openai:URL` for an OpenAI-compatible server), its sampler knobs,
seed and system prompt, and the presets a button away. Returns the new `PaneSetup` or None.

A bad value is said under its own field, which gets the focus, as in the settings form
(F2); nothing is changed until every field is good."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, TextArea

from ...backends import SERVER, is_server
from ...engine.types import InvalidParamsError, MullamaError, SamplerParams
from ...panes import PRESETS, PaneSetup
from ..widgets.prompt import with_blink
from .params import FieldError, field_error, form_foot, form_row, read_numbers, submit_form

FIELDS = [  # (PaneSetup field, label, type)
    ("temperature", "Temperature", float), ("seed", "Seed (0 = random)", int), ("top_k", "Top-k (0 = off)", int),
    ("top_p", "Top-p", float), ("min_p", "Min-p", float), ("repeat_penalty", "Repeat penalty", float),
]
def model_label(model: str) -> str:
    """A pane model's name as a person knows it: a server's URL as given, a file by its name."""
    if is_server(model):
        return model
    from ...models.naming import display_name

    return display_name(model)


def pane_model(typed: str) -> tuple[str | None, str]:
    """The model a pane's field names: (path or `openai:URL`, its display name); (None, "")
    for the app's own model. FieldError when there is no such model."""
    typed = typed.strip()
    if not typed:
        return None, ""
    if is_server(typed):
        url = typed[len(SERVER):]
        if not url.startswith(("http://", "https://")):
            raise FieldError("model", "a server is openai: and its URL, e.g. openai:http://127.0.0.1:8080/v1")
        return typed, typed
    from ...models.gguf import is_gguf
    from ...models.naming import display_name
    from ...models.resolve import resolve_model

    try:
        path = resolve_model(typed)
    except MullamaError as e:
        raise FieldError("model", str(e)) from None
    if not is_gguf(path):
        raise FieldError("model", f"{path} is not a GGUF model file (or cannot be read)")
    return str(path), display_name(path, asked_as=typed)


class PaneScreen(ModalScreen[PaneSetup | None]):
    BINDINGS = [Binding("escape", "dismiss(None)", "Close"),
                Binding("ctrl+s", "save", "Save", priority=True),  # priority: the system prompt is a TextArea
                Binding("ctrl+g", "next_preset", "Next preset", priority=True)]
    DEFAULT_CSS = """
    PaneScreen { align: center middle; }
    PaneScreen > Vertical { width: 76; height: auto; max-height: 100%; border: thick $primary;
                            background: $surface; padding: 0 1; }
    PaneScreen #fields { height: auto; max-height: 1fr; }
    PaneScreen Grid { grid-size: 2; grid-columns: 20 1fr; grid-rows: auto; height: auto; padding: 0 1 0 0; }
    PaneScreen Grid > Label { padding: 0; }
    PaneScreen Grid { grid-gutter: 0; }
    PaneScreen .field { height: auto; }
    PaneScreen .field-error { color: $error; height: auto; display: none; }
    PaneScreen .field-error.-shown { display: block; }
    PaneScreen #system { height: 4; }
    PaneScreen #presets { height: 1; margin: 1 0; }
    PaneScreen #presets Label { color: $text-muted; padding: 0 1 0 0; }
    PaneScreen #presets Button { margin: 0 1 0 0; min-width: 10; }
    PaneScreen #buttons { height: 3; align-horizontal: right; dock: bottom; }
    PaneScreen #error { color: $error; height: auto; }
    """

    def __init__(self, number: int, setup: PaneSetup, app_model: str, blink: bool = True) -> None:
        """`number`: the pane's, as its title says; `app_model`: what an empty model field runs."""
        super().__init__()
        self.number, self.setup, self.app_model, self.blink = number, setup, app_model, blink

    def compose(self) -> ComposeResult:
        s = self.setup

        def field(value: str, **kwargs: Any) -> Input:
            return with_blink(Input(value, compact=True, **kwargs), self.blink)  # a line each: all on 80x24

        with Vertical():
            yield Label(f"Pane {self.number}: its model and settings (this comparison only)")
            with Horizontal(id="presets"):
                yield Label("presets (Ctrl+G)")
                for name in PRESETS:
                    yield Button(name, id=f"preset-{name}", compact=True)
            with VerticalScroll(id="fields"), Grid():
                yield from self._row("Model", field(s.model or "", id="model", placeholder=(
                    f"empty: {self.app_model}; a .gguf, a name, openai:URL")))
                for name, label, _ in FIELDS:
                    yield from self._row(label, field(f"{getattr(s, name):g}" if isinstance(getattr(s, name), float)
                                                      else str(getattr(s, name)), id=name))
                yield from self._row("System prompt (chat)", with_blink(TextArea(s.system, id="system",
                                                                                 soft_wrap=True), self.blink))
            yield from form_foot()
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one("#temperature", Input).focus()

    _row = staticmethod(form_row)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        ident = event.button.id or ""
        if ident == "save":
            self.action_save()
        elif ident.startswith("preset-"):
            self.apply_preset(ident.removeprefix("preset-"))
        else:
            self.dismiss(None)

    def apply_preset(self, name: str) -> None:
        """A preset's knobs into the fields (the model, seed and system prompt stay)."""
        p = PaneSetup.of(PRESETS[name])
        for field_name, _, _ in FIELDS:
            if field_name != "seed":
                value = getattr(p, field_name)
                self.query_one(f"#{field_name}", Input).value = f"{value:g}" if isinstance(value, float) else str(value)
        self.query_one("#error", Label).update(f"preset: {name} (Ctrl+S saves)")

    def action_next_preset(self) -> None:
        try:
            now = self._read().preset()
        except InvalidParamsError:
            now = None
        names = list(PRESETS)
        self.apply_preset(names[(names.index(now) + 1) % len(names)] if now in names else names[0])

    def _read(self) -> PaneSetup:
        return replace(self.setup, system=self.query_one("#system", TextArea).text.strip(),
                       **read_numbers(self, FIELDS))

    def action_save(self) -> None:
        submit_form(self, {n: lbl for n, lbl, _ in FIELDS}, self._build)

    def _build(self) -> PaneSetup:
        new = self._read()
        try:
            new.sampler(SamplerParams()).validate()
        except InvalidParamsError as e:  # the field the message names
            raise field_error(e, FIELDS) from None
        typed = self.query_one("#model", Input).value.strip()
        if typed != (self.setup.model or ""):
            model, label = pane_model(typed)
            new = replace(new, model=model, model_label=label)
        return new
