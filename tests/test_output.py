"""The streaming reply widgets: block boundaries (pure) and the Markdown reply in a
real app (a pure layout test: no model needed, so none is loaded)."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown

from mullama_tui.tui.widgets.markdown import MarkdownReply, block_boundary


def test_block_boundary_is_the_last_blank_line_outside_a_code_fence():
    assert block_boundary("one para") == 0
    assert block_boundary("one\n\ntwo") == 5
    assert block_boundary("a\n\nb\n\nc") == 6
    assert block_boundary("one\n\n") == 0  # what follows is not known yet
    assert block_boundary("- item\n\n  more of the item\n\n    code") == 0  # indented: same block
    assert block_boundary("- item\n\n  more\n\nNext") == len("- item\n\n  more\n\n")
    fenced = "intro\n\n```py\nx = 1\n\ny = 2\n"
    assert block_boundary(fenced) == 7  # the blank line inside the fence does not count
    closed = fenced + "```\n\nafter"
    assert block_boundary(closed) == len(closed) - len("after")
    assert block_boundary(fenced + "```\n\n") == 7  # the fence closed, the next block not begun
    assert block_boundary("a\n\nb\n\nc", start=3) == 6
    assert block_boundary("~~~\n\n", 0) == 0


class _Host(App[None]):
    def compose(self) -> ComposeResult:
        yield VerticalScroll(id="out")


class _Following(App[None]):
    """The conversation's scrolling container, styled as the app styles it while streaming,
    following its end."""

    CSS = "#out { overflow-y: scroll; scrollbar-size-vertical: 0; }"

    def compose(self) -> ComposeResult:
        from mullama_tui.tui.widgets.reply import FollowingScroll

        yield FollowingScroll(id="out")

    def on_mount(self) -> None:
        self.query_one("#out").anchor()


class _GaugeHost(App[None]):
    def compose(self) -> ComposeResult:
        from mullama_tui.tui.widgets.gauge import Gauge

        yield Gauge()


@pytest.fixture()
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The gauge's clock, stepped by hand (`clock[0] += seconds`)."""
    from mullama_tui.tui.widgets import gauge as g

    now = [100.0]
    monkeypatch.setattr(g.time, "perf_counter", lambda: now[0])
    return now


async def _mounted_raw(app: App, pilot) -> tuple:
    """A `RawOutput` mounted in the app's `#out` and laid out: (the reply, its `PlainLines`)."""
    from mullama_tui.tui.widgets.plain import PlainLines, RawOutput

    raw = RawOutput()
    await app.query_one("#out").mount(raw)
    await pilot.pause()
    return raw, raw.query_one(PlainLines)


def _layout_passes(app: App) -> list[int]:
    """A list that grows by one at every layout pass of the app's screen from now on."""
    passes: list[int] = []
    original = app.screen._refresh_layout
    app.screen._refresh_layout = lambda *a, **k: (passes.append(1), original(*a, **k))[1]
    return passes


async def test_markdown_reply_streams_blocks_and_ends_with_one_full_render():
    app = _Host()
    async with app.run_test(size=(60, 20)) as pilot:
        reply = MarkdownReply()
        await app.query_one("#out").mount(reply)
        pieces = ["# Ti", "tle\n\nSome **bo", "ld** text.\n\n", "- one\n- two", "\n\n```py\nx = 1\n", "\ny = 2\n```\n"]
        for p in pieces:
            await reply.append(p)
            await pilot.pause()
        md = reply.query_one(Markdown)
        # all in view: all in the tail, complete blocks and the open code block
        assert md.source == "" and reply._tail is not None and reply._tail.text == "".join(pieces)
        assert [end for end, _ in reply._tail._chunks][-1] == len("# Title\n\nSome **bold** text.\n\n- one\n- two\n\n")
        await reply.finish()
        await pilot.pause()
        assert reply._tail is None and md.source == "".join(pieces) == reply.text
        shown = "\n".join(str(b.render()) for b in md.query("MarkdownBlock"))
        assert "Title" in shown and "**" not in shown  # rendered, not shown as source


