"""`Model` / `Context`: the streaming tutorial's Python API, on top of the scheduler.

    from mullama_tui import Model, Context, SamplerParams
    model = Model.load("./model.gguf", n_gpu_layers=-1)
    ctx = Context(model, n_ctx=2048)
    for piece in ctx.generate_stream(prompt, max_tokens=100, params=SamplerParams(temperature=0.8)):
        print(piece, end="", flush=True)

`generate_stream` really streams: it returns a generator that yields each token's text
as the scheduler thread decodes it. Breaking out of the loop (or closing or dropping
the generator) cancels the generation; starting another one on the same Context
cancels the previous one too, as one tutorial context serves one stream at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from . import llama
from .generation import Generation
from .local import LocalEngine
from .types import Request, SamplerParams, Stats


class Model:
    """A loaded GGUF model (weights only; contexts are made from it)."""

    def __init__(self, raw: llama.LlamaModel) -> None:
        self._raw = raw

    @classmethod
    def load(cls, path: str | os.PathLike[str], n_gpu_layers: int = 0) -> Model:
        """Load a GGUF. `n_gpu_layers` is passed on (-1 = all); a CPU build ignores it."""
        return cls(llama.LlamaModel(path, n_gpu_layers=n_gpu_layers))

    @property
    def path(self) -> str:
        return str(self._raw.path)

    def tokenize(self, text: str, add_bos: bool = True) -> list[int]:
        return self._raw.prompt_tokens(text, chat=False) if add_bos else self._raw.tokenize(text, False)

    def detokenize(self, tokens: list[int]) -> str:
        return self._raw.detokenize(tokens)


class Context:
    """A generation context: one KV cache, generations one at a time."""

    def __init__(self, model: Model, n_ctx: int = 2048, n_threads: int | None = None,
                 n_batch: int = 512) -> None:
        self.model = model
        self._engine = LocalEngine(model._raw, n_ctx=n_ctx, n_parallel=1, n_threads=n_threads,
                                   n_batch=n_batch)
        self._current: Generation | None = None
        self.last_stats: Stats | None = None

    @property
    def n_ctx(self) -> int:
        return self._engine.n_ctx

    def _start(self, prompt: str, max_tokens: int, params: SamplerParams | None) -> Generation:
        if self._current is not None and not self._current.finished:
            self._current.cancel()
            self._current.wait(5)
        gen = self._engine.submit(Request(prompt=prompt, mode="raw", max_tokens=max_tokens,
                                          params=params or SamplerParams()))
        self._current = gen
        return gen

    def generate_stream(self, prompt: str, max_tokens: int = 100,
                        params: SamplerParams | None = None) -> Iterator[str]:
        """Yield the text of each generated token as soon as it is decoded."""
        gen = self._start(prompt, max_tokens, params)
        return self._pieces(gen)

    def _pieces(self, gen: Generation) -> Iterator[str]:
        try:
            for event in gen:
                if event.done:
                    self.last_stats = event.stats
                    if event.text:
                        yield event.text
                else:
                    yield event.text
        finally:
            if not gen.finished:
                gen.cancel()

    def generate(self, prompt: str, max_tokens: int = 100, params: SamplerParams | None = None) -> str:
        """The whole completion as one string (same text as the streamed pieces joined)."""
        return "".join(self.generate_stream(prompt, max_tokens, params))

    def clear_cache(self) -> None:
        """Forget the KV cache (the next prompt is processed from scratch)."""
        self._engine.clear_cache()

    def close(self) -> None:
        self._engine.close()

    def __enter__(self) -> Context:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
