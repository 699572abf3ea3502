"""Markdown that streams cheaply: `MarkdownReply` (a chat reply) shows the text still
streaming in a `MarkdownTail`, rendered by Rich block by block (each complete block
once, the open block per update), and moves blocks to Textual's `Markdown` widget only
once they have scrolled out of view, a screenful at a time (a move mounts widgets: a
layout pass). See widgets/reply.py for why."""

from __future__ import annotations

import copy
import re
from typing import Any

from markdown_it import MarkdownIt
from rich.markdown import Markdown as RichMarkdown
from textual import events
from textual.app import ComposeResult
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widgets import Markdown

from .reply import RESERVE_LINES, Fittable, OneLayoutPass, Reply, SelectableLines, first_difference, scroll_view

_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)

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


class MarkdownTail(OneLayoutPass, SelectableLines, Fittable):
    """The reply's text not yet in the Markdown widget, rendered by Rich into kept lines
    (`render_line` hands them out) in chunks: each complete block is rendered once, when
    it completes, and only the block still being written is rendered on every update. A
    repaint names only the lines that changed, usually the last one or two.

    It holds many blocks (a screenful and more): moving each finished paragraph into
    Textual's Markdown widget mounted a widget and cost two layout passes of the screen
    per paragraph; blocks now move in one piece once they have scrolled out of view
    (`take_hidden`), where the change of look cannot be seen."""

    DEFAULT_CSS = "MarkdownTail { height: auto; }"

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

    def render_blocks(self, text: str, width: int, first: bool) -> list[Strip]:
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
            self._blank = width, self.render_blocks("x\n\nx", width, True)[1]
        return self._blank[1]

    def _lay_out(self, width: int) -> list[Strip]:
        """Render what is new since the last call at `width` (everything at a new width):
        blocks completed since, once each, and the open block."""
        if width != self._width:
            self._width, self._chunks, self._done = width, [], 0
        cut = block_boundary(self.text, self._done)
        if cut > self._done:
            self._chunks.append((cut, self.render_blocks(self.text[self._done:cut], width, not self._chunks)))
            self._done = cut
        strips: list[Strip] = []
        for _, lines in self._chunks:
            if strips and lines:
                strips.append(self._separator(width))
            strips += lines
        open_block = self.render_blocks(self.text[self._done:], width, not self._chunks)
        if strips and open_block:
            strips.append(self._separator(width))
        return strips + open_block

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        if width != self._width:
            self._strips = self._lay_out(width)
        return max(1, len(self._strips))

    def render_line(self, y: int) -> Strip:
        return self.selectable_line(y, self._strips[y] if y < len(self._strips) else Strip([]))

    def _selectable_strips(self) -> list[Strip]:
        return self._strips

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
        self._streaming: MarkdownTail | None = None  # the text not yet in `markdown`, while it streams

    def compose(self) -> ComposeResult:
        yield self.markdown

    @property
    def text(self) -> str:
        return self._text

    async def append(self, text: str) -> None:
        if not text:
            return
        self._text += text
        with self.app.batch_update():
            tail = self._streaming
            if tail is None:
                tail = self._streaming = self._tail = MarkdownTail()
                await self.mount(tail)
            moved = tail.take_hidden(self._view_height())
            if moved:  # blocks out of view: into the Markdown widget, in one piece
                await self.markdown.append(moved)
                self._committed += len(moved)
            tail.set_text(self._text[self._committed:])

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
            if self._streaming is not None:
                await self._streaming.remove()
                self._streaming = self._tail = None
            self._committed = len(self._text)
            await self.markdown.update(self._text)
