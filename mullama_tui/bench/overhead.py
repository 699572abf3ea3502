"""`mullama-tui bench --overhead`: the engine's host time per decode step, and per sequence
per step, split into sampling, text assembly and bookkeeping, for 1, 4 and 8 sequences,
with sampling on the host and inside llama.cpp's graph (backend sampling), side by side.

Host time is what the scheduler thread spends outside `llama_decode`. Where decoding is
fast (a GPU), it is what separates the engine from llama.cpp's own tools, so it must not
grow with the vocabulary or the number of sequences. Measured on the given model and on a
random-weight model with Llama 3's 128,256-token vocabulary and tiny layers (made in a
temporary folder), which shows the vocabulary's cost without a big model or a GPU. The
decode time is shown too: on a CPU, sampling in the graph is paid by the compute threads.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..engine.local import LocalEngine
from ..engine.types import Request, SamplerParams
from ..models.tiny import LLAMA3_VOCAB, make_random_gguf
from .common import Progress, ok, quiet

SEQUENCES = (1, 4, 8)
PROMPT = "The lighthouse keeper climbed the stairs at dusk and"


def _measure(engine: LocalEngine, n_seq: int, n_tokens: int, params: SamplerParams) -> dict[str, float]:
    """Run `n_seq` sequences of `n_tokens` together; the scheduler's counters over them."""
    from ..engine.generation import drain_together

    engine.clear_cache()
    before = replace(engine.scheduler.times)
    gens = [engine.submit(Request(prompt=f"{PROMPT} ({i})", mode="raw", max_tokens=n_tokens, ignore_eos=True,
                                  params=replace(params, seed=100 + i))) for i in range(n_seq)]
    drain_together(gens, interval=0.02)
    after = engine.scheduler.times
    steps = after.steps - before.steps
    sampled = after.sampled - before.sampled
    host = after.host - before.host
    ms = 1000.0
    return {"sequences": n_seq, "steps": steps, "tokens": sampled,
            "decode_ms_per_step": round((after.decode - before.decode) * ms / steps, 3),
            "total_ms_per_step": round((after.total - before.total) * ms / steps, 3),
            "host_ms_per_step": round(host * ms / steps, 3),
            "host_ms_per_seq_step": round(host * ms / sampled, 4),
            "sample_ms_per_seq_step": round((after.sample - before.sample) * ms / sampled, 4),
            "text_ms_per_seq_step": round((after.text - before.text) * ms / sampled, 4),
            "bookkeeping_ms_per_seq_step": round((after.bookkeeping - before.bookkeeping) * ms / sampled, 4)}


def _model_rows(path: Path, n_tokens: int, n_threads: int, n_gpu_layers: int | None, sampling: str,
                progress: Progress) -> dict[str, Any]:
    params = SamplerParams(temperature=0.8)  # the default chain: penalties, top-k, top-p, min-p, temperature
    with LocalEngine(path, n_ctx=1024, n_parallel=max(SEQUENCES), n_batch=1024, n_threads=n_threads or None,
                     n_gpu_layers=n_gpu_layers, sampling=sampling) as engine:
        _measure(engine, 1, 8, params)  # warm-up: compute buffers, piece cache
        rows = []
        for n in SEQUENCES:
            progress(f"{engine.model.info.name}, {sampling} sampling: {n} sequence{'s' if n > 1 else ''} "
                     f"x {n_tokens} tokens")
            rows.append(_measure(engine, n, n_tokens, params))
        return {"model": str(path), "name": engine.model.info.name, "n_vocab": engine.model.n_vocab,
                "placement": engine.model.placement.summary, "sampling": engine.scheduler.sampling_mode,
                "rows": rows}


def _auto_sampling(path: Path, n_gpu_layers: int | None) -> str:
    """What the engine picks by itself for this model here (see `Scheduler`)."""
    from ..engine.llama import LlamaModel

    model = LlamaModel(path, n_gpu_layers=n_gpu_layers)
    try:
        p = model.placement
        return "backend" if p.gpu_layers >= p.n_layers > 0 else "host"
    finally:
        model.close()


