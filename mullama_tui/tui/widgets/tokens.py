"""The token view: a reply as its tokens, each coloured by how likely the model found it,
with a cursor, and a panel that says why the token under the cursor was chosen.

Colours come from the theme (success, warning, accent, error; the likely ones plain), so
the scale reads in every theme, the high-contrast one included; token boundaries show as
alternating backgrounds. Like `PlainLines` it keeps its laid-out lines and repaints only
what changed, so it streams live at the cost of plain text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.cells import cell_len
from rich.console import Group, RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from ...engine.types import Candidate
from ..stream import TokenItem

RESERVE = 4
# (lowest probability, theme colour, label) from likely to unlikely
SCALE = [(0.9, None, "≥90%"), (0.6, "success", "60-90%"), (0.3, "warning", "30-60%"),
         (0.1, "accent", "10-30%"), (0.0, "error", "<10%")]


def bucket(prob: float) -> int:
    for i, (floor, _, _) in enumerate(SCALE):
        if prob >= floor:
            return i
    return len(SCALE) - 1


def percent(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p * 100:.1f}%"


class TokenView(Widget, can_focus=True):
    """The tokens of one reply; ←/→ (or a click) move the cursor, ↑/↓ pick an alternative
    in the panel, B branches from there. Enter, and any other key typed here, go back to
    the prompt: Enter always sends what is typed, never branches by surprise."""

    DEFAULT_CSS = "TokenView { height: auto; padding: 0 1; } TokenView:focus { background-tint: $foreground 3%; }"
    BINDINGS = [
        Binding("left", "move(-1)", "Prev token", show=False),
        Binding("right", "move(1)", "Next token", show=False),
        Binding("home", "move(-1000000)", show=False),
        Binding("end", "move(1000000)", show=False),
        Binding("up", "pick(-1)", "Alternative", show=False),
        Binding("down", "pick(1)", "Alternative", show=False),
        Binding("b", "branch", "Branch here"),
    ]

    @dataclass
    class Selected(Message):
        """The cursor moved: show this token (and highlighted alternative) in the panel."""

        view: TokenView
        index: int
        pick: int

    @dataclass
    class Left(Message):
        """Enter or a character typed here: the user wants the prompt back (with `text`)."""

        view: TokenView
        text: str

    @dataclass
    class BranchRequested(Message):
        """Take alternative `alt` at token `index` and generate on from there."""

        view: TokenView
        index: int
        alt: Candidate

    def __init__(self, items: list[TokenItem] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.items: list[TokenItem] = []
        self.cursor = -1  # no token selected
        self.pick = 0  # the highlighted alternative of the selected token
        self.diverge: int | None = None  # a token to mark (where compare panes part ways)
        # tokens another model would not have picked (the agreement pass of two quantizations)
        self.disputed: frozenset[int] = frozenset()
        self._lines: list[list[tuple[int, str]]] = []  # per line: (item index, text fragment)
        self._line_of: list[int] = []  # per item: the line it starts on
        self._width = 0
        self._reserved = 0
        self._styles_by_bucket: list[Style] = []
        self._pending = list(items or [])

    # -- data -------------------------------------------------------------------------
    def on_mount(self) -> None:
        if self._pending:
            self.extend(self._pending)
            self._pending = []

    def extend(self, items: list[TokenItem]) -> None:
        """More tokens at the end (streaming): only the new ones are laid out."""
        if not items:
            return
        first_new = len(self.items)
        self.items.extend(items)
        width = self.content_region.width
        if width <= 0 or width != self._width:
            self.refresh(layout=True)
            return
        first = self._lay_out(first_new, width)
        lines = len(self._lines)
        if lines > self._reserved:
            self._reserved = lines + RESERVE - 1
            self.styles.height = self._reserved
        else:
            self.refresh(Region(0, first, width, lines - first))

    def fit(self) -> None:
        self._reserved = 0
        self.styles.height = "auto"

    @property
    def text(self) -> str:
        return "".join(i.text for i in self.items)

    # -- layout -------------------------------------------------------------------------
    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        if width != self._width:
            self._width = width
            self._lines, self._line_of = [], []
            self._lay_out(0, width)
        return max(1, len(self._lines))

    def _lay_out(self, first: int, width: int) -> int:
        """Lay out items `first` and after (all laid out before them stays); returns the
        first line that changed. A token goes whole onto the next line when it does not
        fit (with the tokens before it of the same word), is split only when longer than a
        line, and breaks the line at a newline."""
        line = max(0, len(self._lines) - 1)
        row = self._lines.pop() if self._lines else []
        used = sum(cell_len(t) for _, t in row)
        del self._line_of[first:]
        for i in range(first, len(self.items)):
            self._line_of.append(len(self._lines))
            for n, part in enumerate(self.items[i].text.split("\n")):
                if n:  # a newline inside the token: what follows starts a line
                    self._lines.append(row)
                    row, used = [], 0
                while part:
                    room = width - used
                    if cell_len(part) <= room:
                        row.append((i, part))
                        used += cell_len(part)
                        part = ""
                    elif used and cell_len(part) <= width:
                        word = self._word_tail(row) if not part[0].isspace() else len(row)
                        moved = row[word:]
                        if not word or cell_len(part) + sum(cell_len(t) for _, t in moved) > width:
                            moved = []  # no word to keep whole, or one longer than a line
                        kept = row[:len(row) - len(moved)]
                        self._lines.append(kept)
                        for index, _ in moved:  # the word's tokens start on the new line now
                            if self._line_of[index] == len(self._lines) - 1:
                                self._line_of[index] = len(self._lines)
                        if n == 0:  # and so does this one
                            self._line_of[i] = len(self._lines)
                        row, used = list(moved), sum(cell_len(t) for _, t in moved)
                    else:
                        cut = max(1, room)
                        row.append((i, part[:cut]))
                        self._lines.append(row)
                        row, used, part = [], 0, part[cut:]
        self._lines.append(row)
        return line

    @staticmethod
    def _word_tail(row: list[tuple[int, str]]) -> int:
        """Where the word the row ends with begins (an index into `row`): a word made of
        several tokens ("mark" + "down") moves to the next line whole, never split."""
        j = len(row)
        while j > 0:
            text = row[j - 1][1]
            if not text or text[-1].isspace():
                break
            j -= 1
            if text[0].isspace():
                break
        return j

    # -- drawing --------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles_by_bucket = []

    def _palette(self) -> list[Style]:
        if not self._styles_by_bucket:
            theme = self.app.current_theme
            base = self.rich_style
            for _, name, _ in SCALE:
                colour = getattr(theme, name) if name else None
                self._styles_by_bucket.append(base + Style(color=colour) if colour else base)
            panel = theme.panel or "grey23"
            self._odd_style = Style(bgcolor=panel)
            self._cursor_style = Style(reverse=True, bold=True)
            self._mark_style = Style(underline=True, bold=True, color=theme.accent)
            self._disputed_style = Style(strike=True, color=theme.error or "red")
        return self._styles_by_bucket

    def style_of(self, index: int) -> Style:
        palette = self._palette()
        item = self.items[index]
        style: Style = palette[bucket(item.insight.prob)] if item.insight else palette[0]
        if index % 2:
            style += self._odd_style
        if index in self.disputed:
            style += self._disputed_style
        if index == self.diverge:
            style += self._mark_style
        if index == self.cursor:
            style += self._cursor_style
        return style

    def render_line(self, y: int) -> Strip:
        if y >= len(self._lines):
            return Strip.blank(self.size.width)
        segments = [Segment(text, self.style_of(i)) for i, text in self._lines[y]]
        return Strip(segments, sum(cell_len(t) for _, t in self._lines[y]))

    def _refresh_item(self, index: int) -> None:
        if 0 <= index < len(self._line_of):
            line = self._line_of[index]
            last = self._line_of[index + 1] if index + 1 < len(self._line_of) else len(self._lines) - 1
            self.refresh(Region(0, line, self.size.width, last - line + 1))

    # -- cursor ---------------------------------------------------------------------------
    def select(self, index: int) -> None:
        if not self.items:
            return
        index = max(0, min(len(self.items) - 1, index))
        old, self.cursor, self.pick = self.cursor, index, 0
        self._refresh_item(old)
        self._refresh_item(index)
        if index < len(self._line_of):
            self._show_line(self._line_of[index])
        self.post_message(self.Selected(self, index, self.pick))

    def _show_line(self, line: int) -> None:
        """Scroll the containers around so that this line (not the whole reply) is in view,
        as `scroll_visible` does for a whole widget."""
        region = Region(0, line, 1, 1).translate(self.virtual_region.offset)
        widget: Widget = self
        while isinstance(widget.parent, Widget) and widget is not self.screen:
            container = widget.parent
            offset = container.scroll_to_region(region, animate=False, immediate=True)
            region = region.translate(-offset).translate(container.virtual_region.offset)
            widget = container

    def action_move(self, step: int) -> None:
        self.select((self.cursor if self.cursor >= 0 else len(self.items)) + step)

    def action_pick(self, step: int) -> None:
        item = self.items[self.cursor] if 0 <= self.cursor < len(self.items) else None
        if item is None or item.insight is None:
            return
        self.pick = max(0, min(len(item.insight.top) - 1, self.pick + step))
        self.post_message(self.Selected(self, self.cursor, self.pick))

    def on_key(self, event: events.Key) -> None:
        if event.key == "enter" or (event.is_printable and event.character and event.key != "b"):
            event.stop()
            event.prevent_default()
            self.post_message(self.Left(self, "" if event.key == "enter" else event.character or ""))

    def action_branch(self) -> None:
        item = self.items[self.cursor] if 0 <= self.cursor < len(self.items) else None
        if item is None or item.insight is None or not item.insight.top:
            return
        self.post_message(self.BranchRequested(self, self.cursor, item.insight.top[self.pick]))

    def on_click(self, event: events.Click) -> None:
        x, y = event.x - self.styles.padding.left, event.y
        if 0 <= y < len(self._lines):
            col = 0
            for index, text in self._lines[y]:
                col += cell_len(text)
                if x < col:
                    self.focus()
                    self.select(index)
                    return


class TokenPanel(Widget):
    """Why the token under the cursor was chosen: its probability under the model and
    under the sampler, the entropy, and the top alternatives as bars, each marked kept or
    cut (and by which stage)."""

    DEFAULT_CSS = """
    TokenPanel { width: 46; height: 1fr; border-left: tall $panel; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.item: TokenItem | None = None
        self.index = -1
        self.pick = 0

    def show(self, item: TokenItem | None, index: int, pick: int) -> None:
        self.item, self.index, self.pick = item, index, pick
        self.refresh()

    def render(self) -> RenderableType:
        theme = self.app.current_theme
        legend = Text("scale: ")
        for _, name, label in SCALE:
            legend.append(f" {label} ", style=f"{getattr(theme, name)}" if name else "")
        item = self.item
        if item is None:
            return Group(Text("Token view", style="bold"), legend,
                         Text("\n←/→ or a click: a token · ↑/↓: an alternative · Enter: branch from it · "
                              "Ctrl+B: the next branch · Ctrl+T: back to text", style=theme.foreground or ""))
        if item.insight is None:
            return Group(Text(f"token {self.index}  {item.text!r}", style="bold"), legend,
                         Text("\nno insight was recorded for this token (it was generated with the token "
                              "view off)"))
        i = item.insight
        head = Text(f"token {self.index}  ", style="bold")
        head.append(repr(item.text))
        if i.forced:
            head.append("  (chosen by a branch)", style="italic")
        figures = Text(f"model {percent(i.prob)}   sampler {percent(i.sampled_prob)}   "
                       f"entropy {i.entropy:.2f} nats")
        kept = Text(f"the sampler kept {i.kept} candidate{'s' if i.kept != 1 else ''}" if i.kept else
                    "the sampler's distribution is not known here")
        table = Table.grid(padding=(0, 1))
        table.add_column(justify="right")
        table.add_column(max_width=12, no_wrap=True)
        table.add_column(width=12)
        table.add_column(justify="right")
        table.add_column()
        for n, c in enumerate(i.top[:10]):
            bar = "█" * max(0, round(c.prob * 12)) or "▏"
            mark = "chosen" if c.token_id == i.token_id else ("kept" if c.cut_by is None else f"cut: {c.cut_by}")
            style = "reverse" if n == self.pick else ""
            table.add_row(Text(str(n + 1), style=style), Text(repr(c.text)[1:-1], style=style),
                          Text(bar, style=(theme.success if c.cut_by is None else theme.error) or ""),
                          percent(c.prob), Text(mark, style="dim" if c.cut_by else ""))
        return Group(head, figures, kept, Text("alternatives (model probability):"), table, Text(""), legend,
                     Text("↑/↓ pick · Enter: branch with it", style="dim"))
