"""Console output for `run`: one stream to stdout as it arrives, or several temperature
panes generated in one batch and printed one after another with their stats."""

from __future__ import annotations

import json
import random
import signal
import sys
from dataclasses import replace
from typing import Any, TextIO

from .engine.generation import Generation, drain_together
from .engine.types import FinishReason, InvalidParamsError, Request, TokenEvent

EXIT_CANCELLED = 130


def parse_temps(text: str) -> list[float]:
    """'0.1,0.7,1.2' -> [0.1, 0.7, 1.2]; 2 to 6 values, each >= 0."""
    try:
        temps = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InvalidParamsError(f"--temps {text!r}: expected numbers like 0.1,0.7,1.2") from None
    if not 2 <= len(temps) <= 6:
        raise InvalidParamsError(f"--temps {text!r}: give 2 to 6 temperatures")
    if any(t < 0 for t in temps):
        raise InvalidParamsError(f"--temps {text!r}: temperatures must be >= 0")
    return temps


def compare_requests(base: Request, temps: list[float]) -> list[Request]:
    """One request per temperature, all with one seed (a random one if the base has 0),
    so the panes differ by temperature only."""
    seed = base.params.seed or random.randrange(1, 2**32)
    return [replace(base, params=replace(base.params, temperature=t, seed=seed)) for t in temps]


class _SigintCancels:
    """While active, the first Ctrl+C cancels the given generations; a second one exits."""

    def __init__(self, gens: list[Generation]) -> None:
        self.gens = gens
        self.hit = False

    def __enter__(self) -> _SigintCancels:
        self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        if self.hit:
            raise KeyboardInterrupt
        self.hit = True
        for g in self.gens:
            g.cancel()

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._old)


def _print_stats(final: TokenEvent, err: TextIO, where: str | None = None) -> None:
    if final.stats is None:
        return
    print("--- Stats ---", file=err)
    if where:
        print(f"model:           {where}", file=err)
    for line in final.stats.summary_lines():
        print(line, file=err)


# --heat: a token's probability under the model -> a terminal colour (256-colour palette)
HEAT = [(0.9, None, "90% and up: plain"), (0.6, 114, "60-90% green"), (0.3, 221, "30-60% yellow"),
        (0.1, 208, "10-30% orange"), (0.0, 203, "under 10% red")]


def heat_legend() -> str:
    parts = [label if code is None else f"\x1b[38;5;{code}m{label}\x1b[0m" for _, code, label in HEAT]
    return "heat: each token coloured by its probability under the model: " + " · ".join(parts)


def heat(text: str, prob: float) -> str:
    """`text` in the colour of its probability (plain for the likely ones)."""
    for floor, code, _ in HEAT:
        if prob >= floor:
            return text if code is None else f"\x1b[38;5;{code}m{text}\x1b[0m"
    return text


def stream_to_stdout(gen: Generation, as_json: bool, show_stats: bool,
                     out: TextIO = sys.stdout, err: TextIO = sys.stderr, where: str | None = None,
                     colour: bool = False, show_thinking: bool = True, reply: list[str] | None = None) -> int:
    """Print pieces as they come (flushed per piece). The first Ctrl+C cancels; what was
    produced and its stats (after `where` the model runs) are still printed. `colour`:
    each piece in the colour of its token's probability (`--heat`, needs logprobs). A
    thinking model's thinking goes to stderr, dimmed on a terminal (`show_thinking=False`
    hides it), so stdout carries the answer only. `reply` collects the answer's text.
    Returns the exit code."""
    final = None
    if colour and not as_json:
        print(heat_legend(), file=err)
    dim = err.isatty()
    thought = False
    try:
        with _SigintCancels([gen]):
            for event in gen:
                if reply is not None and event.text:
                    reply.append(event.text)
                if as_json:
                    out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
                else:
                    if event.moved and show_thinking:
                        err.write("\n[the text above was the model's thinking]\n")
                    if event.thinking and show_thinking:
                        err.write(f"\x1b[2m{event.thinking}\x1b[0m" if dim else event.thinking)
                        err.flush()
                        thought = True
                    if event.text:
                        if thought:  # the answer starts on its own line after the thinking
                            err.write("\n")
                            err.flush()
                            thought = False
                        out.write(heat(event.text, event.insight.prob) if colour and event.insight else event.text)
                out.flush()
                if event.done:
                    final = event
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    if not as_json:
        out.write("\n")
        out.flush()
    if final is None:
        return 1
    cancelled = final.finish_reason is FinishReason.CANCELLED
    if cancelled and not as_json:
        print("[Generation cancelled]", file=err)
    if show_stats and not as_json:
        _print_stats(final, err, where)
    if final.stats is not None and final.stats.error:
        print(f"error: {final.stats.error}", file=err)
        return 1
    return EXIT_CANCELLED if cancelled else 0


def print_compare(gens: list[Generation], temps: list[float], as_json: bool, show_stats: bool,
                  out: TextIO = sys.stdout, err: TextIO = sys.stderr, *, models: list[str] | None = None,
                  tokens: list[list[int]] | None = None) -> int:
    """Generate all panes together (one batch per model), then print them one after
    another. `models`: each pane's model name, when they differ; `tokens` collects each
    pane's token ids (the arena's agreement pass reads them)."""
    texts = [""] * len(gens)
    finals: list[Any] = [None] * len(gens)
    ids: list[list[int]] = [[] for _ in gens]

    def collect(i: int, events: list[TokenEvent]) -> None:
        texts[i] += "".join(e.text for e in events)
        ids[i] += [e.token_id for e in events if not e.done and e.token_id >= 0]
        if events[-1].done:
            finals[i] = events[-1]

    try:
        with _SigintCancels(gens):
            drain_together(gens, on_events=collect)
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    if tokens is not None:
        tokens[:] = ids
    cancelled = failed = False
    for i, (gen, temp) in enumerate(zip(gens, temps)):
        final = finals[i]
        cancelled |= final.finish_reason is FinishReason.CANCELLED
        failed |= final.stats is not None and bool(final.stats.error)  # a pane that failed fails the run
        model = models[i] if models else None
        if as_json:
            row = {**final.to_dict(), "pane": i, "temperature": temp, "seed": gen.seed, "text": texts[i]}
            if model:
                row["model"] = model
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
            continue
        print(f"=== {model + ' · ' if model else ''}temperature {temp} · seed {gen.seed} ===", file=out)
        print(texts[i].strip("\n"), file=out)
        print(file=out)
        if show_stats:
            _print_stats(final, err)
            err.flush()
        out.flush()
    if cancelled and not as_json:
        print("[Generation cancelled]", file=err)
    return EXIT_CANCELLED if cancelled else 1 if failed else 0
