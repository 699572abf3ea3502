"""The handle a front end holds for one running generation.

The scheduler thread produces events into a bounded channel; the consumer reads them
with a plain `for` loop, `async for`, or `take()` (a batch at a time, which is what the
TUI wants). Backpressure: the scheduler only decodes a sequence while its channel has
room, so a slow consumer pauses its own generation instead of growing memory.

Whatever ends a generation early (Esc, Ctrl+C, a client gone, `break`, a WebSocket
cancel message) calls the same `cancel()`: it sets a flag that the scheduler checks
before every decode step (and, during prompt processing, from llama.cpp's abort callback).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

from .types import FinishReason, Stats, TokenEvent

if TYPE_CHECKING:
    from .types import Request

DEFAULT_CAPACITY = 32


class Generation:
    """Events of one request: iterate (sync or async), `take()` batches, `cancel()`."""

    def __init__(self, request: Request, prompt_tokens: list[int], seed: int,
                 wake: Callable[[], None], capacity: int = DEFAULT_CAPACITY) -> None:
        self.request = request
        self.prompt_tokens = prompt_tokens
        self.seed = seed
        self.capacity = capacity
        self.t_submit = time.perf_counter()
        self.stats: Stats | None = None
        self.cached_tokens = 0  # prompt tokens reused from the KV cache (set on admission)
        self.prompt_done = 0  # prompt tokens in the KV cache so far (reused + processed)
        self.restored_tokens = 0  # of the reused ones, restored from a saved conversation on disk
        self.notice: str | None = None  # what the user should know (a saved state that was not used)
        self.reasoning: Any = None  # a thinking model's (tags, starts inside), set by the scheduler
        self._wake = wake
        self._events: deque[TokenEvent] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._cancelled = False
        self._finished = threading.Event()
        self._consumed_final = False
        self._waiter: tuple[asyncio.AbstractEventLoop, asyncio.Future[None]] | None = None

    # -- state ------------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once cancel() was called (the generation may still be winding down)."""
        return self._cancelled

    @property
    def finished(self) -> bool:
        """True once the scheduler has produced the final event."""
        return self._finished.is_set()

    @property
    def finish_reason(self) -> FinishReason | None:
        return self.stats.finish_reason if self.stats else None

    def cancel(self) -> None:
        """Stop this generation within one decode step. Safe from any thread, idempotent."""
        if not self._cancelled and not self._finished.is_set():
            self._cancelled = True
            self._wake()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the final event has been produced; True if it was.

        This does not read events: with nobody reading, a generation pauses once its
        buffer is full (backpressure), so call it while another thread consumes, or after
        cancel()."""
        return self._finished.wait(timeout)

    # -- producer side (scheduler thread only) -----------------------------------
    @property
    def buffered(self) -> int:
        """Events produced and not yet read."""
        return len(self._events)

    def has_room(self) -> bool:
        return len(self._events) < self.capacity

    def push(self, event: TokenEvent) -> None:
        with self._cond:
            self._events.append(event)
            if event.finish_reason is not None:
                self.stats = event.stats
                self._finished.set()
            self._cond.notify_all()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            loop, fut = waiter
            try:
                loop.call_soon_threadsafe(_resolve, fut)
            except RuntimeError:  # the consumer's loop is closed; nobody is listening
                pass

    # -- consumer side -----------------------------------------------------------
    def _drain(self, limit: int | None) -> list[TokenEvent]:
        """Pop up to `limit` events (lock held by caller); wake the scheduler if it was
        holding this sequence back because the channel was full."""
        was_full = len(self._events) >= self.capacity
        if limit is None or limit >= len(self._events):
            out = list(self._events)
            self._events.clear()
        else:
            out = [self._events.popleft() for _ in range(limit)]
        if out and out[-1].finish_reason is not None:
            self._consumed_final = True
        if was_full and out:
            self._wake()
        return out

    def take(self, timeout: float | None = None, limit: int | None = None) -> list[TokenEvent]:
        """All events available now, waiting up to `timeout` for at least one.
        Returns [] on timeout or after the final event has been taken."""
        with self._cond:
            if not self._events and not self._consumed_final:
                self._cond.wait_for(lambda: bool(self._events), timeout)
            return self._drain(limit)

    def __iter__(self) -> Iterator[TokenEvent]:
        """Events one by one; leaving the loop early (break, exception, close) cancels."""
        try:
            while not self._consumed_final:
                yield from self.take(timeout=None)
        finally:
            if not self._consumed_final:
                self.cancel()

    async def atake(self) -> list[TokenEvent]:
        """Async `take()`: waits without blocking the event loop or holding a thread."""
        while True:
            with self._cond:
                if self._events or self._consumed_final:
                    return self._drain(None)
                loop = asyncio.get_running_loop()
                fut: asyncio.Future[None] = loop.create_future()
                self._waiter = (loop, fut)
            try:
                await fut
            finally:
                with self._cond:
                    if self._waiter is not None and self._waiter[1] is fut:
                        self._waiter = None

    async def aiter(self) -> AsyncIterator[TokenEvent]:
        """`async for event in gen.aiter()`; cancels if the consumer stops early."""
        try:
            while not self._consumed_final:
                for event in await self.atake():
                    yield event
        finally:
            if not self._consumed_final:
                self.cancel()

    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        return self.aiter()

    def text(self) -> str:
        """Consume the whole generation and return its text (the non-streamed result)."""
        return "".join(e.text for e in self)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def drain_together(gens: list[Generation], interval: float = 0.05,
                   on_events: Callable[[int, list[TokenEvent]], None] | None = None,
                   on_round: Callable[[], None] | None = None) -> None:
    """Read several generations at once, from one thread, until all have finished.

    Reading them one after another would not work: backpressure pauses every generation
    nobody is reading. Wakes every `interval` seconds (not per token), hands each
    generation's new events to `on_events(i, events)`, then calls `on_round()` once (so a
    UI can send all generations' news in one message).
    """
    done = [False] * len(gens)
    while not all(done):
        # wake when the first unfinished generation ends, or at the next interval
        next(g for g, d in zip(gens, done) if not d).wait(interval)
        for i, g in enumerate(gens):
            if done[i]:
                continue
            events = g.take(timeout=0)
            if events:
                if events[-1].done:
                    done[i] = True
                if on_events is not None:
                    on_events(i, events)
        if on_round is not None:
            on_round()