def bench_overhead(path: Path, *, n_tokens: int = 128, n_threads: int = 0, n_gpu_layers: int | None = None,
                   big_vocab: bool = True, progress: Progress = quiet) -> dict[str, Any]:
    def both(model_path: Path) -> list[dict[str, Any]]:
        return [_model_rows(model_path, n_tokens, n_threads, n_gpu_layers, mode, progress)
                for mode in ("host", "backend")]

    auto = _auto_sampling(path, n_gpu_layers)
    models = both(path)
    if big_vocab:
        with tempfile.TemporaryDirectory(prefix="mullama-overhead-") as tmp:
            progress(f"making a random-weight model with a {LLAMA3_VOCAB:,}-token vocabulary")
            models += both(make_random_gguf(Path(tmp) / "random-128k-vocab.gguf"))
    for m in models:
        rows = {r["sequences"]: r for r in m["rows"]}
        m["growth_8_vs_1"] = round(rows[8]["host_ms_per_step"] / rows[1]["host_ms_per_step"], 2) \
            if rows[1]["host_ms_per_step"] else 0.0

    def worst(mode: str) -> float | None:
        big = [m for m in models if m["n_vocab"] >= LLAMA3_VOCAB and m["sampling"] == mode]
        return max(r["host_ms_per_seq_step"] for r in big[0]["rows"]) if big else None

    return {"benchmark": "overhead", "n_tokens": n_tokens, "threads": n_threads or os.cpu_count(),
            "auto_sampling": auto, "models": models, "target_seq_step_ms_128k": 0.15,
            "target_growth_8_vs_1": 3.0,
            "worst_seq_step_ms_128k": {"host": worst("host"), "backend": worst("backend")}}


def format_overhead_report(r: dict[str, Any]) -> str:
    lines = [f"host time = the scheduler thread's time outside llama_decode; {r['n_tokens']} tokens per "
             f"sequence, {r['threads']} threads"]
    for m in r["models"]:
        lines.append(f"\n{m['name']} ({m['n_vocab']:,}-token vocabulary, {m['placement']}, "
                     f"sampling: {m['sampling']})")
        lines.append(f"{'seqs':>5} {'steps':>6} {'total ms/step':>14} {'decode ms/step':>15} {'host ms/step':>13} "
                     f"{'host ms/seq/step':>17} {'sampling':>9} {'text':>7} {'bookkeeping':>12}")
        for row in m["rows"]:
            lines.append(f"{row['sequences']:>5} {row['steps']:>6} {row['total_ms_per_step']:>14} "
                         f"{row['decode_ms_per_step']:>15} "
                         f"{row['host_ms_per_step']:>13} {row['host_ms_per_seq_step']:>17} "
                         f"{row['sample_ms_per_seq_step']:>9} {row['text_ms_per_seq_step']:>7} "
                         f"{row['bookkeeping_ms_per_seq_step']:>12}")
        lines.append(f"host time per step, 8 sequences / 1: {m['growth_8_vs_1']}x "
                     f"(target <= {r['target_growth_8_vs_1']}x: {ok(m['growth_8_vs_1'] <= r['target_growth_8_vs_1'])})")
    for mode, worst in r["worst_seq_step_ms_128k"].items():
        if worst is not None:
            lines.append(f"\n{mode} sampling: host time per sequence per step at a 128k vocabulary, worst of "
                         f"1/4/8 sequences: {worst} ms (target <= {r['target_seq_step_ms_128k']} ms: "
                         f"{ok(worst <= r['target_seq_step_ms_128k'])})")
    lines.append(f"the engine samples on the {r['auto_sampling']} here by itself (in the graph only where the "
                 f"output layer runs on a GPU)")
    return "\n".join(lines)
