"""Raw-mode output that stays cheap however long it grows.

Re-rendering one ever-growing Static costs O(length) per update, so a long generation
would slow down as it goes. Instead text goes into the last of a series of chunks; once a
chunk is long and ends a line, it is frozen and a new one starts, so each update
re-renders at most one chunk. Model text is always a `rich.text.Text`: never parsed as
markup, so `[red]x[/red]` shows literally.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import Vertical
from textual.widgets import Static

CHUNK_CHARS = 1500


class RawOutput(Vertical):
    DEFAULT_CSS = """
    RawOutput { height: auto; }
    RawOutput > Static { height: auto; }
    """

    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._initial = text
        self._tail = ""
        self._tail_widget: Static | None = None

    def on_mount(self) -> None:
        if self._initial:
            self.append(self._initial)

    @property
    def text(self) -> str:
        return "".join(str(s.content) for s in self.query(Static))

    def append(self, text: str) -> None:
        if self._tail_widget is None:
            self._tail_widget = Static("", markup=False)
            self.mount(self._tail_widget)
        self._tail += text
        cut = self._tail.rfind("\n") if len(self._tail) > CHUNK_CHARS else -1
        if cut != -1:
            done, self._tail = self._tail[:cut + 1], self._tail[cut + 1:]
            self._tail_widget.update(Text(done))
            self._tail_widget = Static(Text(self._tail), markup=False)
            self.mount(self._tail_widget)
        else:
            self._tail_widget.update(Text(self._tail))
