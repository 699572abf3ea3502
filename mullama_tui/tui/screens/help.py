"""F1: every key of the app and of the screen below, from the live bindings."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

PROMPT_KEYS = [("enter", "Send the prompt"), ("ctrl+j", "Insert a newline in the prompt"),
               ("up / down", "Earlier prompts (on the first / last line)"),
               ("pageup / pagedown", "Scroll the conversation (from the prompt too)"),
               ("tab / shift+tab", "The next / previous part of the screen (typing goes back to the prompt)"),
               ("← / → / click", "Token view: move the cursor to a token"),
               ("↑ / ↓, b", "Token view: pick an alternative, branch from it (Enter: back to the prompt)"),
               ("mouse drag / ctrl+c", "Select text in the replies; Ctrl+C copies it (while nothing generates)")]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen VerticalScroll { width: 76; height: 80%; border: thick $primary; background: $surface; padding: 1 2; }
    HelpScreen .help-note { margin-top: 1; color: $text-muted; }
    """

    def __init__(self, notes: tuple[str, ...] = (), below: Screen[object] | None = None) -> None:
        """`notes`: what the screen below wants its users to know, under the keys; `below`:
        that screen, whose own keys come first."""
        super().__init__()
        self.notes = notes
        self.below = below

    def compose(self) -> ComposeResult:
        table = Table(title="mullama-tui keys", expand=True)
        table.add_column("key", style="bold")
        table.add_column("action")
        for key, what in PROMPT_KEYS:  # written the way the footer writes keys: one notation
            shown = " / ".join(self.app.get_key_display(Binding(k.strip(), "")) if k.strip().isascii() else k.strip()
                               for k in key.split("/"))
            table.add_row(shown, what)
        seen = set()
        screen_bindings = list(getattr(self.below, "BINDINGS", [])) if self.below is not None else []
        for binding in [*screen_bindings, *self.app.BINDINGS]:
            if isinstance(binding, Binding) and binding.description and binding.key not in seen:
                seen.add(binding.key)
                table.add_row(self.app.get_key_display(binding), binding.description)
        table.add_row("ctrl+p", "Command palette (every action is there too)")
        with VerticalScroll():
            yield Static(table)
            for note in self.notes:
                yield Static(Text(note), classes="help-note", markup=False)