async def test_markdown_blocks_move_out_of_the_tail_a_screenful_at_a_time_once_out_of_view():
    """A long reply: the tail holds what is in view (and up to a view more), and blocks
    that scrolled out of view move to the Markdown widget in a few whole pieces, not one
    per paragraph (each move is a layout pass). A pure layout test: no model."""
    app = _Host()
    async with app.run_test(size=(60, 20)) as pilot:
        out = app.query_one("#out")
        out.anchor()
        reply = MarkdownReply()
        await out.mount(reply)
        md = reply.query_one(Markdown)
        moves: list[str] = []
        original = md.append
        md.append = lambda text: (moves.append(text), original(text))[1]
        text = "".join(f"Paragraph {i}: the keeper climbed the stairs and lit the lamp.\n\n" for i in range(40))
        for i in range(0, len(text), 25):
            await reply.append(text[i:i + 25])
            await pilot.pause()
        tail = reply._tail
        assert tail is not None and moves and len(moves) <= 6, len(moves)  # 40 paragraphs, 80+ lines
        assert all(m.endswith("\n\n") for m in moves)  # whole blocks
        assert md.source == "".join(moves) and tail.text == text[len(md.source):]
        assert md.region.bottom <= out.region.y  # what moved is above the view
        await reply.finish()
        await pilot.pause()
        assert reply._tail is None and md.source == text


async def test_gauge_rate_is_measured_between_batch_arrivals(clock):
    """Steady batches of 20 tokens every 0.2 s read as 100 tok/s from the second batch on,
    without the start spike (the first batch was decoded before it arrived) or the ±20%
    jumps of counting whole batches in a fixed window. A pure widget test: time is stepped
    by hand, no model."""
    from mullama_tui.tui.widgets import gauge as g

    app = _GaugeHost()
    async with app.run_test():
        gauge = app.query_one(g.Gauge)
        gauge.start(1000, 4096)
        readings = []
        for _ in range(15):
            clock[0] += 0.2
            gauge.add_tokens(20)
            gauge.tick()
            readings.append(round(gauge.rate, 6))
        assert readings[0] == 0.0  # one batch: no rate yet, rather than a spike
        assert all(r == 100.0 for r in readings[1:]), readings
        clock[0] += 2.0  # nothing arrives for longer than the window: stalled
        gauge.tick()
        assert gauge.rate == 0.0


async def test_the_markdown_tail_keeps_its_render_and_repaints_only_changed_lines():
    """The tail renders once per update into kept lines equal to a fresh render of its
    text (markup-like text shown literally), repaints from the first changed line down,
    and renders again at a new width. A pure widget test: no model."""
    from textual.geometry import Region

    from mullama_tui.tui.widgets.markdown import MarkdownTail

    app = _Host()
    async with app.run_test(size=(50, 20)) as pilot:
        tail = MarkdownTail()
        await app.query_one("#out").mount(tail)
        await pilot.pause()
        text = "[red]x[/red] [bold and *emphasis* " + "the keeper lit the lamp at dusk " * 4
        tail.set_text(text[:60])
        await pilot.pause()
        width = tail.content_region.width

        def shown() -> list[str]:
            return [tail.render_line(y).text.rstrip() for y in range(len(tail._strips))]

        assert shown()[0].startswith("[red]x[/red] [bold and emphasis")
        before = len(tail._strips)
        repainted: list[Region] = []
        original = tail.refresh
        tail.refresh = lambda *regions, **kw: (repainted.extend(regions), original(*regions, **kw))[1]
        tail.set_text(text)
        assert shown() == [s.text.rstrip() for s in tail.render_blocks(text, width, True)]
        assert len(tail._strips) > before
        # within the reserved height: no layout, a repaint from the last line before down
        assert repainted and all(r.y >= before - 1 for r in repainted)
        tail.refresh = original
        await pilot.resize_terminal(30, 20)
        await pilot.pause()
        narrow = tail.content_region.width
        assert narrow < width and tail._width == narrow and max(len(s) for s in shown()) <= narrow


