"""The live generation gauge: current tok/s, a sparkline of it, progress against
max_tokens, time to first token, elapsed time, prompt tokens (how many came from the KV
cache, and progress while a long prompt is processed) and context use.

It refreshes 5 times a second while decoding, and on a 2-core machine every millisecond
of that is taken from llama.cpp's threads. So the gauge has a fixed size (a refresh never
asks for a layout pass of the screen) and is one widget that draws its two lines itself
(line API): built as five widgets (three text lines, a sparkline and their row), it cost
~1 ms of UI-thread CPU per refresh in Textual's per-widget render pipeline, a fifth of
all the UI's work while streaming."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from itertools import islice

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from ...engine.types import Stats

WINDOW = 1.0  # seconds over which "current tok/s" is measured
BAR_WIDTH = 24
FLAT = [0.0, 0.0]  # a flat baseline (Textual's Sparkline draws a single value as full bars)


class OneLine(Widget):
    """One line of text of a fixed size; `show()` repaints it without a layout pass."""

    DEFAULT_CSS = "OneLine { height: 1; }"

    def __init__(self, text: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.text = Text(text)

    def render(self) -> Text:
        return self.text

    def show(self, text: Text) -> None:
        if text != self.text:
            self.text = text
            self.refresh()


SPARK_BARS = "▁▂▃▄▅▆▇█"


@lru_cache(maxsize=512)
def _bar_style(r: int, g: int, b: int) -> Style:
    return Style(color=Color.from_rgb(r, g, b))


def spark_segments(data: list[float], width: int, low: Color, high: Color, base: Style) -> list[Segment]:
    """Bars as Textual's one-line Sparkline draws them (its buckets, its maximum per
    bucket, its colour blend from `low` to `high`), with runs of one colour merged: built
    without its Fractions and a new Style per bar, at a fraction of the cost."""
    n = len(data)
    if width <= 0:
        return []
    if n < 2:
        return [Segment(("█" if n else "▁") * width, base + Style(color=high if n else low))]
    buckets = [data[n * b // width:n * (b + 1) // width] for b in range(width)]
    buckets = [b for b in buckets if b]
    lo, hi = min(data), max(data)
    extent = hi - lo or 1
    (r1, g1, b1), (r2, g2, b2) = low.get_truecolor(), high.get_truecolor()
    top = len(SPARK_BARS) - 1
    out: list[Segment] = []
    run, run_rgb = "", (-1, -1, -1)
    step, index = len(buckets) / width, 0.0
    for _ in range(width):
        ratio = (max(buckets[int(index)]) - lo) / extent
        index += step
        rgb = (int(r1 + (r2 - r1) * ratio), int(g1 + (g2 - g1) * ratio), int(b1 + (b2 - b1) * ratio))
        if rgb != run_rgb and run:
            out.append(Segment(run, base + _bar_style(*run_rgb)))
            run = ""
        run, run_rgb = run + SPARK_BARS[min(int(ratio * top), top)], rgb
    out.append(Segment(run, base + _bar_style(*run_rgb)))
    return out


def progress_text(done: int, total: int, color: str, done_color: str, empty_color: str) -> Text:
    """A bar like Textual's ProgressBar, then the percentage."""
    fraction = min(1.0, done / total) if total else 0.0
    filled = int(fraction * BAR_WIDTH)
    bar = Text("━" * filled, style=done_color if fraction >= 1.0 else color)
    bar.append("━" * (BAR_WIDTH - filled), style=empty_color)
    bar.append(f" {fraction:4.0%}")
    return bar


