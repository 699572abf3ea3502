"""Streaming replies that stay cheap however long they grow: `RawOutput` (plain text) and
`MarkdownReply` (chat mode).

Why they are shaped this way: on a 2-core machine llama.cpp's two compute threads need
both cores, so every millisecond the UI thread spends is taken from decoding (and stalls
the other thread at its barrier). In Textual, any widget that changes size asks for a
layout pass of the whole screen, and a widget whose size changed asks for a second one
after it; a repaint of one widget costs a fraction of that. Measured on the bundled
model, 1000 tokens: chat replies streamed into a `Markdown` widget cost ~1.0 s of
UI-thread CPU, almost all of it in ~120 layout passes (every batch grows a paragraph).
So both widgets reserve their height a few lines ahead (most updates lay out nothing),
neither re-renders an ever-growing text per update, and neither asks Textual for the
second layout pass a new size normally costs (`OneLayoutPass`):
- raw text lives in one `PlainLines`, which keeps its wrapped lines, re-wraps only the
  paragraph being written, and repaints only the lines that changed;
- Markdown streams into a `_Tail` rendered by Rich block by block (each complete block
  once, the open block per update), and blocks move to Textual's `Markdown` widget only
  once they have scrolled out of view, a screenful at a time (a move mounts widgets: a
  layout pass).

Model text is never parsed as Rich/Textual markup: plain text is a `rich.text.Text`, and
Markdown goes through a Markdown parser, so `[red]x[/red]` shows literally.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from markdown_it import MarkdownIt
from rich.cells import cell_len
from rich.markdown import Markdown as RichMarkdown
from rich.segment import Segment
from rich.text import Text
from textual import events
from textual.containers import ScrollableContainer, Vertical, VerticalScroll
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget
from textual.widgets import Markdown

RESERVE_LINES = 6  # lines reserved ahead of the text while it streams


class OneLayoutPass:
    """For widgets whose size follows text that streams in, and the scrolling container
    around them: a layout pass that gives one a new size asks for no second pass.

    Textual's widget takes a new size by setting its `virtual_size` reactive, which asks
    for another layout of the screen and a repaint of the whole widget, although the pass
    that set it has just placed and painted everything (measured on the main screen: half
    of all layout passes while streaming, each followed by a second paint of every visible
    row of the conversation). Scrollbars still follow the new size (`_scroll_update` runs
    either way, and a scrollbar that appears asks for its own layout)."""

    def _size_updated(self, size: Any, virtual_size: Any, container_size: Any, layout: bool = True) -> bool:
        return super()._size_updated(size, virtual_size, container_size, layout=False)  # type: ignore[misc]


class FollowingScroll(OneLayoutPass, VerticalScroll):
    """The scrolling container a reply streams into (anchored to its end while it streams)."""


_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


def first_difference(old: list[Any], new: list[Any]) -> int:
    """The first index at which two lists of lines differ (the shorter length if one is
    the start of the other): where a repaint has to begin."""
    return next((i for i, (a, b) in enumerate(zip(old, new)) if a != b), min(len(old), len(new)))


def scroll_view(widget: Widget) -> ScrollableContainer | None:
    """The scrolling container `widget` is in (the view its text is seen through)."""
    for ancestor in widget.ancestors:
        if isinstance(ancestor, ScrollableContainer):
            return ancestor
    return None
_RICH_MARKDOWN: tuple[RichMarkdown, MarkdownIt] | None = None


def rich_markdown(text: str) -> RichMarkdown:
    """Rich's `Markdown(text)` without building a new Markdown parser for it: Rich makes
    one per object, and that was two thirds of the streaming tail's time (~1 ms each, 5
    times a second). A copy of one made the usual way, given the shared parser's result."""
    global _RICH_MARKDOWN
    if _RICH_MARKDOWN is None:
        _RICH_MARKDOWN = RichMarkdown(""), MarkdownIt().enable("strikethrough").enable("table")  # as Rich's
    template, parser = _RICH_MARKDOWN
    md = copy.copy(template)
    md.markup, md.parsed = text, parser.parse(text)
    return md


def block_boundary(text: str, start: int = 0) -> int:
    """Where the last complete Markdown block of `text[start:]` ends: just after the last
    blank line that is outside a fenced code block and followed by an unindented line
    (an indented one continues the block above: a list item's next paragraph, indented
    code), or `start` if there is none. `text[:start]` must end outside a fence."""
    pos = text.rfind("\n\n", start)
    while pos != -1:
        after = text[pos + 2:pos + 3]
        if after and after not in " \t\n" and len(_FENCE.findall(text, start, pos)) % 2 == 0:
            return pos + 2
        pos = text.rfind("\n\n", start, pos)
    return start


