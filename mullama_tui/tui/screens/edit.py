"""F6: edit a turn of the conversation and go on from there.

The list shows every turn (yours and the model's); Enter opens one for editing; Ctrl+S
applies it. An edited question regenerates the reply from there; an edited reply is
continued by the model from the end of the edit. Either way only the tokens from the
first changed one on are decoded: the KV cache holds the rest (see ChatScreen.apply_edit).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList, TextArea
from textual.widgets.option_list import Option


@dataclass(frozen=True)
class TurnEdit:
    """What the editor returns: the turn's index in the conversation, and its new text."""

    index: int
    text: str


class EditScreen(ModalScreen[TurnEdit | None]):
    BINDINGS = [
        Binding("escape", "back", "Cancel"),
        Binding("ctrl+s", "apply", "Apply and go on", priority=True),
    ]
    DEFAULT_CSS = """
    EditScreen { align: center middle; }
    EditScreen > Vertical { width: 90%; max-width: 110; height: 80%; border: thick $primary;
                            background: $surface; padding: 0 1; }
    EditScreen #edit-note { color: $text-muted; height: auto; }
    EditScreen OptionList { height: 1fr; }
    EditScreen TextArea { height: 1fr; display: none; }
    EditScreen.editing OptionList { display: none; }
    EditScreen.editing TextArea { display: block; }
    """

    def __init__(self, messages: list[dict[str, str]]) -> None:
        super().__init__()
        self.messages = messages
        self.index: int | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Pick a turn to edit (Enter). Your question: the reply is made again from it. "
                             "The model's reply: it goes on from the end of your edit."), id="edit-note")
            options = []
            for i, m in enumerate(self.messages):
                who = "you" if m["role"] == "user" else "model"
                first = m["content"].strip().replace("\n", " ")
                options.append(Option(Text(f"{i + 1:>2} {who:<5} {first[:90]}"), id=str(i)))
            yield OptionList(*options, id="turns")
            yield TextArea(id="edit-text", soft_wrap=True)

    def on_mount(self) -> None:
        turns = self.query_one(OptionList)
        turns.highlighted = len(self.messages) - 1
        turns.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.index = int(event.option.id or 0)
        area = self.query_one(TextArea)
        area.load_text(self.messages[self.index]["content"])
        area.move_cursor(area.document.end)
        self.add_class("editing")
        area.focus()
        who = "your question: Ctrl+S makes the reply again" if self.messages[self.index]["role"] == "user" \
            else "the model's reply: Ctrl+S lets it go on from the end of your text"
        self.query_one("#edit-note", Label).update(Text(f"Editing turn {self.index + 1}, {who}. Esc: back."))

    def action_apply(self) -> None:
        if self.index is None:
            highlighted = self.query_one(OptionList).highlighted
            if highlighted is not None:
                self.query_one(OptionList).action_select()
            return
        text = self.query_one(TextArea).text
        if not text.strip() and self.messages[self.index]["role"] == "user":
            self.notify("an empty question: write something, or Esc", severity="warning")
            return
        self.dismiss(TurnEdit(self.index, text))

    def action_back(self) -> None:
        if self.index is not None:  # back to the list
            self.index = None
            self.remove_class("editing")
            self.query_one(OptionList).focus()
            return
        self.dismiss(None)