async def test_plain_lines_stream_into_the_same_lines_as_the_whole_text():
    """Appended in pieces of every size (paragraphs ending mid-piece, long words, a piece
    of only spaces), the kept lines equal a fresh wrap of the whole text; a new width
    re-wraps. A pure widget test: no model."""
    import random

    text = ("The keeper climbed the stairs at dusk and lit the lamp. " * 3 + "\n\n"
            + "Supercalifragilisticexpialidocious-and-then-some-more " * 2 + "\n" + "   " + "\nend.")
    app = _Host()
    async with app.run_test(size=(50, 30)) as pilot:
        raw, lines = await _mounted_raw(app, pilot)
        rng, i = random.Random(3), 0
        while i < len(text):
            n = rng.choice([1, 2, 5, 17, 40])
            await raw.append(text[i:i + n])
            i += n
            await pilot.pause()
        width = lines.content_region.width
        assert raw.text == text and lines._lines == lines._wrap(text, width)
        assert [lines.render_line(y).text.rstrip() for y in range(len(lines._lines))] == lines._lines
        assert all(len(line) <= width for line in lines._lines)
        await pilot.resize_terminal(30, 30)
        await pilot.pause()
        narrow = lines.content_region.width
        assert narrow < width and lines._lines == lines._wrap(text, narrow)


async def test_a_streaming_reply_costs_one_layout_pass_per_reserved_step():
    """Text streamed into a reply inside the conversation's scrolling container lays the
    screen out once each time it outgrows its reserved lines, and not a second time when
    the widgets take their new sizes (Textual's stock widgets ask for that second pass).
    The view follows the end. A pure layout test: no model."""
    from mullama_tui.tui.widgets.reply import RESERVE_LINES

    app = _Following()
    async with app.run_test(size=(60, 20)) as pilot:
        out = app.query_one("#out")
        raw, _ = await _mounted_raw(app, pilot)
        layouts = _layout_passes(app)
        n_lines = 60
        for i in range(n_lines):
            await raw.append(f"line {i} of the story\n")
            await pilot.pause()
        steps = n_lines // RESERVE_LINES
        assert steps <= len(layouts) <= steps + 2, (len(layouts), steps)
        assert out.scroll_y == out.max_scroll_y > 0  # following the newest line


async def test_the_gauge_draws_rate_sparkline_progress_and_details_in_its_width(clock):
    """The gauge's two lines (drawn by the gauge itself): the rate, the sparkline of past
    rates (its tallest bar at the highest rate), the progress bar and percentage, then the
    details; cut to the width on a narrow terminal. A pure widget test: no model."""
    from mullama_tui.tui.widgets import gauge as g

    app = _GaugeHost()
    async with app.run_test(size=(120, 6)) as pilot:
        gauge = app.query_one(g.Gauge)
        gauge.start(1000, 4096)
        for n in [20, 20, 40, 40, 10, 10, 20, 20, 20, 20]:
            clock[0] += 0.2
            gauge.add_tokens(n)
            gauge.tick()
        await pilot.pause()
        top, details = (gauge.render_line(y).text for y in (0, 1))
        assert top.startswith(" 100.0 tok/s") and "22%" in top
        bars = [c for c in top if c in g.SPARK_BARS]
        assert len(bars) == 120 - 2 - gauge.RATE_WIDTH - gauge.PROGRESS_WIDTH - 2
        assert "█" in bars and "▁" in bars  # from zero to the highest rate
        assert details.startswith("tokens 220/1000") and "context 220/4096" in details
        await pilot.resize_terminal(50, 6)
        await pilot.pause()
        width = gauge.content_region.width
        assert all(gauge.render_line(y).cell_length == width for y in (0, 1))
        cut = gauge.render_line(1).text.split()
        assert cut and cut == details.split()[:len(cut)]  # cut between words, not in one