class _Tail(OneLayoutPass, Widget):
    """The reply's text not yet in the Markdown widget, rendered by Rich into kept lines
    (`render_line` hands them out) in chunks: each complete block is rendered once, when
    it completes, and only the block still being written is rendered on every update. A
    repaint names only the lines that changed, usually the last one or two.

    It holds many blocks (a screenful and more): moving each finished paragraph into
    Textual's Markdown widget mounted a widget and cost two layout passes of the screen
    per paragraph; blocks now move in one piece once they have scrolled out of view
    (`take_hidden`), where the change of look cannot be seen."""

    DEFAULT_CSS = "_Tail { height: auto; }"

    def __init__(self, reserve: int = RESERVE_LINES) -> None:
        super().__init__()
        self.text = ""
        self.reserve = reserve  # lines reserved ahead each time the text outgrows its height
        self._reserved = 0
        self._chunks: list[tuple[int, list[Strip]]] = []  # complete blocks: (end in text, lines)
        self._done = 0  # text[:_done] is in `_chunks` (always a block boundary)
        self._strips: list[Strip] = []  # every line: chunks, blank lines between, the open block
        self._width = 0  # what `_chunks` and `_strips` were rendered at
        self._blank: tuple[int, Strip] | None = None  # (width, the blank line between blocks)

    def _render(self, text: str, width: int, first: bool) -> list[Strip]:
        """`text` (whole blocks) as Textual would draw it (the same Rich render and widget
        style). A block after another is rendered after a stand-in paragraph, whose two
        lines are dropped: Rich starts some blocks (a list, a quote) with a blank line only
        at the top of a document."""
        if not text.strip():
            return []
        source = text if first else "x\n\n" + text
        visual = visualize(self, rich_markdown(source), markup=False)
        strips = Visual.to_strips(self, visual, width, None, self.visual_style)
        return strips if first else strips[2:]

    def _separator(self, width: int) -> Strip:
        """The blank line Rich puts between two blocks, in the widget's style."""
        if self._blank is None or self._blank[0] != width:
            self._blank = width, self._render("x\n\nx", width, True)[1]
        return self._blank[1]

    def _lay_out(self, width: int) -> list[Strip]:
        """Render what is new since the last call at `width` (everything at a new width):
        blocks completed since, once each, and the open block."""
        if width != self._width:
            self._width, self._chunks, self._done = width, [], 0
        cut = block_boundary(self.text, self._done)
        if cut > self._done:
            self._chunks.append((cut, self._render(self.text[self._done:cut], width, not self._chunks)))
            self._done = cut
        strips: list[Strip] = []
        for _, lines in self._chunks:
            if strips and lines:
                strips.append(self._separator(width))
            strips += lines
        open_block = self._render(self.text[self._done:], width, not self._chunks)
        if strips and open_block:
            strips.append(self._separator(width))
        return strips + open_block

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        if width != self._width:
            self._strips = self._lay_out(width)
        return max(1, len(self._strips))

    def render_line(self, y: int) -> Strip:
        return self._strips[y] if y < len(self._strips) else Strip([])

    def set_text(self, text: str) -> None:
        """The text not yet in the Markdown widget (it only grows, until `take_hidden`)."""
        self.text = text
        width = self.content_region.width
        if width <= 0:  # not laid out yet: layout renders it
            self._width = 0
            self.refresh(layout=True)
            return
        old, new = self._strips, self._lay_out(width)
        self._strips = new
        if len(new) > self._reserved:
            self._reserved = len(new) + self.reserve - 1
            self.styles.height = self._reserved  # a layout pass, every few lines of text
            return
        first = first_difference(old, new)
        last = max(len(old), len(new))
        if last > first:
            self.refresh(Region(0, first, width, last - first))  # these lines only

    def take_hidden(self, view_height: int) -> str:
        """The complete blocks at the top that are out of view (the view shows the last
        `view_height` lines of the reserved height), once they are at least a view's worth;
        they leave the tail and are returned. Otherwise ''."""
        hidden = self._reserved - view_height
        if view_height <= 0 or hidden < view_height:
            return ""
        line, take = 0, 0
        for i, (_, lines) in enumerate(self._chunks):
            line += len(lines) + (1 if i else 0)
            if line > hidden:
                break
            take = i + 1
        if not take:
            return ""
        offset = self._chunks[take - 1][0]
        moved, self.text = self.text[:offset], self.text[offset:]
        self._width = 0  # what stays is rendered again (its first block now starts the tail)
        self.fit()
        return moved

    def on_resize(self, event: events.Resize) -> None:
        if self._width and self.content_region.width != self._width:
            self.fit()  # a new width: rendered again by the layout this asks for

    def fit(self) -> None:
        """Exact height again (a new width, the end of a generation, text moved out)."""
        self._reserved = 0
        self._width = 0  # render again at the width layout gives
        self.styles.height = "auto"


