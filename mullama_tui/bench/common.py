"""What the benchmarks share: the prompt, timed runs and their medians, percentiles, a
contender in its own process, and a private home so no benchmark touches user files."""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..engine.local import LocalEngine
from ..engine.types import Request, SamplerParams

BENCH_PROMPT = (
    "The history of the printing press begins in the fifteenth century, when Johannes "
    "Gutenberg combined a screw press with movable metal type and oil-based ink. "
) * 4 + "Write a long, detailed essay about how printing changed Europe."

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """The default progress callback: say nothing."""


@contextlib.contextmanager
def private_home() -> Iterator[Path]:
    """Point MULLAMA_TUI_HOME at a fresh temporary folder for the duration, whatever it
    was (the user's own setting included), and restore it after: a benchmark that saves
    settings or history must never write the user's config, data or cache."""
    old = os.environ.get("MULLAMA_TUI_HOME")
    home = Path(tempfile.mkdtemp(prefix="mullama-bench-"))
    os.environ["MULLAMA_TUI_HOME"] = str(home)
    try:
        yield home
    finally:
        if old is None:
            os.environ.pop("MULLAMA_TUI_HOME", None)
        else:
            os.environ["MULLAMA_TUI_HOME"] = old
        shutil.rmtree(home, ignore_errors=True)


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..1) by the nearest rank, as the reports print it."""
    xs = sorted(values)
    if not xs:
        return 0.0
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def paired_ratios(ours: list[float], theirs: list[float]) -> list[float]:
    """Each run of ours over the run of theirs measured beside it. A VM's speed drifts
    by a third within minutes, so a ratio of two adjacent runs is the one least touched by
    drift; the median of these is what the UI targets are judged on (the ratio of the
    medians is printed beside it)."""
    return [round(a / b, 3) for a, b in zip(ours, theirs) if b > 0]


@dataclass
class Run:
    prompt_tokens: int
    pieces: int
    ttft: float
    gen_time: float

    @property
    def pp_tps(self) -> float:
        return self.prompt_tokens / self.ttft if self.ttft > 0 else 0.0

    @property
    def tg_tps(self) -> float:
        return (self.pieces - 1) / self.gen_time if self.gen_time > 0 else 0.0


@dataclass
class Series:
    name: str
    runs: list[Run] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        def mmm(xs: list[float]) -> dict[str, float]:
            return {"median": round(statistics.median(xs), 1), "min": round(min(xs), 1),
                    "max": round(max(xs), 1)}
        return {"name": self.name, "reps": len(self.runs),
                "tokens": [r.pieces for r in self.runs],
                "prompt_tokens": self.runs[0].prompt_tokens if self.runs else 0,
                "pp_tps": mmm([r.pp_tps for r in self.runs]),
                "tg_tps": mmm([r.tg_tps for r in self.runs])}


def time_stream(prompt_tokens: int, pieces: Iterable[Any]) -> Run:
    """Consumer-side timing: prompt rate to the first piece, generation rate after it."""
    t0 = time.perf_counter()
    first = last = None
    n = 0
    for _ in pieces:
        now = time.perf_counter()
        if first is None:
            first = now
        last = now
        n += 1
    if first is None or last is None:
        return Run(prompt_tokens, 0, 0.0, 0.0)
    return Run(prompt_tokens, n, first - t0, last - first)


def engine_run(engine: LocalEngine, prompt: str, n_tokens: int, params: SamplerParams) -> Run:
    """Exactly `n_tokens` from the engine (end-of-text does not stop it), cache cleared."""
    engine.clear_cache()
    req = Request(prompt=prompt, mode="raw", max_tokens=n_tokens, params=params, ignore_eos=True)
    gen = engine.submit(req)
    return time_stream(len(gen.prompt_tokens), (e for e in gen if not e.done))


RunFn = Callable[[str, int, dict[str, Any]], Run]


def _llama_cpp_python(path: str, n_ctx: int, n_threads: int, n_gpu_layers: int) -> tuple[RunFn, int]:
    """llama-cpp-python's high-level `Llama.create_completion(stream=True)`: the baseline.
    `n_threads=0` keeps llama-cpp-python's own default; the threads it decodes on are
    returned with the run function. End-of-text gets a -inf logit bias: its only way to
    generate a fixed number of tokens (a Python logits processor, which costs it ~1%)."""
    import llama_cpp.llama_cpp as low_level
    from llama_cpp import Llama

    from ..engine.llama import model_params

    # the same weight placement as our engine (no AMX buffers where they crash: see
    # `engine.llama.amx_kernels_allowed`); `Llama.__init__` reads these defaults here
    low_level.llama_model_default_params = model_params
    threads = {"n_threads": n_threads, "n_threads_batch": n_threads} if n_threads else {}
    llm = Llama(model_path=path, n_ctx=n_ctx, verbose=False, n_gpu_layers=n_gpu_layers,
                flash_attn=n_gpu_layers != 0 and low_level.llama_supports_gpu_offload(), **threads)
    never_end = {int(llm.token_eos()): float("-inf")}

    def run(prompt: str, n_tokens: int, p: dict[str, Any]) -> Run:
        llm.reset()  # no prompt-prefix reuse between repetitions
        n_prompt = len(llm.tokenize(prompt.encode()))
        stream = llm.create_completion(
            prompt, max_tokens=n_tokens, temperature=p["temperature"], top_k=p["top_k"],
            top_p=p["top_p"], min_p=p["min_p"], repeat_penalty=p["penalty_repeat"],
            seed=p["seed"], stream=True, logit_bias=never_end)
        # one chunk per token, then a closing chunk with no text that is not a token
        tokens = (c for c in stream if not (c["choices"][0]["finish_reason"] and not c["choices"][0]["text"]))
        return time_stream(n_prompt, tokens)

    return run, llm.n_threads


def _bare_loop(path: str, n_ctx: int, n_threads: int, n_gpu_layers: int) -> tuple[RunFn, int]:
    """For scale: a plain decode loop with the same C sampler chain and no scheduler,
    threads or events, i.e. about what any engine on llama.cpp can reach here (llama.cpp's
    own `llama-bench` tg is this loop without the sampler)."""
    from ..engine import llama

    model = llama.LlamaModel(path, n_gpu_layers=n_gpu_layers)
    flash = model.placement.gpu_layers > 0

    def run(prompt: str, n_tokens: int, p: dict[str, Any]) -> Run:
        sampler = llama.SamplerChain(model, SamplerParams(**p), p["seed"])
        toks = model.prompt_tokens(prompt, chat=False)

        with llama.LlamaContext(model, n_ctx, 1, 512, n_threads, flash_attn=flash) as ctx:
            batch = ctx.batch

            def pieces() -> Iterator[bytes]:
                for i, t in enumerate(toks):
                    batch.add(t, i, 0, i == len(toks) - 1)
                ctx.decode()
                pos = len(toks)
                for _ in range(n_tokens):
                    tok = sampler.sample(ctx, batch.n - 1)
                    yield model.piece(tok)
                    batch.clear()
                    batch.add(tok, pos, 0, True)
                    pos += 1
                    ctx.decode()

            try:
                return time_stream(len(toks), pieces())
            finally:
                sampler.free()

    return run, n_threads


RUNNERS = {"llama-cpp-python": _llama_cpp_python, "bare-loop": _bare_loop}


def _child_worker(conn: Any, kind: str, path: str, n_ctx: int, n_threads: int, n_gpu_layers: int) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    run, threads = RUNNERS[kind](path, n_ctx, n_threads, n_gpu_layers)
    conn.send(("ready", threads))
    while True:
        msg = conn.recv()
        if msg is None:
            break
        r = run(*msg)
        conn.send((r.prompt_tokens, r.pieces, r.ttft, r.gen_time))


class ChildRunner:
    """A contender in its own process.

    Why a process: llama.cpp is built with OpenMP here, and OpenMP keeps one thread team
    per calling thread. Two decoding threads in one process (our scheduler thread and a
    baseline) make libgomp see more threads than cores and drop its spin-waits, which
    slowed *both* sides by a third when measured. Separate processes are also how a user
    runs two tools.
    """

    def __init__(self, kind: str, path: Path, n_ctx: int, n_threads: int, n_gpu_layers: int = 0) -> None:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        self._kind = kind
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child_worker, args=(child, kind, str(path), n_ctx, n_threads,
                                                             n_gpu_layers), daemon=True)
        self._proc.start()
        hello = self._conn.recv() if self._conn.poll(120) else None
        if not (isinstance(hello, tuple) and hello[0] == "ready"):
            self.close()
            raise RuntimeError(f"the {kind} benchmark process did not start")
        self.threads: int = hello[1]  # the threads it really decodes on

    def run(self, prompt: str, n_tokens: int, params: SamplerParams) -> Run:
        try:
            self._conn.send((prompt, n_tokens, params.to_dict()))
            return Run(*self._conn.recv())
        except (EOFError, OSError):  # not an abort: click would print a bare "Aborted."
            self._proc.join(5)
            raise RuntimeError(f"the {self._kind} benchmark process died "
                               f"(exit code {self._proc.exitcode})") from None

    def close(self) -> None:
        try:
            self._conn.send(None)
        except (BrokenPipeError, OSError):
            pass
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()


def ok(good: bool) -> str:
    return "ok" if good else "BELOW TARGET"
