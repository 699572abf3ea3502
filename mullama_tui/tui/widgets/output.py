"""Raw-mode output that stays cheap however long it grows.

Two costs grow with a naive `Static.update(whole_text)` per batch, and both are avoided:
- Re-rendering one ever-growing text is O(length) per update. Instead text goes into the
  last of a series of chunks; once a chunk is long and ends a line, it is frozen and a
  new one starts, so each update re-renders at most one chunk.
- `Static.update` asks for a layout pass of the whole screen every time (its size might
  have changed), and on 2 cores that layout plus the repaint it causes was most of the UI's
  CPU time while streaming (measured: ~1.3 s of UI-thread CPU per 1000 tokens with layout,
  ~0.4 s without), CPU taken from llama.cpp's threads. The live tail therefore reserves
  its height a few lines ahead and only asks for layout when the text outgrows it; other
  updates repaint just the tail. When the generation ends, `finish()` sets the exact height.

Model text is always a `rich.text.Text`: never parsed as markup, so `[red]x[/red]` shows
literally.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Static

CHUNK_CHARS = 1500
RESERVE_LINES = 3  # lines reserved ahead of the text while it streams


class _Tail(Widget):
    """The chunk that is still growing."""

    DEFAULT_CSS = "_Tail { height: auto; }"

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.text = text
        self._reserved = 0

    def render(self) -> Text:
        return Text(self.text)

    def set_text(self, text: str) -> None:
        self.text = text
        width = self.content_region.width
        if width <= 0:  # not laid out yet: let layout size it
            self.refresh(layout=True)
            return
        lines = len(Text(text).wrap(self.app.console, width)) if text else 1
        if lines > self._reserved or self._reserved == 0:
            self._reserved = lines + RESERVE_LINES - 1
            self.styles.height = self._reserved  # a layout pass, a few times a second at most
        else:
            self.refresh()  # repaint this widget only

    def fit(self) -> None:
        """Exact height again (the end of a generation, or a resize)."""
        self._reserved = 0
        self.styles.height = "auto"


class RawOutput(Vertical):
    DEFAULT_CSS = """
    RawOutput { height: auto; }
    RawOutput > Static { height: auto; }
    """

    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._initial = text
        self._frozen: list[str] = []
        self._tail: _Tail | None = None
        self._width = 0

    def on_mount(self) -> None:
        if self._initial:
            self.append(self._initial)
            self.finish()

    @property
    def text(self) -> str:
        return "".join(self._frozen) + (self._tail.text if self._tail else "")

    def append(self, text: str) -> None:
        if self._tail is None:
            self._tail = _Tail()
            self.mount(self._tail)
        tail = self._tail.text + text
        cut = tail.rfind("\n") if len(tail) > CHUNK_CHARS else -1
        if cut != -1:
            done, rest = tail[:cut + 1], tail[cut + 1:]
            self._frozen.append(done)
            self.mount(Static(Text(done), markup=False), before=self._tail)
            tail = rest
            self._tail.fit()
        self._tail.set_text(tail)

    def finish(self) -> None:
        """The text is complete: size the last chunk exactly."""
        if self._tail is not None:
            self._tail.fit()
            self._tail.refresh(layout=True)

    def on_resize(self, event: events.Resize) -> None:
        # a new width re-wraps the text; height changes are our own doing and are ignored
        if self._tail is not None and event.size.width != self._width:
            self._tail.fit()
        self._width = event.size.width
