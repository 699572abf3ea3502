"""The streaming reply widgets: block boundaries (pure) and the Markdown reply in a
real app (a pure layout test: no model needed, so none is loaded)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Markdown

from mullama_tui.tui.widgets.output import MarkdownReply, block_boundary


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
        # finished blocks are in the Markdown widget, the open code block is still in the tail
        assert md.source == "# Title\n\nSome **bold** text.\n\n- one\n- two\n\n"
        assert reply._tail is not None and reply._tail.text.startswith("```py")
        await reply.finish()
        await pilot.pause()
        assert reply._tail is None and md.source == "".join(pieces) == reply.text
        shown = "\n".join(str(b.render()) for b in md.query("MarkdownBlock"))
        assert "Title" in shown and "**" not in shown  # rendered, not shown as source