class Reply(OneLayoutPass, Vertical):
    """What both replies share: `append` text as it streams, `finish` once at the end, and
    a tail that is re-fitted when the width changes."""

    DEFAULT_CSS = "Reply { height: auto; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._tail: _Tail | PlainLines | None = None
        self._width = 0

    def on_resize(self, event: events.Resize) -> None:
        # a new width re-wraps the text; height changes are our own doing and are ignored,
        # and so is the first width (nothing was wrapped before it)
        if self._tail is not None and self._width and event.size.width != self._width:
            self._tail.fit()
        self._width = event.size.width


    @property
    def text(self) -> str:
        raise NotImplementedError

    async def append(self, text: str) -> None:
        raise NotImplementedError

    async def finish(self) -> None:
        raise NotImplementedError


class PlainLines(OneLayoutPass, Widget):
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
        return Strip([Segment(line, self._style)], cell_len(line))

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

    def compose(self):  # type: ignore[no-untyped-def]
        self._tail = PlainLines(self.reserve, self.fill, self.window)  # type: ignore[assignment]
        yield self._tail

    async def on_mount(self) -> None:
        if self._initial:
            await self.append(self._initial)
            await self.finish()

    @property
    def text(self) -> str:
        return self._tail.text if self._tail else ""

    async def append(self, text: str) -> None:
        self._tail.append(text)  # type: ignore[union-attr]

    def clear(self) -> None:
        self._tail.clear()  # type: ignore[union-attr]

    async def finish(self) -> None:
        """The text is complete: its exact height."""
        if self._tail is not None:
            self._tail.fit()


class MarkdownReply(Reply):
    """A chat reply rendered as Markdown while it streams.

    While it streams, the text shows in the tail, rendered by Rich's Markdown block by
    block (bold, code and lists look right as they stream), and blocks that have scrolled
    out of view move to a Textual `Markdown` widget above it, a screenful at a time, with
    `Markdown.append` (what `Markdown.get_stream()` wraps) awaited inside `batch_update()`:
    they leave the tail and appear above in one frame. `finish()` then gives the widget
    the whole text in one final `Markdown.update()` (streamed code blocks can otherwise
    end up blank), in Textual's Markdown look.
    """

    DEFAULT_CSS = """
    MarkdownReply > Markdown { padding: 0; }
    """

    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._text = text
        self._committed = len(text)  # text[:_committed] is in the Markdown widget
        self.markdown = Markdown(text)

    def compose(self):  # type: ignore[no-untyped-def]
        yield self.markdown

    @property
    def text(self) -> str:
        return self._text

    async def append(self, text: str) -> None:
        if not text:
            return
        self._text += text
        with self.app.batch_update():
            if self._tail is None:
                self._tail = _Tail()
                await self.mount(self._tail)
            moved = self._tail.take_hidden(self._view_height())
            if moved:  # blocks out of view: into the Markdown widget, in one piece
                await self.markdown.append(moved)
                self._committed += len(moved)
            self._tail.set_text(self._text[self._committed:])

    def _view_height(self) -> int:
        """The height of the view following the end of this reply; 0 when the view is
        somewhere else (scrolled up: what is out of the view's end may be in sight)."""
        view = scroll_view(self)
        if view is None or view.scroll_y < view.max_scroll_y - 1:
            return 0
        return view.scrollable_content_region.height

    async def finish(self) -> None:
        """The text is complete: one final render of all of it, and no tail."""
        with self.app.batch_update():
            if self._tail is not None:
                await self._tail.remove()
                self._tail = None
            self._committed = len(self._text)
            await self.markdown.update(self._text)
