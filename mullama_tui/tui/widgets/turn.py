"""One assistant turn of the conversation: its branches (the reply, and every reply taken
from an alternative token of it), shown as text (Markdown or plain) or as tokens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from ..stream import TokenItem
from .gauge import OneLine
from .plain import PlainLines, RawOutput
from .reply import OneLayoutPass, Reply
from .tokens import TokenView


@dataclass
class ReplyBranch:
    """One version of a reply: its tokens (with their insight when recorded), its answer
    text and, for a thinking model, its thinking."""

    items: list[TokenItem] = field(default_factory=list)
    text: str = ""
    at: int | None = None  # the token this branch took another path at (None: the original)
    run_id: int | None = None  # its row in the history, once saved
    thinking: str = ""
    thinking_tokens: int = 0
    thought_for: float | None = None  # seconds, once the answer began
    edited: bool = False  # it starts with text the user wrote in place of the model's
    origin: str = ""  # "regenerated" (made again from the start) or "continued" (the model went on)


class ThinkingBlock(Vertical):
    """A thinking model's thinking, above its answer: dimmed and compact while it streams,
    folded to one line ("Thought for 12.3 s, 412 tokens") once the answer begins; a click
    on that line (or Ctrl+O) opens and folds it."""

    DEFAULT_CSS = """
    ThinkingBlock { height: auto; margin: 0 0 1 0; }
    ThinkingBlock > .thinking-summary { color: $text-muted; text-style: italic; padding: 0 1; }
    ThinkingBlock > PlainLines { color: $text-muted; padding: 0 1 0 3; max-height: 8; }
    ThinkingBlock.open > PlainLines { max-height: 1000; }
    ThinkingBlock.folded > PlainLines { display: none; }
    ThinkingBlock > TokenView { padding: 0 1 0 3; }
    ThinkingBlock.folded > TokenView { display: none; }
    """

    def __init__(self, branch: ReplyBranch, tokens: bool) -> None:
        super().__init__()
        self.branch = branch
        self.tokens = tokens
        self.set_class(branch.thought_for is not None, "folded")

    def compose(self) -> ComposeResult:
        yield OneLine("", classes="thinking-summary")
        if self.tokens:
            yield TokenView([i for i in self.branch.items if i.thinking])
        else:
            lines = PlainLines()
            lines.append(self.branch.thinking.lstrip("\n"))
            yield lines

    def on_mount(self) -> None:
        self.summarise()

    def summarise(self) -> None:
        b = self.branch
        n = b.thinking_tokens or sum(1 for i in b.items if i.thinking)
        if b.thought_for is None:
            text = f"Thinking… {n} tokens"
        else:
            text = f"Thought for {b.thought_for:.1f} s, {n} tokens"
        hint = "click or Ctrl+O: " + ("fold" if not self.has_class("folded") else "open")
        arrow = "▸" if self.has_class("folded") else "▾"
        self.query_one(".thinking-summary", OneLine).show(Text(f"{arrow} {text} · {hint}"))

    async def append(self, thinking: str, items: list[TokenItem]) -> None:
        for view in self.query(TokenView):
            view.extend([i for i in items if i.thinking])
        for lines in self.query(PlainLines):
            lines.append(thinking if lines.text else thinking.lstrip("\n"))  # no blank first line

    def finish(self) -> None:
        """The thinking ended: no more lines reserved under it."""
        for lines in self.query(PlainLines):
            lines.fit()
        for view in self.query(TokenView):
            view.fit()

    def fold(self, folded: bool | None = None) -> None:
        self.set_class(not self.has_class("folded") if folded is None else folded, "folded")
        self.set_class(not self.has_class("folded"), "open")
        self.summarise()

    def on_click(self, event: events.Click) -> None:
        if event.widget is not None and event.widget.has_class("thinking-summary"):
            self.fold()


class AssistantTurn(OneLayoutPass, Vertical):
    """A reply in the output pane. Shows the current branch, as text or as tokens; a line
    above it says which branch it is when there are several."""

    DEFAULT_CSS = """
    AssistantTurn { height: auto; }
    AssistantTurn > .branch-label { color: $text-muted; padding: 0 1; }
    """

    def __init__(self, mode: str, tokens: bool, branches: list[ReplyBranch] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        self.tokens = tokens
        self.branches = branches or [ReplyBranch()]
        self.current = len(self.branches) - 1
        self.body: Widget | None = None

    @property
    def branch(self) -> ReplyBranch:
        return self.branches[self.current]

    @property
    def text(self) -> str:
        return self.branch.text

    def compose(self) -> ComposeResult:
        yield OneLine("", classes="branch-label")
        self.body = self._body()
        yield self.body

    @property
    def thinking_block(self) -> ThinkingBlock | None:
        blocks = self.query(ThinkingBlock)
        return blocks.first() if blocks else None

    async def _show_thinking(self) -> None:
        """The thinking block above the body, if this branch has thinking and it is shown."""
        if self.thinking_block is None and (self.branch.thinking or any(i.thinking for i in self.branch.items)) \
                and self.app.settings.show_thinking:  # type: ignore[attr-defined]
            await self.mount(ThinkingBlock(self.branch, self.tokens), before=self.body)

    async def on_mount(self) -> None:
        self._label()
        await self._show_thinking()

    def _body(self) -> Widget:
        b = self.branch
        if self.tokens:
            return TokenView([i for i in b.items if not i.thinking])
        if self.mode == "chat":
            from .markdown import MarkdownReply  # Textual's Markdown: loaded with the first reply

            return MarkdownReply(b.text)
        return RawOutput(b.text, classes="raw")

    def _label(self) -> None:
        label = self.query_one(".branch-label", OneLine)
        label.display = len(self.branches) > 1
        if len(self.branches) > 1:
            b = self.branch
            where = "your edit, continued" if b.edited else (
                "the original reply" if b.at is None else f"from token {b.at}")
            label.show(Text(f"branch {self.current + 1} of {len(self.branches)} · {where} · Ctrl+B: the next"))

    async def rebuild(self) -> None:
        """Show the current branch again, in the current form (text or tokens)."""
        with self.app.batch_update():
            if self.body is not None:
                await self.body.remove()
            for block in self.query(ThinkingBlock):
                await block.remove()
            self.body = self._body()
            await self.mount(self.body)
            await self._show_thinking()
            self._label()

    async def set_tokens(self, on: bool) -> None:
        if on != self.tokens:
            self.tokens = on
            await self.rebuild()

    async def append(self, text: str, items: list[TokenItem], thinking: str = "", moved: str = "",
                     elapsed: float = 0.0) -> None:
        """More of the reply: answer `text`, `thinking` text, and its tokens. `moved`: answer
        text shown before that a stray closing tag showed to be thinking (it moves up)."""
        b = self.branch
        if moved:
            b.text = b.text[len(moved):]
            b.thinking = moved + b.thinking
            for i in b.items:
                i.thinking = True
            await self.rebuild()
        b.items.extend(items)
        b.thinking_tokens += sum(1 for i in items if i.thinking)
        if thinking:
            b.thinking += thinking
            if self.thinking_block is None:
                await self._show_thinking()
            elif self.thinking_block is not None:
                await self.thinking_block.append(thinking, items)
        elif self.tokens and self.thinking_block is not None:
            await self.thinking_block.append("", items)
        answer_items = [i for i in items if not i.thinking]
        if text and b.thinking and b.thought_for is None:  # the answer began: fold the thinking
            b.thought_for = elapsed
            if self.thinking_block is not None:
                self.thinking_block.finish()
                self.thinking_block.fold(True)
        b.text += text
        body = self.body
        if isinstance(body, TokenView):
            body.extend(answer_items)
        elif text and isinstance(body, Reply):
            await body.append(text)

    async def finish(self) -> None:
        if self.thinking_block is not None:
            self.thinking_block.finish()
        body = self.body
        if isinstance(body, TokenView):
            body.fit()
        elif isinstance(body, Reply):
            await body.finish()

    async def add_branch(self, at: int) -> ReplyBranch:
        """A new branch that keeps the current one's first `at` tokens; it becomes current."""
        kept = self.branch.items[:at]
        branch = ReplyBranch(items=list(kept), text="".join(i.text for i in kept), at=at)
        self.branches.append(branch)
        self.current = len(self.branches) - 1
        await self.rebuild()
        return branch

    async def add_regeneration(self) -> ReplyBranch:
        """A new branch made again from the start of the reply; it becomes current."""
        branch = await self.add_branch(0)
        branch.origin = "regenerated"
        return branch

    async def add_continuation(self) -> ReplyBranch:
        """A new branch that starts as the current one ends (the model goes on from there;
        the original, stopped where it was, stays as the branch before it)."""
        cur = self.branch
        branch = ReplyBranch(items=list(cur.items), text=cur.text, thinking=cur.thinking, origin="continued",
                             edited=cur.edited)
        self.branches.append(branch)
        self.current = len(self.branches) - 1
        await self.rebuild()
        return branch

    async def add_edit(self, text: str) -> ReplyBranch:
        """A new branch that starts with `text` (the user's edit of this reply: the model
        goes on from its end); it becomes current."""
        branch = ReplyBranch(text=text, edited=True)
        self.branches.append(branch)
        self.current = len(self.branches) - 1
        await self.rebuild()
        return branch

    async def cycle(self) -> ReplyBranch:
        self.current = (self.current + 1) % len(self.branches)
        await self.rebuild()
        return self.branch
