"""Plain text that streams cheaply: `PlainLines` keeps its wrapped lines and repaints only
what changed; `RawOutput` is a reply (raw mode, compare panes) made of one. See
widgets/reply.py for why."""

from __future__ import annotations

from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Region
from textual.strip import Strip

from .reply import RESERVE_LINES, Fittable, OneLayoutPass, Reply, SelectableLines, first_difference, scroll_view


class PlainLines(OneLayoutPass, SelectableLines, Fittable):
    """Plain text that keeps its wrapped lines and repaints only what changed.

    Textual's own widgets render their whole text into lines on every change, so a reply
    that grows for minutes costs more per update as it grows. Here the text is wrapped
    once, and an append re-wraps only the paragraph it lands in (text above a newline
    never moves); `render_line` hands out the kept lines, and a refresh names the lines
    that changed. Its height is reserved ahead (`reserve` lines at a time), so most
    updates lay nothing out: a layout pass costs the whole screen.
    """

    DEFAULT_CSS = "PlainLines { height: auto; }"

    def __init__(self, reserve: int = RESERVE_LINES, fill: bool = False, window: bool = False) -> None:
        """`fill`: take at least the height of the scrolling container around it from the
        start (a compare pane, where this is the only text), so there is no layout pass
        at all until the text has filled the view. `window` (with `fill`): once the text
        fills the view, show its newest lines in the view's height instead of growing,
        until `fit()` at the end of the run gives it its whole height (then it scrolls):
        three compare panes growing 6 lines at a time cost a layout pass of the whole
        screen in most frames (half of the compare screen's UI time)."""
        super().__init__()
        self.text = ""
        self.reserve = reserve
        self.fill = fill
        self.window = window and fill
        self._offset = 0  # the first line shown (windowed: the text is taller than the view)
        self._lines: list[str] = []  # the wrapped lines at `_width`
        self._para_line = 0  # index in `_lines` of the first line of the last paragraph
        self._para_start = 0  # index in `text` where the last paragraph starts
        self._width = 0
        self._reserved = 0
        self._style: Any = None  # the widget's rich style, looked up once (it walks the DOM)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style = None

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        if width != self._width:
            self._rewrap(width)
        return max(1, len(self._lines))

    def render_line(self, y: int) -> Strip:
        if self._style is None:
            self._style = self.rich_style
        if self._width != self.size.width > 0:  # text came before its width (see `append`)
            self._rewrap(self.size.width)
        y += self._offset
        line = self._lines[y] if y < len(self._lines) else ""
        return self.selectable_line(y, Strip([Segment(line, self._style)], cell_len(line)))

    def _selectable_strips(self) -> list[Strip]:
        return [Strip([Segment(line)], cell_len(line)) for line in self._lines]

    def selectable_text(self) -> str:
        return "\n".join(self._lines)

    def _wrap(self, text: str, width: int) -> list[str]:
        out: list[str] = []
        for para in text.split("\n"):
            out += [line.plain.rstrip(" ") for line in Text(para).wrap(self.app.console, width)] or [""]
        return out

    def _rewrap(self, width: int) -> None:
        """Wrap everything again (a new width)."""
        self._width = width
        self._para_start = self.text.rfind("\n") + 1
        self._lines = self._wrap(self.text[:self._para_start - 1], width) if self._para_start else []
        self._para_line = len(self._lines)
        self._lines += self._wrap(self.text[self._para_start:], width)
        if self._offset:  # windowed: still the newest lines
            self._offset = max(0, len(self._lines) - self._reserved)

    def append(self, text: str) -> None:
        if not text:
            return
        self.text += text
        width = self.content_region.width
        if width <= 0 or width != self._width:  # not laid out yet, or resized: layout re-wraps
            self._width = 0  # lines wrapped before this text are stale at any width
            self.refresh(layout=True)
            return
        first, start = self._para_line, self._para_start
        before = self._lines[first:]
        newline = self.text.rfind("\n", start) + 1
        if newline > start:  # the paragraph ended: what follows starts a new one
            self._lines[first:] = self._wrap(self.text[start:newline - 1], width)
            self._para_start, self._para_line = newline, len(self._lines)
            self._lines += self._wrap(self.text[newline:], width)
        else:
            self._lines[first:] = self._wrap(self.text[start:], width)
        lines = len(self._lines)
        if self.window and self._reserved and lines > self._reserved:  # full: show the newest lines
            offset = lines - self._reserved
            if offset != self._offset:
                self._offset = offset
                self.refresh()  # every line moved up: a repaint of this pane, no layout
                return
        elif lines > self._reserved:
            self._reserved = max(lines + self.reserve - 1, self._view_height())
            self.styles.height = self._reserved  # a layout pass, every `reserve` lines
            return
        # a re-wrapped paragraph mostly keeps its lines: repaint from the first that changed
        first += first_difference(before, self._lines[first:])
        if lines > first:
            top = max(first - self._offset, 0)
            self.refresh(Region(0, top, width, lines - self._offset - top))  # these lines only

    def clear(self) -> None:
        """No text (a new run in the same place)."""
        self.text = ""
        self._lines, self._para_line, self._para_start, self._offset = [], 0, 0, 0
        self._reserved = self._view_height()
        self.styles.height = self._reserved or "auto"
        self.refresh()

    def _view_height(self) -> int:
        view = scroll_view(self) if self.fill else None
        return view.scrollable_content_region.height if view is not None else 0

    def fit(self) -> None:
        """Exact height again (the end of a generation, a new width); with `fill`, at least
        the view's (so a short text stays at the top of its pane)."""
        self._reserved = self._offset = 0
        view = self._view_height()
        self.styles.height = max(view, len(self._lines)) if view and self._width else "auto"
        self.refresh()  # windowed, every line moves


class RawOutput(Reply):
    """Plain text, streamed into one `PlainLines` (which keeps its wrapped lines)."""

    def __init__(self, text: str = "", reserve: int = RESERVE_LINES, fill: bool = False, window: bool = False,
                 **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._initial = text
        self.reserve = reserve
        self.fill = fill
        self.window = window

    def compose(self) -> ComposeResult:
        self._lines = PlainLines(self.reserve, self.fill, self.window)
        self._tail = self._lines
        yield self._lines

    async def on_mount(self) -> None:
        if self._initial:
            await self.append(self._initial)
            await self.finish()

    @property
    def text(self) -> str:
        return self._lines.text

    async def append(self, text: str) -> None:
        self._lines.append(text)

    def clear(self) -> None:
        self._lines.clear()

    async def finish(self) -> None:
        """The text is complete: its exact height."""
        self._lines.fit()