async def test_the_tail_renders_block_by_block_as_rich_renders_the_whole():
    """Blocks rendered once each as they complete, joined, look exactly like one Rich
    render of the whole text (lists, headings, code, quotes, loose lists), however the
    text arrives. A pure widget test: no model."""
    import random

    from mullama_tui.tui.widgets.markdown import MarkdownTail

    docs = ["The keeper lit the lamp.\n\n- one\n- two\n\n# A heading\n\nSome **bold** and `code` here, a long "
            "line that wraps around the width of the pane.\n\n```py\nx = 1\n\ny = 2\n```\n\n> a quote\n\n"
            "1. first\n2. second\n\nThe end.",
            "# Title\n\nPara one.\n\nPara two.\n\n## Sub\n\n- a\n\n- b\n\nlast"]
    app = _Host()
    async with app.run_test(size=(50, 40)) as pilot:
        for doc in docs:
            tail = MarkdownTail()
            await app.query_one("#out").mount(tail)
            await pilot.pause()
            rng, i = random.Random(1), 0
            while i < len(doc):
                i += rng.choice([1, 3, 8, 20])
                tail.set_text(doc[:i])
            width = tail.content_region.width
            assert len(tail._chunks) >= 3
            assert [s.text for s in tail._strips] == [s.text for s in tail.render_blocks(doc, width, True)]
            await tail.remove()


async def test_plain_lines_repaint_only_the_lines_an_append_changed():
    """A word added to a long paragraph re-wraps the paragraph but repaints from the first
    line that changed (its last), not the whole paragraph. A pure widget test: no model."""
    from textual.geometry import Region

    app = _Host()
    async with app.run_test(size=(40, 40)) as pilot:
        raw, lines = await _mounted_raw(app, pilot)
        await raw.append("The keeper climbed the stairs at dusk and lit the lamp. " * 6)
        await pilot.pause()
        n = len(lines._lines)
        assert n >= 6 and lines._reserved > n  # one paragraph of several lines, room to grow
        repainted: list[Region] = []
        original = lines.refresh
        lines.refresh = lambda *regions, **kw: (repainted.extend(regions), original(*regions, **kw))[1]
        await raw.append("Again")
        assert repainted == [Region(0, n - 1, lines.content_region.width, 1)]


async def test_a_windowed_pane_shows_its_newest_lines_without_layout_then_all_of_them():
    """A compare pane's text (fill + window): once it fills the view it shows the newest
    lines in the view's height, with no layout pass however long it grows; at the end
    (`finish`) it takes its whole height and the view follows its end. A pure layout
    test: no model."""
    from mullama_tui.tui.widgets.plain import PlainLines, RawOutput

    app = _Following()
    async with app.run_test(size=(40, 20)) as pilot:
        out = app.query_one("#out")
        out.styles.height = 10  # a pane's view
        raw = RawOutput(fill=True, window=True)
        await out.mount(raw)
        await pilot.pause()
        lines = raw.query_one(PlainLines)
        lines.clear()
        await pilot.pause()
        layouts = _layout_passes(app)
        for i in range(40):
            await raw.append(f"line {i}\n")
            await pilot.pause()
        shown = [lines.render_line(y).text.rstrip() for y in range(lines.size.height)]
        assert lines.size.height == 10 and shown[-2:] == ["line 39", ""] and shown[0] == "line 31"
        assert len(layouts) <= 1, len(layouts)
        await raw.finish()
        await pilot.pause()
        assert lines.size.height == 41 and lines.render_line(0).text.rstrip() == "line 0"
        assert out.scroll_y == out.max_scroll_y > 0


