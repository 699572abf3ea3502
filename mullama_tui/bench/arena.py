"""`bench --arena`: two different local models side by side (the bundled model and a Q8_0
of it made here with llama.cpp's quantizer), over a fixed number of tokens each:

- both generating at once, as the arena runs them (each engine on `threads = "auto"`:
  their tuners see the other team and share the cores out), against the two run one
  after another: the target is at most 1.1x of the sum, i.e. nothing lost to two OpenMP
  teams fighting over the cores;
- the agreement pass (the second model reading the first's tokens, engine/agreement.py):
  its cost per token against decoding a token.

The runs of one repetition come in a rotated order, and the ratio is judged per
repetition (a VM's speed drifts within minutes).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ..engine.agreement import agreement
from ..engine.generation import Generation, drain_together
from ..engine.llama import quantize
from ..engine.local import LocalEngine
from ..engine.types import Request, SamplerParams
from .common import BENCH_PROMPT, Progress, ok, quiet

TARGET = 1.1


def _request(n_tokens: int) -> Request:
    return Request(prompt=BENCH_PROMPT, mode="raw", max_tokens=n_tokens, ignore_eos=True,
                   params=SamplerParams(temperature=0.8, seed=42))


def _run(engines: list[LocalEngine], n_tokens: int) -> tuple[float, list[list[int]]]:
    """All of `engines` generating at once: wall seconds from submit to the last token, and
    each one's token ids."""
    for e in engines:
        e.clear_cache()
    t0 = time.perf_counter()
    gens: list[Generation] = [e.submit(_request(n_tokens)) for e in engines]
    ids: list[list[int]] = [[] for _ in gens]

    def collect(i: int, events: list[Any]) -> None:
        ids[i] += [ev.token_id for ev in events if not ev.done]

    drain_together(gens, interval=0.02, on_events=collect)
    return time.perf_counter() - t0, ids


def bench_arena(path: Path, *, n_tokens: int = 128, reps: int = 3, progress: Progress = quiet) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="mullama-arena-") as tmp:
        progress("quantizing a Q8_0 of the model (llama.cpp's quantizer)")
        second = quantize(path, Path(tmp) / "second-Q8_0.gguf", "Q8_0")
        a = LocalEngine(path, n_ctx=1024, n_parallel=1)
        b = LocalEngine(second, n_ctx=1024, n_parallel=1)
        try:
            for e in (a, b):  # warm-up: the first decode allocates
                _run([e], 8)
            rows: dict[str, list[float]] = {"a": [], "b": [], "together": []}
            ratios: list[float] = []
            tokens: list[int] = []
            for rep in range(reps):
                for kind in (["sequential", "together"] if rep % 2 == 0 else ["together", "sequential"]):
                    progress(f"rep {rep + 1}/{reps}: {kind}")
                    if kind == "sequential":
                        ta, ids = _run([a], n_tokens)
                        tb, _ = _run([b], n_tokens)
                        rows["a"].append(ta)
                        rows["b"].append(tb)
                        tokens = ids[0]
                    else:
                        rows["together"].append(_run([a, b], n_tokens)[0])
                ratios.append(rows["together"][-1] / (rows["a"][-1] + rows["b"][-1]))
            chose = [a.thread_choice().label, b.thread_choice().label]
            progress("agreement pass")
            prompt = a.prompt_tokens(_request(n_tokens))
            t0 = time.perf_counter()
            found = agreement(a.model, b.model, prompt, tokens)
            agree_s = time.perf_counter() - t0
        finally:
            a.close()
            b.close()
    per_token_decode = (statistics.median(rows["a"]) + statistics.median(rows["b"])) / (2 * n_tokens)
    per_token_agree = agree_s / max(1, len(tokens))
    return {"benchmark": "arena", "model": str(path), "second": "Q8_0 of it", "n_tokens": n_tokens, "reps": reps,
            "seconds": {k: [round(x, 3) for x in v] for k, v in rows.items()}, "threads_after": chose,
            "together_of_sum": [round(r, 3) for r in ratios], "ratio": round(statistics.median(ratios), 3),
            "target": TARGET, "prompt_tokens": len(prompt),
            "agreement": {"seconds": round(agree_s, 3), "per_token_ms": round(per_token_agree * 1000, 2),
                          "of_decode": round(per_token_agree / per_token_decode, 3),
                          "summary": found.summary("the model", "its Q8_0")}}


def format_arena_report(r: dict[str, Any]) -> str:
    s = r["seconds"]
    tps = {k: [round(r["n_tokens"] * (2 if k == "together" else 1) / x, 1) for x in v] for k, v in s.items()}
    return "\n".join([
        f"model: {r['model']} and a {r['second']}; {r['n_tokens']} tokens each (end-of-text cannot stop a run); "
        f"{r['reps']} repetitions, order alternated; threads auto",
        f"one after another: model {s['a']} s + Q8_0 {s['b']} s  ({tps['a']} and {tps['b']} tok/s)",
        f"side by side, both at once: {s['together']} s  ({tps['together']} tok/s together); the engines ended on "
        f"{', '.join(r['threads_after'])}",
        f"side by side / one after another, per repetition: {r['together_of_sum']} -> median {r['ratio']}x "
        f"(target <= {r['target']}x: {ok(r['ratio'] <= r['target'])})",
        f"agreement pass (both models read the {r['prompt_tokens']}-token prompt and the {r['n_tokens']} tokens, one "
        f"batch each): {r['agreement']['seconds']} s, {r['agreement']['per_token_ms']} ms a token = "
        f"{r['agreement']['of_decode']}x of decoding one ({r['agreement']['summary']})"])
