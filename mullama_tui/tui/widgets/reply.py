"""What the streaming widgets share (widgets/plain.py: plain text; widgets/markdown.py:
Markdown): a reply base class, and the layout economy that keeps streaming cheap.

Why they are shaped this way: on a 2-core machine llama.cpp's two compute threads need
both cores, so every millisecond the UI thread spends is taken from decoding (and stalls
the other thread at its barrier). In Textual, any widget that changes size asks for a
layout pass of the whole screen, and a widget whose size changed asks for a second one
after it; a repaint of one widget costs a fraction of that. Measured on the bundled
model, 1000 tokens: chat replies streamed into a `Markdown` widget cost ~1.0 s of
UI-thread CPU, almost all of it in ~120 layout passes (every batch grows a paragraph).
So both reply widgets reserve their height a few lines ahead (most updates lay out
nothing), neither re-renders an ever-growing text per update, and neither asks Textual
for the second layout pass a new size normally costs (`OneLayoutPass`).

Model text is never parsed as Rich/Textual markup: plain text is a `rich.text.Text`, and
Markdown goes through a Markdown parser, so `[red]x[/red]` shows literally.

Selection: the line widgets (`PlainLines`, `MarkdownTail`) hand out lines whose segments
carry their offsets, paint the selection, and answer `get_selection`, as Textual's `Log`
does, so a mouse selection across replies copies what the model wrote (and no border).
"""

from __future__ import annotations

from typing import Any

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.containers import ScrollableContainer, Vertical, VerticalScroll
from textual.selection import Selection
from textual.strip import Strip
from textual.widget import Widget

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
        updated: bool = super()._size_updated(size, virtual_size, container_size, layout=False)  # type: ignore[misc]
        return updated


class FollowingScroll(OneLayoutPass, VerticalScroll):
    """The scrolling container a reply streams into (anchored to its end while it streams)."""


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


class SelectableLines(Widget):
    """A line-API widget whose kept lines can be selected with the mouse and copied.

    Subclasses keep their lines as strips (`_selectable_strips`); `selectable_line`
    gives line `y` with its offsets (which is how Textual maps the mouse to text) and the
    selection painted on it; `get_selection` extracts the selected text from the lines."""

    def _selectable_strips(self) -> list[Strip]:
        raise NotImplementedError

    def selectable_text(self) -> str:
        """The widget's text, line by line, as it is shown."""
        return "\n".join(strip.text.rstrip() for strip in self._selectable_strips())

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract(self.selectable_text()), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self.refresh()

    def selectable_line(self, y: int, strip: Strip) -> Strip:
        selection = self.text_selection
        if selection is not None and (span := selection.get_span(y)) is not None:
            start, end = span
            text = strip.text
            end = len(text) if end == -1 else end
            if end > start:
                style = self.screen.get_component_rich_style("screen--selection")
                strip = selected(strip, start, end, style)
        return strip.apply_offsets(0, y)


def selected(strip: Strip, start: int, end: int, style: Style) -> Strip:
    """`strip` with `style` laid over its characters from `start` to `end`."""
    out: list[Segment] = []
    pos = 0
    for seg in strip:
        text, seg_style, control = seg
        if control:
            out.append(seg)
            continue
        n = len(text)
        a, b = max(start - pos, 0), min(end - pos, n)
        if a >= b:
            out.append(seg)
        else:
            if a:
                out.append(Segment(text[:a], seg_style))
            out.append(Segment(text[a:b], seg_style + style if seg_style else style))
            if b < n:
                out.append(Segment(text[b:], seg_style))
        pos += n
    return Strip(out, strip.cell_length)


class Fittable(Widget):
    """A streaming text widget that can be given its exact height again (`fit`)."""

    def fit(self) -> None:
        raise NotImplementedError


class Reply(OneLayoutPass, Vertical):
    """What both replies share: `append` text as it streams, `finish` once at the end, and
    a tail that is re-fitted when the width changes."""

    DEFAULT_CSS = "Reply { height: auto; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._tail: Fittable | None = None
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
