"""Blind mode's vote: which pane was best (or a tie). Returns the letter, "tie", or None."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class VoteScreen(ModalScreen[str | None]):
    DEFAULT_CSS = """
    VoteScreen { align: center middle; }
    VoteScreen > Vertical { width: auto; max-width: 76; height: auto; border: thick $primary;
                            background: $surface; padding: 1 2; }
    VoteScreen Horizontal { height: auto; width: auto; margin-top: 1; }
    VoteScreen Button { margin: 0 1 0 0; min-width: 6; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Later")]

    def __init__(self, letters: list[str]) -> None:
        super().__init__()
        self.letters = letters

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Which answer is best? (a key, or a click; Esc: vote later)")
            with Horizontal():
                for letter in self.letters:
                    yield Button(letter, id=f"vote-{letter}", variant="primary")
                yield Button("tie (T)", id="vote-tie")

    def on_key(self, event: object) -> None:
        key = getattr(event, "key", "")
        if key.upper() in self.letters:
            self.dismiss(key.upper())
        elif key == "t":
            self.dismiss("tie")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss((event.button.id or "").removeprefix("vote-"))
