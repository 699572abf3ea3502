"""The live generation gauge: current tok/s, a sparkline of it, progress against
max_tokens, time to first token, elapsed time, prompt tokens (how many came from the KV
cache, and progress while a long prompt is processed) and context use.

Every part has a fixed size, so a refresh repaints the gauge only: no part calls
`Static.update` or `ProgressBar.update`, which would ask for a layout pass of the whole
screen 5 times a second (CPU taken from decoding on a 2-core machine)."""

from __future__ import annotations

import time
from collections import deque
from itertools import islice

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Sparkline

from ...engine.types import Stats

WINDOW = 1.0  # seconds over which "current tok/s" is measured
BAR_WIDTH = 24
FLAT = [0.0, 0.0]  # a flat baseline (Textual's Sparkline draws a single value as full bars)


class _Line(Widget):
    """One line of text of a fixed size; `show()` repaints it without a layout pass."""

    DEFAULT_CSS = "_Line { height: 1; }"

    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.text = Text(text)

    def render(self) -> Text:
        return self.text

    def show(self, text: Text) -> None:
        if text != self.text:
            self.text = text
            self.refresh()


def progress_text(done: int, total: int, color: str, done_color: str, empty_color: str) -> Text:
    """A bar like Textual's ProgressBar, then the percentage."""
    fraction = min(1.0, done / total) if total else 0.0
    filled = int(fraction * BAR_WIDTH)
    bar = Text("━" * filled, style=done_color if fraction >= 1.0 else color)
    bar.append("━" * (BAR_WIDTH - filled), style=empty_color)
    bar.append(f" {fraction:4.0%}")
    return bar


