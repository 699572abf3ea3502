"""The engine's vocabulary: requests, sampler parameters, token events, stats and errors.

Everything here is plain data with no llama.cpp in it, so front ends (TUI, CLI,
server) can import it cheaply and the tests can check it without a model.
"""

from __future__ import annotations

import enum
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

# the vocabulary's errors live in errors.py (cheap for the command line); importable from here as always
from .errors import ContextOverflowError as ContextOverflowError
from .errors import EngineClosedError as EngineClosedError
from .errors import InvalidParamsError as InvalidParamsError
from .errors import ModelLoadError as ModelLoadError
from .errors import ModelNotFoundError as ModelNotFoundError
from .errors import MullamaError as MullamaError
from .errors import QueueFullError as QueueFullError
from .errors import is_whole as is_whole
from .errors import require_whole as require_whole


class FinishReason(str, enum.Enum):
    """Why a generation ended."""

    EOS = "eos"
    LENGTH = "length"
    STOP = "stop"
    CANCELLED = "cancelled"
    ERROR = "error"

    def __str__(self) -> str:  # so f"{reason}" prints "eos", not "FinishReason.EOS"
        return self.value


@dataclass
class SamplerParams:
    """Sampling settings, with the field names and defaults of the streaming tutorial.

    `seed=0` means "pick a random seed"; the seed actually used is reported in `Stats.seed`,
    so any run can be reproduced. `temperature=0` means greedy decoding, and so does any
    temperature below `GREEDY_BELOW` (logits over 1e-38 overflow to infinity in llama.cpp's
    float32 sampler, and its draw then picks the last token of the vocabulary).
    """

    GREEDY_BELOW: ClassVar[float] = 1e-6

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    typical_p: float = 1.0
    penalty_repeat: float = 1.1
    penalty_freq: float = 0.0
    penalty_present: float = 0.0
    penalty_last_n: int = 64
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    # constrained output: a GBNF grammar (llama.cpp's grammar sampler; `json_grammar`
    # makes one from a JSON schema), and additive biases of token logits by token id
    grammar: str | None = None
    logit_bias: dict[int, float] = field(default_factory=dict)

    @property
    def is_greedy(self) -> bool:
        """Decoded greedily: temperature 0, or too small to divide logits by."""
        return self.temperature < self.GREEDY_BELOW

    @classmethod
    def greedy(cls) -> SamplerParams:
        """Always the most likely token: deterministic, good for facts and tests."""
        return cls(temperature=0.0, top_k=1, top_p=1.0, min_p=0.0, penalty_repeat=1.0)

    @classmethod
    def creative(cls) -> SamplerParams:
        """Hotter and wider: stories and brainstorming."""
        return cls(temperature=1.1, top_k=100, top_p=0.98, min_p=0.02, penalty_repeat=1.15)

    @classmethod
    def precise(cls) -> SamplerParams:
        """Cool and narrow: answers that should not wander."""
        return cls(temperature=0.2, top_k=20, top_p=0.8, min_p=0.1, penalty_repeat=1.05)

    def validate(self) -> SamplerParams:
        """Raise InvalidParamsError naming the first bad field; return self when all is well."""

        def bad(name: str, why: str) -> InvalidParamsError:
            return InvalidParamsError(f"{name}={getattr(self, name)!r}: {why}")

        for name in ("temperature", "top_p", "min_p", "typical_p", "penalty_repeat",
                     "penalty_freq", "penalty_present"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise bad(name, "must be a number")
            if not math.isfinite(value):
                raise bad(name, "must be a finite number")
        for name in ("top_k", "penalty_last_n", "seed"):
            value = getattr(self, name)
            if not is_whole(value):
                raise bad(name, "must be a whole number")
        if self.temperature < 0:
            raise bad("temperature", "must be >= 0 (0 means greedy)")
        if self.top_k < 0:
            raise bad("top_k", "must be >= 0 (0 disables it)")
        if not 0 < self.top_p <= 1:
            raise bad("top_p", "must be in (0, 1]")
        if not 0 <= self.min_p <= 1:
            raise bad("min_p", "must be in [0, 1]")
        if not 0 < self.typical_p <= 1:
            raise bad("typical_p", "must be in (0, 1]")
        if self.penalty_repeat <= 0:
            raise bad("penalty_repeat", "must be > 0 (1.0 disables it)")
        if self.penalty_last_n < -1:
            raise bad("penalty_last_n", "must be >= -1 (-1 means the whole context)")
        if not 0 <= self.seed < 2**32:
            raise bad("seed", "must be in [0, 2**32) (0 means random)")
        if not isinstance(self.stop, (list, tuple)) or not all(isinstance(s, str) for s in self.stop):
            raise InvalidParamsError(f"stop={self.stop!r}: must be a list of strings")
        if any(s == "" for s in self.stop):
            raise InvalidParamsError("stop: empty stop strings are not allowed")
        if self.grammar is not None and (not isinstance(self.grammar, str) or not self.grammar.strip()):
            raise InvalidParamsError("grammar: a GBNF grammar as a non-empty string")
        if not isinstance(self.logit_bias, dict) or not all(
                isinstance(k, int) and not isinstance(k, bool) and k >= 0 and isinstance(v, (int, float))
                and not isinstance(v, bool) and (math.isfinite(v) or v == -math.inf)
                for k, v in self.logit_bias.items()):
            raise InvalidParamsError("logit_bias: token ids (whole numbers >= 0) to finite numbers (or -inf)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_text(s: str) -> bool:
    """Whether `s` can be encoded as UTF-8 (a lone surrogate, from JSON's "\\ud800" or from
    an undecodable command-line byte, cannot)."""
    try:
        s.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


Mode = Literal["chat", "raw"]


@dataclass
class Request:
    """One generation asked of a backend.

    Exactly one of `prompt` (raw text, or a single user turn in chat mode) and `messages`
    (a chat transcript of {"role", "content"} dicts) is used. In chat mode a `prompt` is
    wrapped as one user message, after `system` if given.
    """

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    mode: Mode = "raw"
    system: str | None = None
    params: SamplerParams = field(default_factory=SamplerParams)
    max_tokens: int = 256
    ignore_eos: bool = False  # benchmarks only: generate exactly max_tokens
    logprobs: int = 0  # token insight: 0 off, else the top N alternatives per token (up to 20)
    # Branching: the reply so far is `prefix` (token ids), then `force` is taken as the next
    # token instead of sampling one, and generation goes on from there. The KV cache still
    # holds the earlier reply, so only the forced token and what follows are decoded.
    prefix: list[int] = field(default_factory=list)
    force: int | None = None
    # Thinking models: None leaves the model's default; False asks it not to think (as its
    # family documents: the template's `enable_thinking`, or an empty thinking block); True
    # asks it to. After `thinking_budget` thinking tokens the engine closes the block itself.
    think: bool | None = None
    thinking_budget: int | None = None
    split_thinking: bool = True  # False: the raw text, tags and all, in the answer (reasoning_format "none")
    # A conversation's name: when the request ends its sequence's KV state is saved under it
    # (engines with a session store), so the conversation's next turn, here or in another
    # process, restores it instead of processing the transcript again. `session_meta` goes
    # into the store's index with it (what a listing shows).
    session: str | None = None
    session_meta: dict[str, Any] = field(default_factory=dict)
    # Chat mode: the reply so far, as text (a reply the user edited): the model goes on from
    # the end of it, as the raw continuation of its own turn (local engines only)
    continue_text: str | None = None

    def validate(self) -> Request:
        if self.mode not in ("chat", "raw"):
            raise InvalidParamsError(f"mode={self.mode!r}: must be 'chat' or 'raw'")
        require_whole("max_tokens", self.max_tokens, 1)
        if self.prompt is None and not self.messages:
            raise InvalidParamsError("a request needs a prompt or messages")
        if not is_whole(self.logprobs, 0) or self.logprobs > 20:
            raise InvalidParamsError(f"logprobs={self.logprobs!r}: a whole number from 0 (off) to 20")
        if self.thinking_budget is not None and not is_whole(self.thinking_budget, 0):
            raise InvalidParamsError(f"thinking_budget={self.thinking_budget!r}: a whole number of tokens >= 0")
        if not all(is_whole(t, 0) for t in self.prefix) or (self.force is not None and not is_whole(self.force, 0)):
            raise InvalidParamsError("prefix and force are token ids (whole numbers >= 0)")
        if self.prompt is not None and not isinstance(self.prompt, str):
            raise InvalidParamsError("prompt must be a string")
        if self.messages is not None:
            for m in self.messages:
                if not isinstance(m, dict) or not isinstance(m.get("role"), str) \
                        or not isinstance(m.get("content"), str):
                    raise InvalidParamsError(
                        "messages must be a list of {\"role\": str, \"content\": str} objects")
        if self.params.grammar and (self.prefix or self.force is not None or self.ignore_eos):
            raise InvalidParamsError("a grammar (JSON output) cannot be combined with branching or ignore_eos: "
                                     "the grammar decides where the text may go and where it ends")
        for name, text in (("prompt", self.prompt), ("system", self.system),
                           *((f"messages[{i}]", m["content"]) for i, m in enumerate(self.messages or []))):
            if text is not None and not is_text(text):
                raise InvalidParamsError(f"{name}: contains a lone UTF-16 surrogate, which is not text")
        self.params.validate()
        return self

    def chat_messages(self) -> list[dict[str, str]]:
        """The transcript to render with the chat template."""
        if self.messages:
            msgs = list(self.messages)
            if self.system and not any(m["role"] == "system" for m in msgs):
                msgs.insert(0, {"role": "system", "content": self.system})
            return msgs
        msgs = [{"role": "system", "content": self.system}] if self.system else []
        return msgs + [{"role": "user", "content": self.prompt or ""}]


@dataclass
class Stats:
    """What a finished generation measured, like `ollama run --verbose`.

    Intervals (all from `time.perf_counter()`, seconds):
    - prompt_time: from the scheduler admitting the request to the logits of the last
      prompt token (tokens reused from the KV cache are not processed and not counted);
    - ttft: from submission to the first emitted text piece (includes any queueing);
    - gen_time: from the end of prompt processing to the sampling of the last token, so
      `gen_tps = generated_tokens / gen_time` is the pure decode rate;
    - total_time: from submission to the final event.
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    restored_tokens: int = 0  # of the cached ones, how many were restored from disk (a saved conversation)
    prompt_time: float = 0.0
    ttft: float | None = None
    generated_tokens: int = 0
    gen_time: float = 0.0
    total_time: float = 0.0
    queue_time: float = 0.0
    finish_reason: FinishReason | None = None
    seed: int = 0
    n_ctx: int = 0
    error: str | None = None
    notice: str | None = None  # something the user should know that is not an error
    # thinking models: tokens of each part, time to the first word of the answer (from
    # submission), and how long the thinking took (its first token to its end)
    thinking_tokens: int = 0
    answer_tokens: int = 0
    ttft_answer: float | None = None
    thinking_time: float = 0.0
    # the CPU threads it decoded on at the end (auto: chosen while it ran), of `cores`
    n_threads: int = 0
    n_threads_prompt: int = 0
    cores: int = 0
    threads_auto: bool = False

    @property
    def threads_label(self) -> str:
        """'1 of 2, auto' ('' for a remote server, which does not say)."""
        if not self.n_threads:
            return ""
        s = f"{self.n_threads} of {self.cores}"
        if self.n_threads_prompt and self.n_threads_prompt != self.n_threads:
            s += f" (prompt {self.n_threads_prompt})"
        return s + (", auto" if self.threads_auto else ", fixed")

    @property
    def prompt_processed(self) -> int:
        """Prompt tokens actually evaluated (the rest came from the cache)."""
        return self.prompt_tokens - self.cached_tokens

    @property
    def prompt_tps(self) -> float:
        return self.prompt_processed / self.prompt_time if self.prompt_time > 0 else 0.0

    @property
    def gen_tps(self) -> float:
        return self.generated_tokens / self.gen_time if self.gen_time > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["finish_reason"] = str(self.finish_reason) if self.finish_reason else None
        d["prompt_tps"] = round(self.prompt_tps, 2)
        d["gen_tps"] = round(self.gen_tps, 2)
        d["prompt_processed"] = self.prompt_processed
        return d

    def _reuse_note(self) -> str:
        if self.restored_tokens:
            return f" ({self.restored_tokens} of them restored from disk, a saved conversation)"
        return f" ({self.cached_tokens} of them reused from the KV cache)" if self.cached_tokens else ""

    def summary_lines(self) -> list[str]:
        """The human-readable block printed by `run --stats` and shown in the TUI."""
        ttft = f"{self.ttft * 1000:.0f} ms" if self.ttft is not None else "-"
        lines = [
            f"prompt tokens:   {self.prompt_tokens}" + self._reuse_note(),
            f"prompt eval:     {self.prompt_time * 1000:.0f} ms ({self.prompt_tps:.1f} tok/s)" if self.prompt_processed
            else "prompt eval:     none (the whole prompt was reused: cached, or shared with a sequence beside it)"
            if self.prompt_tokens else "prompt eval:     none",
            f"first token:     {ttft}",
            f"generated:       {self.generated_tokens} tokens",
            f"generation rate: {self.gen_tps:.1f} tok/s",
            f"total time:      {self.total_time:.2f} s",
            f"finish reason:   {self.finish_reason}",
            f"seed:            {self.seed}",
        ]
        if self.threads_label:
            lines.append(f"threads:         {self.threads_label}")
        if self.thinking_tokens:
            first = f"{self.ttft_answer * 1000:.0f} ms" if self.ttft_answer is not None else "-"
            lines[4:4] = [f"thinking:        {self.thinking_tokens} tokens in {self.thinking_time:.2f} s",
                          f"answer:          {self.answer_tokens} tokens, first word after {first}"]
        if self.error:
            lines.append(f"error:           {self.error}")
        if self.notice:
            lines.append(f"note:            {self.notice}")
        return lines


@dataclass(slots=True)
class Candidate:
    """A token the model considered: its id, its text (the token's own bytes, decoded
    with replacement), and its log-probability in the distribution it belongs to.
    `cut_by` (model candidates only): the sampler stage that removed it, or None if the
    sampler kept it (top-k, typical, top-p, min-p; "greedy" when decoding was greedy)."""

    token_id: int
    text: str
    logprob: float
    cut_by: str | None = None

    @property
    def prob(self) -> float:
        return math.exp(self.logprob) if self.logprob > -math.inf else 0.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"token_id": self.token_id, "token": self.text, "logprob": self.logprob}
        if self.cut_by is not None:
            d["cut_by"] = self.cut_by
        return d


@dataclass(slots=True)
class TokenInsight:
    """Why one token was chosen (see `engine.insight`).

    - `logprob`, `top`, `entropy`: the model's distribution (softmax of the raw logits);
    - `sampled_prob`, `sampled_top`: the sampler's (after penalties, top-k, typical, top-p,
      min-p and temperature: the one the token was drawn from), with `kept` candidates;
    - `piece`: the token's own text, before UTF-8 assembly (half a character shows as U+FFFD).
    """

    token_id: int
    piece: str
    logprob: float
    top: list[Candidate]
    sampled_prob: float
    sampled_top: list[Candidate]
    entropy: float
    kept: int
    forced: bool = False  # put there by a branch, not sampled

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    def to_dict(self) -> dict[str, Any]:
        return {"token_id": self.token_id, "piece": self.piece, "logprob": self.logprob,
                "top_logprobs": [c.to_dict() for c in self.top], "sampled_prob": self.sampled_prob,
                "sampled_top": [{"token_id": c.token_id, "token": c.text, "prob": c.prob} for c in self.sampled_top],
                "entropy": self.entropy, "kept": self.kept, "forced": self.forced}


@dataclass(slots=True)
class TokenEvent:
    """One step of a generation as seen by a consumer.

    `text` is only whole characters (never half of a UTF-8 sequence) and never part of a
    stop string. It may be empty when a token only completed a held-back sequence that
    turned out to be a stop string, or on the final event. The last event of every
    generation has `finish_reason` and `stats` set.
    """

    text: str
    token_id: int
    index: int
    finish_reason: FinishReason | None = None
    stats: Stats | None = None
    insight: TokenInsight | None = None  # with Request.logprobs
    thinking: str = ""  # text of the thinking channel (thinking models); `text` is the answer
    moved: str = ""  # answer text sent earlier that a stray closing tag showed to be thinking
    channel: str = "answer"  # "thinking" for a token of the thinking (its tags included)

    @property
    def done(self) -> bool:
        return self.finish_reason is not None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"text": self.text, "token_id": self.token_id, "index": self.index,
                             "done": self.done, "channel": self.channel}
        if self.thinking:
            d["thinking"] = self.thinking
        if self.moved:
            d["moved"] = self.moved
        if self.insight is not None:
            d["insight"] = self.insight.to_dict()
        if self.done:
            d["finish_reason"] = str(self.finish_reason)
            d["stats"] = self.stats.to_dict() if self.stats else None
        return d


@dataclass(frozen=True)
class Device:
    """A compute device llama.cpp's build can use (ggml's backend device registry)."""

    name: str  # "CPU", "CUDA0", "Metal", "Vulkan0", ...
    description: str  # "NVIDIA H200", "AMD EPYC", ...
    kind: str  # cpu, gpu, igpu, accel
    memory_free: int
    memory_total: int

    @property
    def label(self) -> str:
        return f"{self.name} {self.description}".strip()


@dataclass(frozen=True)
class Placement:
    """Where a loaded model runs: how many of its layers (llama.cpp counts the output
    layer as one more) went to which GPU."""

    gpu_layers: int
    n_layers: int
    gpu: str | None  # the first GPU's label, if the build has one

    @property
    def summary(self) -> str:
        """'CPU', or e.g. 'CUDA0 NVIDIA H200, 31/31 layers'."""
        if self.gpu is None or self.gpu_layers <= 0:
            return "CPU"
        where = f"{self.gpu}, {self.gpu_layers}/{self.n_layers} layers"
        return where if self.gpu_layers >= self.n_layers else where + " (the rest on the CPU)"


@dataclass(frozen=True)
class ModelInfo:
    """What the TUI header, `show` and `/v1/models` say about a loaded model."""

    path: str
    name: str
    description: str
    size_bytes: int
    file_bytes: int
    n_params: int
    n_ctx_train: int
    n_vocab: int
    has_chat_template: bool


@dataclass
class Agreement:
    """Model b against model a over `n` tokens a generated."""

    n: int
    top1: float  # share of positions where both put the same token first
    mean_kl: float  # nats
    kl: list[float] = field(default_factory=list)  # per generated token
    agree: list[bool] = field(default_factory=list)
    worst: int = -1  # the token with the largest KL
    b_top: list[int] = field(default_factory=list)  # b's most likely token at each position (where it would go)

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.n, "top1_agreement": round(self.top1, 4), "mean_kl": round(self.mean_kl, 5),
                "max_kl_at": self.worst, "kl": [round(k, 5) for k in self.kl], "agree": self.agree,
                "b_top": self.b_top}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Agreement:
        """As `to_dict` wrote it (a comparison reopened from the history)."""
        return cls(int(d["tokens"]), float(d["top1_agreement"]), float(d["mean_kl"]), list(d.get("kl", [])),
                   list(d.get("agree", [])), int(d.get("max_kl_at", -1)), list(d.get("b_top", [])))

    def summary(self, a: str, b: str) -> str:
        """'Q4_0 agrees with Q8_0 on 94% of tokens; mean KL 0.031; most disagreement at token 57'."""
        if not self.n:
            return f"{b} and {a}: no tokens to compare"
        return (f"{b} agrees with {a} on {self.top1:.0%} of {self.n} tokens; mean KL {self.mean_kl:.3f}; "
                f"most disagreement at token {self.worst}")
