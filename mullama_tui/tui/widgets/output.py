"""Streaming replies that stay cheap however long they grow: `RawOutput` (plain text) and
`MarkdownReply` (chat mode).

Why they are shaped this way: on a 2-core machine llama.cpp's two compute threads need
both cores, so every millisecond the UI thread spends is taken from decoding (and stalls
the other thread at its barrier). In Textual, any widget that changes size asks for a
layout pass of the whole screen, and a widget whose size changed asks for a second one
after it; a repaint of one widget costs a fraction of that. Measured on the bundled
model, 1000 tokens: chat replies streamed into a `Markdown` widget cost ~1.0 s of
UI-thread CPU, almost all of it in ~120 layout passes (every batch grows a paragraph).
So both widgets:
- keep the text that is still growing in a `_Tail` that reserves its height a few lines
  ahead: most updates repaint that one widget and lay out nothing;
- move finished text out of the tail in whole pieces, rarely: raw text in frozen chunks
  (so no update re-renders an ever-growing text), Markdown in whole blocks appended to
  the `Markdown` widget (one layout per paragraph, not per batch).

Model text is never parsed as Rich/Textual markup: plain text is a `rich.text.Text`, and
Markdown goes through a Markdown parser, so `[red]x[/red]` shows literally.
"""

from __future__ import annotations

import re

from rich.console import RenderableType
from rich.markdown import Markdown as RichMarkdown
from rich.text import Text
from textual import events
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Markdown, Static

CHUNK_CHARS = 1500
RESERVE_LINES = 6  # lines reserved ahead of the text while it streams

_FENCE = re.compile(r"^ {0,3}(```|~~~)", re.MULTILINE)


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


class _Tail(Widget):
    """The text that is still growing, as plain text or as Markdown (rendered by Rich)."""

    DEFAULT_CSS = "_Tail { height: auto; }"

    def __init__(self, text: str = "", markdown: bool = False) -> None:
        super().__init__()
        self.text = text
        self.markdown = markdown
        self._reserved = 0

    def render(self) -> RenderableType:
        return RichMarkdown(self.text) if self.markdown else Text(self.text)

    def _lines(self, width: int) -> int:
        """How many lines the text takes. Markdown is measured exactly (a full Rich render)
        only when the plain-text count says it may not fit, which is rare."""
        if not self.text:
            return 1
        console = self.app.console
        plain = len(Text(self.text).wrap(console, width))
        if not self.markdown or plain + RESERVE_LINES // 2 < self._reserved:
            return plain
        return len(console.render_lines(self.render(), console.options.update_width(width), pad=False))

    def set_text(self, text: str) -> None:
        self.text = text
        width = self.content_region.width
        if width <= 0:  # not laid out yet: let layout size it
            self.refresh(layout=True)
            return
        lines = self._lines(width)
        if lines > self._reserved or self._reserved == 0:
            self._reserved = lines + RESERVE_LINES - 1
            self.styles.height = self._reserved  # a layout pass, every few lines of text
        else:
            self.refresh()  # repaint this widget only

    def fit(self) -> None:
        """Exact height again (a new piece of text, the end of a generation, a resize)."""
        self._reserved = 0
        self.styles.height = "auto"


class Reply(Vertical):
    """What both replies share: `append` text as it streams, `finish` once at the end, and
    a tail that is re-fitted when the width changes."""

    DEFAULT_CSS = "Reply { height: auto; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._tail: _Tail | None = None
        self._width = 0

    def on_resize(self, event: events.Resize) -> None:
        # a new width re-wraps the text; height changes are our own doing and are ignored
        if self._tail is not None and event.size.width != self._width:
            self._tail.fit()
        self._width = event.size.width


    @property
    def text(self) -> str:
        raise NotImplementedError

    async def append(self, text: str) -> None:
        raise NotImplementedError

    async def finish(self) -> None:
        raise NotImplementedError


class RawOutput(Reply):
    """Plain text: frozen chunks of ~CHUNK_CHARS, then the growing tail."""

    DEFAULT_CSS = "RawOutput > Static { height: auto; }"

    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._initial = text
        self._frozen: list[str] = []

    async def on_mount(self) -> None:
        if self._initial:
            await self.append(self._initial)
            await self.finish()

    @property
    def text(self) -> str:
        return "".join(self._frozen) + (self._tail.text if self._tail else "")

    async def append(self, text: str) -> None:
        if self._tail is None:
            self._tail = _Tail()
            await self.mount(self._tail)
        tail = self._tail.text + text
        cut = tail.rfind("\n") if len(tail) > CHUNK_CHARS else -1
        if cut != -1:
            done, rest = tail[:cut + 1], tail[cut + 1:]
            self._frozen.append(done)
            await self.mount(Static(Text(done), markup=False), before=self._tail)
            tail = rest
            self._tail.fit()
        self._tail.set_text(tail)

    async def finish(self) -> None:
        """The text is complete: size the last chunk exactly."""
        if self._tail is not None:
            self._tail.fit()
            self._tail.refresh(layout=True)


class MarkdownReply(Reply):
    """A chat reply rendered as Markdown while it streams.

    Finished blocks (up to the last blank line outside a code fence) are appended to a
    Textual `Markdown` widget; the block still being written shows in the tail, rendered
    by Rich's Markdown in the same place, so bold, code and lists look right while
    they stream. A block moves with `Markdown.append` (what `Markdown.get_stream()`
    wraps) awaited inside `batch_update()`, so it leaves the tail and appears above in the
    same frame; the stream's own queue would add it a frame or two later, and the
    paragraph would blink. `finish()` then gives the widget the whole text in one final
    `Markdown.update()` (streamed code blocks can otherwise end up blank).
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
        cut = block_boundary(self._text, self._committed)
        with self.app.batch_update():
            if self._tail is None:
                self._tail = _Tail(markdown=True)
                await self.mount(self._tail)
            if cut > self._committed:
                await self.markdown.append(self._text[self._committed:cut])
                self._committed = cut
                self._tail.fit()  # its text just shrank; the new block is laid out anyway
            self._tail.set_text(self._text[self._committed:])

    async def finish(self) -> None:
        """The text is complete: one final render of all of it, and no tail."""
        with self.app.batch_update():
            if self._tail is not None:
                await self._tail.remove()
                self._tail = None
            self._committed = len(self._text)
            await self.markdown.update(self._text)