class Gauge(Widget):
    INTERVAL = 0.2  # seconds between refreshes while generating (5 a second)
    DEFAULT_CSS = """
    Gauge { height: 3; border-top: solid $panel; padding: 0 1; }
    Gauge Horizontal { height: 1; }
    Gauge #rate { width: 28; text-style: bold; color: $accent; }
    Gauge Sparkline { width: 1fr; height: 1; margin: 0 1; }
    Gauge #progress { width: 30; }
    Gauge #details { color: $text-muted; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._arrivals: deque[tuple[float, int]] = deque()
        self.tokens = 0
        self.max_tokens = 1
        self.n_ctx = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.prompt_done = 0  # prompt tokens processed so far (while the prompt is processed)
        self.prompt_rate = 0.0
        self.thinking_tokens = 0  # a thinking model's thinking tokens so far
        self.first_answer: float | None = None  # seconds to the first word of the answer
        self.t_start = 0.0
        self.t_first: float | None = None
        self.ttft: float | None = None
        self.rate = 0.0
        self.rates: list[float] = []
        self.finish: str | None = None
        self.running = False
        self._last_tick = 0.0

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield _Line("idle", id="rate")
            yield Sparkline(FLAT, id="spark")
            yield _Line("", id="progress")
        yield _Line("", id="details")

    def start(self, max_tokens: int, n_ctx: int) -> None:
        self._arrivals.clear()
        self.tokens, self.max_tokens, self.n_ctx = 0, max(1, max_tokens), n_ctx
        self.prompt_tokens = self.cached_tokens = self.prompt_done = 0
        self.prompt_rate = 0.0
        self.thinking_tokens, self.first_answer = 0, None
        self.t_start, self.t_first, self.ttft = time.perf_counter(), None, None
        self.rate, self.rates, self.finish, self.running = 0.0, [], None, True
        self.refresh_view()

    def add_tokens(self, n: int, ttft: float | None = None) -> None:
        """`ttft` is the engine-side time to first token (the UI may see it later)."""
        now = time.perf_counter()
        if self.t_first is None and n:
            self.t_first = now
            self.ttft = ttft
        self.tokens += n
        self._arrivals.append((now, n))

    def add_channels(self, thinking: int, first_answer: float | None, moved: bool = False) -> None:
        """A thinking model: `thinking` of the new tokens were thinking; `first_answer` is the
        time to the answer's first word once it came (`moved`: all so far was thinking)."""
        if moved:
            self.thinking_tokens, self.first_answer = self.tokens, None
        else:
            self.thinking_tokens += thinking
        if self.first_answer is None and first_answer is not None:
            self.first_answer = first_answer

    def prompt_progress(self, done: int, total: int, cached: int, rate: float) -> None:
        """While the prompt is processed: `done` of `total` tokens, `cached` of them reused
        from the KV cache, at `rate` tok/s."""
        self.prompt_done, self.prompt_tokens, self.cached_tokens, self.prompt_rate = done, total, cached, rate
        self.refresh_view()

    def due(self, interval: float = INTERVAL) -> bool:
        """True when the last refresh is at least `interval` seconds old."""
        return time.perf_counter() - self._last_tick >= interval * 0.9

    def tick(self) -> None:
        """Called a few times a second while generating: recompute the current rate.

        Tokens arrive in batches, so the rate is measured between batch arrivals: the
        tokens that arrived after the oldest arrival of the last WINDOW seconds, over the
        time from that arrival to the newest. Counting whole arrivals inside a fixed window
        instead made the figure jump by a batch's worth (±20%), and counting the first
        batch, decoded before it arrived, overstated the start."""
        now = time.perf_counter()
        self._last_tick = now
        arrivals = self._arrivals
        while len(arrivals) > 2 and arrivals[0][0] < now - WINDOW:
            arrivals.popleft()
        if self.t_first is not None:
            if now - arrivals[-1][0] > WINDOW:
                self.rate = 0.0  # nothing for a while: stalled (or paused by backpressure)
            elif len(arrivals) >= 2 and arrivals[-1][0] - arrivals[0][0] > 0.05:
                delivered = sum(n for _, n in islice(arrivals, 1, None))
                self.rate = delivered / (arrivals[-1][0] - arrivals[0][0])
            self.rates.append(self.rate)
        self.refresh_view()

    def done(self, stats: Stats | None, finish: str) -> None:
        self.running = False
        self.finish = finish
        if stats is not None:
            self.tokens = stats.generated_tokens
            self.prompt_tokens = stats.prompt_tokens
            self.cached_tokens = stats.cached_tokens
            self.rate = stats.gen_tps
            if stats.thinking_tokens:
                self.thinking_tokens, self.first_answer = stats.thinking_tokens, stats.ttft_answer
        self.refresh_view(stats)

    def refresh_view(self, stats: Stats | None = None) -> None:
        prefilling = self.running and self.t_first is None and self.prompt_tokens > 0
        if prefilling:
            label = f"prompt {self.prompt_done}/{self.prompt_tokens}"
            if self.prompt_rate:
                label += f" · {self.prompt_rate:.0f} tok/s"
        else:
            label = f"{self.rate:6.1f} tok/s" if (self.running or self.finish) else "idle"
        if self.finish:
            label += f" · {self.finish}"
        self.query_one("#rate", _Line).show(Text(label))
        if len(self.rates) % 2 == 0 or not self.running:  # half the numbers' rate: it costs 4 _Lines
            # from zero: Textual scales a sparkline from its minimum, which made noise of a
            # few percent fill the whole height
            self.query_one(Sparkline).data = [0.0, *self.rates[-119:]] if self.rates else FLAT
        theme = self.app.current_theme
        self.query_one("#progress", _Line).show(progress_text(
            self.tokens, self.max_tokens, theme.primary, theme.success or theme.primary,
            theme.panel or "grey30"))
        now = time.perf_counter()
        first = stats.ttft if stats is not None and stats.ttft is not None else self.ttft
        ttft = "-" if first is None else f"{first * 1000:.0f} ms"
        elapsed = (stats.total_time if stats else (now - self.t_start if self.t_start else 0.0))
        prompt = f"prompt {self.prompt_tokens} tok"
        if self.cached_tokens:
            prompt += f" ({self.cached_tokens} of {self.prompt_tokens} reused)"
        parts = [f"tokens {self.tokens}/{self.max_tokens}", f"first token {ttft}",
                 f"elapsed {elapsed:.1f}s", prompt]
        if self.thinking_tokens:  # a thinking model: the two parts, and the first word of the answer
            first_word = "-" if self.first_answer is None else f"{self.first_answer:.1f}s"
            parts[1:2] = [f"thinking {self.thinking_tokens} · answer {self.tokens - self.thinking_tokens}",
                          f"first word {first_word}"]
        if self.n_ctx:
            parts.append(f"context {self.prompt_tokens + self.tokens}/{self.n_ctx}")
        self.query_one("#details", _Line).show(Text("  ·  ".join(parts)))
