"""The one streaming path of both screens: read generations, batch their events into
frames, hand each frame to the screen in one piece. No Textual here, so it is tested on
its own (tests/test_stream.py).

Why frames: on a 2-core machine every UI wake-up preempts one of llama.cpp's two
compute threads, so the screens are told a few times a second what happened since the
last time (never once per token), whatever the token rate:
- `Frames` is pure bookkeeping: it collects each generation's events (`collect`) and
  says when a frame is due and what is in it (`take`);
- `pump` drives it from a worker thread: it reads every generation together (one thread,
  `drain_together`; reading them one after another would stall all but one, as nobody
  reads the others' channels), and calls `on_frame` with each frame, `on_progress` while
  the prompt is being processed.
The chat screen pumps one generation into one reply; the compare screen several into
its panes. Both post one message per frame, applied in one `batch_update()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..engine.generation import Generation, drain_together
from ..engine.types import Candidate, Stats, TokenEvent, TokenInsight

INSIGHT_TOP = 10  # alternatives recorded per token while the token view is on (the panel shows 10)


@dataclass
class TokenItem:
    """One token of a reply: the text it added (whole characters; may be empty while a
    character is split across tokens), its id, and why it was chosen (if recorded)."""

    text: str
    token_id: int
    insight: TokenInsight | None = None
    thinking: bool = False  # a token of a thinking model's thinking (its `text` is thinking text)

    @classmethod
    def of(cls, event: TokenEvent, insight: TokenInsight | None = None) -> TokenItem:
        """The item of a token event (its thinking text, if the token was thinking)."""
        thinking = event.channel == "thinking"
        return cls(event.thinking if thinking else event.text, event.token_id, insight or event.insight, thinking)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "id": self.token_id}
        if self.thinking:
            d["thinking"] = True
        if self.insight is not None:
            i = self.insight
            d.update(lp=i.logprob, sp=i.sampled_prob, h=i.entropy, kept=i.kept, forced=i.forced,
                     top=[[c.token_id, c.text, c.logprob, c.cut_by] for c in i.top],
                     stop=[[c.token_id, c.text, c.logprob] for c in i.sampled_top])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenItem:
        insight = None
        if "lp" in d:
            insight = TokenInsight(token_id=d["id"], piece=d["text"], logprob=d["lp"],
                                   top=[Candidate(t, s, lp, cut) for t, s, lp, cut in d["top"]],
                                   sampled_prob=d["sp"], sampled_top=[Candidate(t, s, lp) for t, s, lp in d["stop"]],
                                   entropy=d["h"], kept=d["kept"], forced=d.get("forced", False))
        return cls(d["text"], d["id"], insight, d.get("thinking", False))


def forced_insight(at: TokenInsight, alt: Candidate) -> TokenInsight:
    """What is known of a token put in place by a branch: the alternatives of the position
    it replaced, with `alt` as the choice."""
    sampled = {c.token_id: c.prob for c in at.sampled_top}
    return replace(at, token_id=alt.token_id, piece=alt.text, logprob=alt.logprob,
                   sampled_prob=sampled.get(alt.token_id, 0.0), forced=True)


@dataclass
class News:
    """What one generation produced since the last frame."""

    index: int  # which generation (the compare screen's pane)
    text: str = ""  # answer text
    thinking: str = ""  # a thinking model's thinking text
    moved: str = ""  # answer text shown before that turned out to be thinking (a stray closing tag)
    n_tokens: int = 0
    items: list[TokenItem] = field(default_factory=list)
    ttft: float | None = None  # seconds from submit to the first text, once known
    elapsed: float = 0.0  # seconds from submit to this frame
    done: bool = False
    stats: Stats | None = None
    error: str | None = None

    @property
    def empty(self) -> bool:
        return not (self.text or self.thinking or self.moved or self.n_tokens or self.done)


class Frames:
    """Events of N generations collected into frames: one frame at most every `interval`
    seconds, or at once when a generation finishes; none while a cancelled generation
    has yet to end (it does within a decode step, and then every cancel shows in the
    same frame). `forced`: what is known of a branch's forced first token, by generation
    (the engine sends that token bare)."""

    def __init__(self, t_submit: Sequence[float], interval: float,
                 forced: dict[int, TokenInsight] | None = None) -> None:
        self.interval = interval
        self._t_submit = list(t_submit)
        self._forced = forced or {}
        self._news: dict[int, News] = {}
        self._ttft: list[float | None] = [None] * len(t_submit)
        self._last = -float("inf")
        self.frames = 0

    def collect(self, index: int, events: list[TokenEvent], now: float) -> None:
        news = self._news.setdefault(index, News(index))
        for ev in events:
            if ev.text and self._ttft[index] is None:
                self._ttft[index] = now - self._t_submit[index]
            news.text += ev.text
            news.thinking += ev.thinking
            news.moved += ev.moved
            if ev.done:
                news.done, news.stats = True, ev.stats
                news.error = ev.stats.error if ev.stats else None
                continue
            news.n_tokens += 1
            forced = self._forced.get(index) if ev.index == 0 else None
            news.items.append(TokenItem.of(ev, forced))

    def started(self, index: int) -> bool:
        """Whether generation `index` has shown any text yet."""
        return self._ttft[index] is not None

    def take(self, now: float, holding: bool = False) -> list[News]:
        """The frame due now (each generation's news since the last one), or [] if none is
        due. `holding`: a cancelled generation has yet to end, so wait for it."""
        pending = [n for n in self._news.values() if not n.empty]
        if not pending or holding:
            return []
        if now - self._last < self.interval and not any(n.done for n in pending):
            return []
        for n in pending:
            n.ttft = self._ttft[n.index]
            n.elapsed = now - self._t_submit[n.index]
        self._news.clear()
        self._last = now
        self.frames += 1
        return sorted(pending, key=lambda n: n.index)

    def rest(self, now: float) -> list[News]:
        """Whatever is left at the very end."""
        return self.take(now + self.interval)


def pump(gens: Sequence[Generation], interval: float, on_frame: Callable[[list[News]], None], *,
         forced: dict[int, TokenInsight] | None = None,
         on_progress: Callable[[Generation], None] | None = None,
         stop: Callable[[], bool] | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
    """Read `gens` together until all have finished (from a worker thread), calling
    `on_frame` with each frame. `on_progress(gen)`: the first generation's prompt
    processing moved on, before any text. `stop()`: true once the worker was cancelled
    (every generation is then cancelled)."""
    frames = Frames([g.t_submit for g in gens], interval, forced)
    prompt_seen = [-1]

    def collect(i: int, events: list[TokenEvent]) -> None:
        frames.collect(i, events, clock())

    def round_() -> None:
        if stop is not None and stop():
            for g in gens:
                g.cancel()
        now = clock()
        frame = frames.take(now, holding=any(g.cancelled and not g.finished for g in gens))
        if frame:
            on_frame(frame)
            return
        first = gens[0]
        if on_progress is not None and not frames.started(0) and not first.finished \
                and first.prompt_done != prompt_seen[0]:
            prompt_seen[0] = first.prompt_done
            on_progress(first)

    drain_together(list(gens), interval=interval, on_events=collect, on_round=round_)
    last = frames.rest(clock())
    if last:
        on_frame(last)
