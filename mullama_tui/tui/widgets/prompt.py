"""The multi-line prompt: Enter sends, Ctrl+J inserts a newline, Up on the first line and
Down on the last line walk through earlier prompts, and back to the draft being written
(as shells do: nothing typed is lost by looking back)."""

from __future__ import annotations

from typing import TypeVar

from textual import events
from textual.message import Message
from textual.widgets import Input, TextArea

W = TypeVar("W", Input, TextArea)


def with_blink(widget: W, blink: bool) -> W:
    """Set a text widget's cursor blink before it mounts. Turned off after mounting, a
    blink tick already queued can still hide the cursor once (a flaky snapshot)."""
    widget.cursor_blink = blink
    return widget


class PromptInput(TextArea):
    class Submitted(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs: object) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, **kwargs)  # type: ignore[arg-type]
        self.past: list[str] = []
        self._recall = 0
        self.draft = ""  # what was being written when Up first went back through the past

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            text = self.text.strip()
            if text:
                if not self.past or self.past[-1] != text:
                    self.past.append(text)
                self._recall = len(self.past)
                self.post_message(self.Submitted(text))
                self.clear()
            return
        if event.key == "ctrl+j":
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        row = self.cursor_location[0]
        if event.key == "up" and row == 0 and self.past:
            event.prevent_default()
            event.stop()
            if self._recall >= len(self.past):  # leaving the draft: keep it
                self._recall = len(self.past)
                self.draft = self.text
            self._recall = max(0, self._recall - 1)
            self.load_text(self.past[self._recall])
            return
        if event.key == "down" and row == self.document.line_count - 1 and self._recall < len(self.past):
            event.prevent_default()
            event.stop()
            self._recall += 1
            self.load_text(self.past[self._recall] if self._recall < len(self.past) else self.draft)
            self.move_cursor(self.document.end)
            return
        await super()._on_key(event)