class Gauge(Widget):
    """Two lines under a rule: `rate | sparkline | progress`, then the details."""

    INTERVAL = 0.2  # seconds between refreshes while generating (5 a second)
    RATE_WIDTH = 28
    PROGRESS_WIDTH = 30
    COMPONENT_CLASSES = {"gauge--rate", "gauge--details", "gauge--spark-min", "gauge--spark-max"}
    DEFAULT_CSS = """
    Gauge { height: 3; border-top: solid $panel; padding: 0 1; }
    Gauge > .gauge--rate { text-style: bold; color: $accent; }
    Gauge > .gauge--details { color: $text-muted; }
    Gauge > .gauge--spark-max { color: $primary; }
    Gauge > .gauge--spark-min { color: $primary 30%; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._arrivals: deque[tuple[float, int]] = deque()
        self.tokens = 0
        self.max_tokens = 1
        self.n_ctx = 0
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.restored_tokens = 0  # of the cached ones, read back from a saved conversation
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
        # "threads 1/2 auto": asked of the engine at each tick (it may change them while
        # it runs), from the stats at the end; None for a backend that does not say
        self.threads_source: Callable[[], str] | None = None
        self.threads = ""
        self._last_tick = 0.0
        # what the two lines show, and those lines drawn at `_drawn_width` (None: draw again)
        self.rate_text = Text("idle")
        self.spark_data: list[float] = FLAT
        self.progress = Text("")
        self.details_text = Text("")
        self._strips: tuple[Strip, Strip] | None = None
        self._drawn_width = 0
        self._bars: list[Segment] = []
        self._bars_key: tuple[int, int] | None = None

    def render_line(self, y: int) -> Strip:
        width = self.content_region.width
        if self._strips is None or width != self._drawn_width:
            self._strips = self._draw(width)
            self._drawn_width = width
        return self._strips[y] if y < 2 else Strip.blank(width)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips, self._bars_key = None, None  # a new theme: new colours

    def _draw(self, width: int) -> tuple[Strip, Strip]:
        """Both lines as Textual drew the five widgets: the rate (bold, accent), a sparkline
        between one-cell margins, the progress bar; then the details (muted)."""
        console = self.app.console
        base = self.rich_style

        def cells(text: Text, cell_width: int, style: Style) -> list[Segment]:
            lines = text.wrap(console, cell_width) if text.cell_len > cell_width else [text.copy()]
            text = lines[0] if lines else Text()  # what fits, cut between words as Textual cut it
            text.truncate(cell_width)
            out = [Segment(seg.text, base + style + seg.style if seg.style else base + style)
                   for seg in text.render(console, end="")]
            return out + [Segment(" " * (cell_width - text.cell_len), base)]

        spark_width = max(0, width - self.RATE_WIDTH - self.PROGRESS_WIDTH - 2)
        if self._bars_key != (id(self.spark_data), spark_width):  # the bars change every other tick
            background = self.background_colors[1]
            self._bars = spark_segments(
                self.spark_data, spark_width,
                (background + self.get_component_styles("gauge--spark-min").color).rich_color,
                (background + self.get_component_styles("gauge--spark-max").color).rich_color, base)
            self._bars_key = (id(self.spark_data), spark_width)
        bars = self._bars
        margin = [Segment(" ", base)]
        top = [*cells(self.rate_text, min(width, self.RATE_WIDTH), self.get_component_rich_style("gauge--rate")),
               *margin, *bars, *margin, *cells(self.progress, self.PROGRESS_WIDTH, Style())]
        bottom = cells(self.details_text, width, self.get_component_rich_style("gauge--details"))
        return Strip(top).crop_extend(0, width, base), Strip(bottom, width)

    def reset(self) -> None:
        """Back to idle, nothing counted (a new conversation)."""
        n_ctx, max_tokens = self.n_ctx, self.max_tokens
        self.start(max_tokens, n_ctx)
        self.running, self.t_start = False, 0.0
        self.refresh_view()

    def start(self, max_tokens: int, n_ctx: int) -> None:
        self._arrivals.clear()
        self.tokens, self.max_tokens, self.n_ctx = 0, max(1, max_tokens), n_ctx
        self.prompt_tokens = self.cached_tokens = self.prompt_done = self.restored_tokens = 0
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
        if self.threads_source is not None:
            self.threads = self.threads_source()
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
            self.restored_tokens = stats.restored_tokens
            self.rate = stats.gen_tps
            if stats.n_threads:
                self.threads = f"threads {stats.n_threads}/{stats.cores}" + (" auto" if stats.threads_auto else "")
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
        self.rate_text = Text(label)
        if len(self.rates) % 2 == 0 or not self.running:  # the bars move at half the numbers' rate
            # from zero: Textual scales a sparkline from its minimum, which made noise of a
            # few percent fill the whole height
            self.spark_data = [0.0, *self.rates[-119:]] if self.rates else FLAT
        theme = self.app.current_theme
        self.progress = progress_text(self.tokens, self.max_tokens, theme.primary, theme.success or theme.primary,
                                      theme.panel or "grey30")
        now = time.perf_counter()
        first = stats.ttft if stats is not None and stats.ttft is not None else self.ttft
        ttft = "-" if first is None else f"{first * 1000:.0f} ms"
        elapsed = (stats.total_time if stats else (now - self.t_start if self.t_start else 0.0))
        # each figure in full and in fewer letters (80 columns): the longest line that fits wins
        if self.restored_tokens:
            prompt = (f"prompt {self.prompt_tokens} tok: {self.restored_tokens} restored from disk",
                      f"prompt {self.prompt_tokens} ({self.restored_tokens} restored)")
        elif self.cached_tokens:
            prompt = (f"prompt {self.prompt_tokens} tok ({self.cached_tokens} of {self.prompt_tokens} reused)",
                      f"prompt {self.prompt_tokens} ({self.cached_tokens} reused)")
        else:
            prompt = (f"prompt {self.prompt_tokens} tok", f"prompt {self.prompt_tokens}")
        parts = [(f"tokens {self.tokens}/{self.max_tokens}", f"{self.tokens}/{self.max_tokens} tok"),
                 (f"first token {ttft}", f"1st {ttft.replace(' ', '')}"),
                 (f"elapsed {elapsed:.1f}s", f"{elapsed:.1f}s"), prompt]
        if self.thinking_tokens:  # a thinking model: the two parts, and the first word of the answer
            first_word = "-" if self.first_answer is None else f"{self.first_answer:.1f}s"
            answer = self.tokens - self.thinking_tokens
            parts[1:2] = [(f"thinking {self.thinking_tokens} · answer {answer}",
                           f"think {self.thinking_tokens}/ans {answer}"),
                          (f"first word {first_word}", f"1st word {first_word}")]
        if self.n_ctx:
            used = self.prompt_tokens + self.tokens
            parts.append((f"context {used}/{self.n_ctx}", f"ctx {used}/{self.n_ctx}"))
        if self.threads and (self.running or self.finish):
            parts.append((self.threads, self.threads.replace("threads ", "thr ")))
        room = max(20, self.size.width - 2)
        long, short = [p[0] for p in parts], [p[1] for p in parts]
        lines = ["  ·  ".join(long), " · ".join(long), "  ".join(short),
                 "  ".join(short).replace(" restored)", " disk)")]
        full = next((line for line in lines if len(line) <= room), lines[-1])
        self.details_text = Text(full)
        self._strips = None
        self.refresh()
