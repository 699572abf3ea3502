"""One assistant turn of the conversation: its branches (the reply, and every reply taken
from an alternative token of it), shown as text (Markdown or plain) or as tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from .gauge import _Line
from .output import MarkdownReply, RawOutput
from .tokens import TokenItem, TokenView


@dataclass
class Branch:
    """One version of a reply: its tokens (with their insight when recorded) and text."""

    items: list[TokenItem] = field(default_factory=list)
    text: str = ""
    at: int | None = None  # the token this branch took another path at (None: the original)
    run_id: int | None = None  # its row in the history, once saved


class AssistantTurn(Vertical):
    """A reply in the output pane. Shows the current branch, as text or as tokens; a line
    above it says which branch it is when there are several."""

    DEFAULT_CSS = """
    AssistantTurn { height: auto; }
    AssistantTurn > .branch-label { color: $text-muted; padding: 0 1; }
    """

    def __init__(self, mode: str, tokens: bool, branches: list[Branch] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.tokens = tokens
        self.branches = branches or [Branch()]
        self.current = len(self.branches) - 1
        self.body: Widget | None = None

    @property
    def branch(self) -> Branch:
        return self.branches[self.current]

    @property
    def text(self) -> str:
        return self.branch.text

    def compose(self) -> ComposeResult:
        yield _Line("", classes="branch-label")
        self.body = self._body()
        yield self.body

    def on_mount(self) -> None:
        self._label()

    def _body(self) -> Widget:
        b = self.branch
        if self.tokens:
            return TokenView(list(b.items))
        if self.mode == "chat":
            return MarkdownReply(b.text)
        return RawOutput(b.text, classes="raw")

    def _label(self) -> None:
        label = self.query_one(".branch-label", _Line)
        label.display = len(self.branches) > 1
        if len(self.branches) > 1:
            b = self.branch
            where = "the original reply" if b.at is None else f"from token {b.at}"
            label.show(Text(f"branch {self.current + 1} of {len(self.branches)} · {where} · Ctrl+B: the next"))

    async def rebuild(self) -> None:
        """Show the current branch again, in the current form (text or tokens)."""
        with self.app.batch_update():
            if self.body is not None:
                await self.body.remove()
            self.body = self._body()
            await self.mount(self.body)
            self._label()

    async def set_tokens(self, on: bool) -> None:
        if on != self.tokens:
            self.tokens = on
            await self.rebuild()

    async def append(self, text: str, items: list[TokenItem]) -> None:
        b = self.branch
        b.text += text
        b.items.extend(items)
        body = self.body
        if isinstance(body, TokenView):
            body.extend(items)
        elif text and isinstance(body, (MarkdownReply, RawOutput)):
            await body.append(text)

    async def finish(self) -> None:
        body = self.body
        if isinstance(body, TokenView):
            body.fit()
        elif isinstance(body, (MarkdownReply, RawOutput)):
            await body.finish()

    async def add_branch(self, at: int) -> Branch:
        """A new branch that keeps the current one's first `at` tokens; it becomes current."""
        kept = self.branch.items[:at]
        branch = Branch(items=list(kept), text="".join(i.text for i in kept), at=at)
        self.branches.append(branch)
        self.current = len(self.branches) - 1
        await self.rebuild()
        return branch

    async def cycle(self) -> Branch:
        self.current = (self.current + 1) % len(self.branches)
        await self.rebuild()
        return self.branch