async def test_a_mouse_selection_across_a_streaming_reply_copies_its_text():
    """Selecting across a Markdown reply still streaming (its tail) and a plain reply
    gives their text as shown, and nothing else (Textual's own `get_selection` would call
    the widget's `_render()`, which a line widget does not use)."""
    from mullama_tui.tui.widgets.markdown import MarkdownTail
    from mullama_tui.tui.widgets.plain import PlainLines, RawOutput

    app = _Following()
    async with app.run_test(size=(60, 20)) as pilot:
        md, raw = MarkdownReply(), RawOutput()
        await app.query_one("#out").mount(md, raw)
        await md.append("First **bold** paragraph.\n\nSecond paragraph, still streaming")
        await raw.append("plain line one\nplain line two")
        await pilot.pause()
        tail, lines = app.query_one(MarkdownTail), app.query_one(PlainLines)
        await pilot.mouse_down(tail, offset=(6, 0))
        await pilot.hover(lines, offset=(5, 1))
        await pilot.mouse_up(lines, offset=(5, 1))
        await pilot.pause()
        assert app.screen.get_selected_text() == ("bold paragraph.\n\nSecond paragraph, still streaming\n"
                                                  "plain line one\nplain")
        # the selection is painted: the selected cells carry the screen's selection style
        selection_style = app.screen.get_component_rich_style("screen--selection")
        painted = [seg for seg in tail.render_line(0) if seg.style and selection_style.bgcolor == seg.style.bgcolor]
        assert "".join(seg.text for seg in painted).startswith("bold")


async def test_the_copy_of_rich_markdown_renders_as_rich_s_own():
    """widgets/markdown.py reuses one Markdown parser by setting a copy's `markup` and
    `parsed` (Rich's Markdown has no public way to pass a parser): the copy must render
    exactly as `rich.markdown.Markdown(text)` does, or the `rich` bound in pyproject.toml
    is wrong."""
    from rich.console import Console
    from rich.markdown import Markdown as RichMarkdown

    from mullama_tui.tui.widgets.markdown import rich_markdown

    text = ("# Title\n\nSome **bold**, `code` and a [link](http://x).\n\n- one\n- two\n\n```py\nx = 1\n```\n\n"
            "| a | b |\n|---|---|\n| 1 | 2 |")
    console = Console(width=50, record=True, color_system=None)

    def rendered(md) -> str:
        with console.capture() as cap:
            console.print(md)
        return cap.get()

    assert rendered(rich_markdown(text)) == rendered(RichMarkdown(text))


def test_the_one_layout_pass_override_still_matches_textual():
    """`OneLayoutPass` overrides Textual's private `Widget._size_updated` (no public way
    skips the second layout pass a new size asks for). If Textual renames it or changes
    its parameters this fails, and the pin in pyproject.toml must not be raised until the
    override is looked at again."""
    import inspect

    from textual.widget import Widget

    from mullama_tui.tui.widgets.reply import OneLayoutPass

    theirs = inspect.signature(Widget._size_updated)
    ours = inspect.signature(OneLayoutPass._size_updated)
    assert list(theirs.parameters) == list(ours.parameters) == ["self", "size", "virtual_size", "container_size",
                                                                "layout"]
    assert theirs.parameters["layout"].default is True


async def test_the_token_view_keeps_a_word_of_several_tokens_on_one_line():
    """"mark" + "down" at the end of a line: the word moves down whole (a pure layout
    test of the widget, fed scripted tokens: no model needed to lay out text)."""
    from mullama_tui.tui.stream import TokenItem
    from mullama_tui.tui.widgets.tokens import TokenView

    class Host(App):
        def compose(self) -> ComposeResult:
            yield TokenView(id="v")

    texts = ["The", " quick", " brown", " mark", "down", " fox", " jumps", " over", "-", "the", "-", "lazy"]
    app = Host()
    async with app.run_test(size=(22, 10)) as pilot:  # 20 columns inside the view's padding
        view = app.query_one(TokenView)
        await pilot.pause()
        for i, t in enumerate(texts):  # streamed one token at a time, as a reply arrives
            view.extend([TokenItem(t, i)])
        await pilot.pause()
        lines = ["".join(t for _, t in row) for row in view._lines]
        assert lines[0] == "The quick brown" and lines[1].startswith(" markdown fox")
        for word in ("markdown", "over-the-lazy"):
            assert any(word in line for line in lines), lines
        assert view._line_of[3] == view._line_of[4] == 1  # " mark" starts on the line "down" is on
        assert all(len(line) <= 20 for line in lines)
