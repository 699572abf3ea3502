"""Turns a stream of token byte pieces into safe text pieces, in two channels.

Three jobs, all incremental and pure Python (unit-testable without a model):
- UTF-8: a character split across tokens is held until its last byte arrives, so a
  piece never contains U+FFFD or half a character;
- reasoning: for models that think before they answer, the text between the model's
  tags (`<think>`/`</think>`, or Magistral's `[THINK]`/`[/THINK]`) goes to a thinking
  channel and the rest to the answer; tags split across tokens are held like stop
  strings, and never reach either channel (see `ReasoningSplitter`);
- stop strings (on the answer only): text that could still become a stop string is
  held back; once a stop string completes, the text before it is released and the rest
  is never emitted.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class ReasoningTags:
    """How a model marks its thinking."""

    open: str
    close: str


THINK_TAGS = ReasoningTags("<think>", "</think>")  # Qwen3, DeepSeek-R1, SmolLM3, Phi-4-reasoning
MAGISTRAL_TAGS = ReasoningTags("[THINK]", "[/THINK]")


def _held_prefix(text: str, tag: str) -> int:
    """The length of the longest tail of `text` that is a proper prefix of `tag` (held back:
    the next piece may complete the tag)."""
    for n in range(min(len(text), len(tag) - 1), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


class Split(NamedTuple):
    """What one push released: answer text, thinking text, and answer text released
    earlier that a stray closing tag showed to have been thinking (`moved`)."""

    answer: str = ""
    thinking: str = ""
    moved: str = ""


class ReasoningSplitter:
    """Text in, thinking and answer out.

    - At the start (leading whitespace aside), an opening tag begins the thinking; any
      other text begins the answer. `inside=True`: the prompt opened the block (a chat
      template that starts the assistant turn with `<think>`), so the text starts inside.
    - In the thinking, the closing tag ends it; whitespace right after it is dropped.
    - A stray closing tag in the answer, with no opening tag before it, means everything
      before it was thinking: that text is handed back as `moved`.
    - A tag split across pieces is held until it completes or cannot; text that only
      looks like a tag (`<thinking>`, `< think>`) is released as text.
    """

    def __init__(self, tags: ReasoningTags, inside: bool = False) -> None:
        self.tags = tags
        self.state = "thinking" if inside else "start"
        self._held = ""
        self._opened = inside  # an opening tag was seen (or implied by the prompt)
        self._answer_so_far: list[str] = []  # answer text before any tag (a stray close moves it)
        self.closed = False  # the thinking has ended

    @property
    def thinking(self) -> bool:
        return self.state in ("opened", "thinking")

    @property
    def holding_open_tag(self) -> bool:
        """At the start, part of an opening tag is held (not just leading whitespace)."""
        return self.state == "start" and bool(self._held.strip())

    def feed(self, text: str) -> Split:
        buf, self._held = self._held + text, ""
        answer: list[str] = []
        thinking: list[str] = []
        moved = ""
        tags = self.tags
        while buf:
            if self.state == "start":
                stripped = buf.lstrip()
                if not stripped:
                    self._held = buf
                    break
                if stripped.startswith(tags.open):
                    self.state, self._opened = "opened", True
                    buf = stripped[len(tags.open):]
                    continue
                if tags.open.startswith(stripped):
                    self._held = buf
                    break
                self.state = "answer"
                continue
            if self.state == "opened":  # the newline right after an opening tag is not thinking
                stripped = buf.lstrip("\n")
                if not stripped:
                    break
                self.state, buf = "thinking", stripped
                continue
            if self.state == "thinking":
                at = buf.find(tags.close)
                if at == -1:
                    keep = _held_prefix(buf, tags.close)
                    thinking.append(buf[:len(buf) - keep])
                    self._held = buf[len(buf) - keep:]
                    break
                thinking.append(buf[:at])
                self.state, self.closed = "after", True
                buf = buf[at + len(tags.close):]
                continue
            if self.state == "after":  # whitespace between the thinking and the answer
                stripped = buf.lstrip()
                if not stripped:
                    break
                self.state, buf = "answer", stripped
                continue
            # the answer
            if not self._opened and not self.closed:
                at = buf.find(tags.close)
                if at != -1:  # a stray closing tag: all so far was thinking
                    moved = "".join(self._answer_so_far) + "".join(answer)
                    thinking.append(buf[:at])
                    answer, self._answer_so_far = [], []
                    self.state, self.closed = "after", True
                    buf = buf[at + len(tags.close):]
                    continue
                keep = max(_held_prefix(buf, tags.close), _held_prefix(buf, tags.open))
            else:
                keep = _held_prefix(buf, tags.open)
            at = buf.find(tags.open)
            if at != -1:  # thinking again (rare: a second block)
                answer.append(buf[:at])
                self.state, self._opened = "opened", True
                buf = buf[at + len(tags.open):]
                continue
            answer.append(buf[:len(buf) - keep])
            self._held = buf[len(buf) - keep:]
            break
        out = "".join(answer)
        if out and not self._opened and not self.closed:
            self._answer_so_far.append(out)
        return Split(out, "".join(thinking), moved)

    def flush(self) -> Split:
        """The end: what is held goes out in the channel it was in (a half tag is text)."""
        held, self._held = self._held, ""
        if not held:
            return Split()
        if self.state in ("opened", "thinking"):
            return Split(thinking=held.lstrip("\n") if self.state == "opened" else held)
        return Split(answer=held.lstrip() if self.state in ("start", "after") else held)


class TextAssembler:
    """Feed token bytes with `push`; get back text that is safe to show now."""

    __slots__ = ("_decoder", "_stops", "_max_stop", "_held", "stopped", "reasoning")

    def __init__(self, stop: list[str] | tuple[str, ...] = (), reasoning: ReasoningSplitter | None = None) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = tuple(s for s in stop if s)
        self._max_stop = max((len(s) for s in self._stops), default=0)
        self._held = ""  # decoded text not yet released because it may start a stop string
        self.stopped = False
        self.reasoning = reasoning

    def push(self, piece: bytes) -> Split:
        """Add one token's bytes; return what can be emitted now, by channel."""
        text = self._decoder.decode(piece)
        if self.reasoning is None:
            return Split(self._stop(text))
        split = self.reasoning.feed(text) if text else Split()
        return Split(self._stop(split.answer), split.thinking, split.moved)

    def _stop(self, text: str) -> str:
        """The answer text that can go out now, given the stop strings."""
        if not self._stops:
            return text
        if self.stopped or not text:
            return ""
        buf = self._held + text
        # A complete stop string: release what precedes the earliest one, drop the rest.
        cut = -1
        for s in self._stops:
            i = buf.find(s)
            if i != -1 and (cut == -1 or i < cut):
                cut = i
        if cut != -1:
            self.stopped = True
            self._held = ""
            return buf[:cut]
        # Hold back the longest tail that is a prefix of some stop string.
        keep = 0
        for n in range(min(len(buf), self._max_stop - 1), 0, -1):
            tail = buf[-n:]
            if any(s.startswith(tail) for s in self._stops):
                keep = n
                break
        if keep:
            self._held = buf[-keep:]
            return buf[:-keep]
        self._held = ""
        return buf

    def flush(self) -> Split:
        """At the end of a generation: release everything still held (an incomplete
        trailing character becomes U+FFFD, as any decoder would show it)."""
        tail = self._decoder.decode(b"", final=True)
        thinking = ""
        if self.reasoning is not None:
            split = self.reasoning.feed(tail) if tail else Split()
            rest = self.reasoning.flush()
            tail, thinking = split.answer + rest.answer, split.thinking + rest.thinking
        if self.stopped:
            return Split(thinking=thinking)
        if self._stops and tail:
            released = self._stop(tail)  # the tail may still complete a stop string
            out = released if self.stopped else released + self._held
        else:
            out = self._held + tail
        self._held = ""
        return Split(out, thinking)
