"""The local backend: a loaded GGUF plus the scheduler thread that decodes it.

`LocalEngine.submit(Request)` turns the request into prompt tokens (chat template or raw)
in the caller's thread, so bad input raises a typed error right there, then hands the
tokens to the scheduler and returns the `Generation` handle at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from . import llama
from .generation import DEFAULT_CAPACITY, Generation
from .scheduler import Scheduler
from .session import SessionStore
from .text import THINK_TAGS, ReasoningTags
from .threads import ThreadChoice
from .types import InvalidParamsError, Request


class LocalEngine:
    """One model, one context, many concurrent generations."""

    def __init__(self, model: str | os.PathLike[str] | llama.LlamaModel, *, n_ctx: int = 4096,
                 n_parallel: int = 4, n_threads: int | None = None, n_batch: int = 512,
                 max_queue: int = 64, capacity: int = DEFAULT_CAPACITY,
                 n_gpu_layers: int | None = None, on_progress: Callable[[float], None] | None = None,
                 flash_attn: bool | None = None, sampling: str = "auto",
                 sessions: SessionStore | None = None) -> None:
        """`n_threads`: None chooses them while it runs (see `threads.py`), a number fixes
        them (capped at the cores). `n_gpu_layers`: -1 all, 0 none, None: all where the llama.cpp build can offload.
        `flash_attn=None` turns it on only when layers are offloaded to a GPU (it is
        slower on CPUs: see `llama.LlamaContext`). `sessions`: where conversations' KV
        states are saved and restored from (see `session.py`); the caller owns it."""
        self.model = model if isinstance(model, llama.LlamaModel) else llama.LlamaModel(
            model, n_gpu_layers=n_gpu_layers, on_progress=on_progress)
        if flash_attn is None:
            flash_attn = self.model.placement.gpu_layers > 0
        self._owns_model = not isinstance(model, llama.LlamaModel)
        self.scheduler = Scheduler(self.model, n_ctx=n_ctx, n_parallel=n_parallel,
                                   n_batch=n_batch, n_threads=n_threads, max_queue=max_queue,
                                   capacity=capacity, flash_attn=flash_attn, sampling=sampling,
                                   sessions=sessions)
        self.sessions = sessions

    @property
    def n_ctx(self) -> int:
        return self.scheduler.n_ctx

    @property
    def n_parallel(self) -> int:
        return self.scheduler.n_parallel

    def prompt_tokens(self, request: Request) -> list[int]:
        """The tokens to decode before sampling: the prompt (raw, or the transcript through
        the chat template), then for a branch the reply so far and the forced token."""
        return self._prompt(request)[0]

    def _prompt(self, request: Request) -> tuple[list[int], tuple[ReasoningTags, bool] | None]:
        """The prompt tokens, and for a thinking model its tags and whether the prompt
        leaves the reply inside the thinking block (a template that opens it)."""
        tags = self.model.reasoning_tags if request.split_thinking else None
        if request.mode == "chat":
            text = self._render(request, tags)
            tokens = self.model.prompt_tokens(text, chat=True)
        else:
            if request.prompt is None:
                raise InvalidParamsError("raw mode needs a prompt, not messages")
            text = request.prompt
            tokens = self.model.prompt_tokens(text, chat=False)
        tail = [*request.prefix, *([request.force] if request.force is not None else [])]
        if request.continue_text:  # an edited reply: the model goes on from its end
            tail = self.model.tokenize(request.continue_text, add_special=False, parse_special=False) + tail
        if any(t >= self.model.n_vocab for t in tail):
            raise InvalidParamsError(f"a token id of the branch is beyond the vocabulary ({self.model.n_vocab})")
        if tags is None:
            return tokens + tail, None
        inside = text.rstrip().endswith(tags.open)
        if tail:  # a branch: where the reply so far left off
            sofar = self.model.detokenize(request.prefix)
            inside = (inside or tags.open in sofar) and tags.close not in sofar.split(tags.open)[-1]
        return tokens + tail, (tags, inside)

    def _render(self, request: Request, tags: ReasoningTags | None) -> str:  # noqa: C901
        """The transcript through the chat template, thinking switched as asked: the
        template's own `enable_thinking` where it has one (Qwen3), else for `<think>`
        models an empty thinking block after the prompt (what those templates do)."""
        model = self.model
        variables = {}
        if request.think is not None and model.template_takes("enable_thinking"):
            variables["enable_thinking"] = request.think
        try:
            text = model.render_chat(request.chat_messages(), **variables)
        except Exception as e:  # a template that raises on this transcript
            raise InvalidParamsError(f"the model's chat template rejected the messages: {e}") from e
        if request.think is False and tags == THINK_TAGS and not variables:
            opened = text.rstrip().endswith(tags.open)
            text = text.rstrip() + "\n\n" + tags.close + "\n\n" if opened else text + f"{tags.open}\n\n{tags.close}\n\n"
        return text

    def submit(self, request: Request) -> Generation:
        request.validate()
        if request.params.grammar or request.params.logit_bias:
            # built here once, in the caller's thread, so a bad grammar or token id is the
            # caller's typed error and never the scheduler thread's
            for _, stage in llama.constraint_samplers(self.model, request.params):
                llama.free_sampler(stage)
        tokens, reasoning = self._prompt(request)
        return self.scheduler.submit(request, tokens, reasoning)

    def clear_cache(self) -> None:
        self.scheduler.clear_cache()

    def thread_choice(self) -> ThreadChoice:
        """The CPU threads it decodes on now, and whether they are chosen while it runs."""
        return self.scheduler.thread_choice()

    def set_threads(self, n: int | None) -> None:
        """A fixed thread count from the next step on, or None for auto."""
        self.scheduler.set_threads(n)

    def close(self) -> None:
        self.scheduler.close()
        if self._owns_model:
            self.model.close()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
