"""Request bodies: the tutorial's format (strict: unknown fields are errors) and
OpenAI's (lenient on fields clients always send, strict on values we cannot honour)."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..engine.types import Request, SamplerParams


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str


class ThinkingFields(BaseModel):
    """Thinking models: `think` (or vLLM's and llama.cpp's `chat_template_kwargs.enable_thinking`)
    switches the thinking on or off; `thinking_budget` closes it after so many tokens."""

    think: Optional[bool] = None
    thinking_budget: Optional[int] = Field(None, ge=0)
    chat_template_kwargs: Optional[dict[str, Any]] = None

    def thinking(self) -> dict[str, Any]:
        think = self.think
        if think is None and isinstance(self.chat_template_kwargs, dict):
            value = self.chat_template_kwargs.get("enable_thinking")
            think = value if isinstance(value, bool) else None
        return {"think": think, "thinking_budget": self.thinking_budget}


class SamplingFields(ThinkingFields):
    temperature: Optional[float] = Field(None, ge=0, le=5)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    top_k: Optional[int] = Field(None, ge=0)
    min_p: Optional[float] = Field(None, ge=0, le=1)
    seed: Optional[int] = Field(None, ge=0, lt=2**32)
    repeat_penalty: Optional[float] = Field(None, gt=0)
    presence_penalty: Optional[float] = Field(None, ge=-2, le=2)
    frequency_penalty: Optional[float] = Field(None, ge=-2, le=2)

    def sampler(self, stop: list[str], default_temperature: float) -> SamplerParams:
        p = SamplerParams(temperature=default_temperature if self.temperature is None else self.temperature,
                          stop=stop)
        for ours, theirs in (("top_p", "top_p"), ("top_k", "top_k"), ("min_p", "min_p"), ("seed", "seed"),
                             ("penalty_repeat", "repeat_penalty"), ("penalty_present", "presence_penalty"),
                             ("penalty_freq", "frequency_penalty")):
            value = getattr(self, theirs)
            if value is not None:
                setattr(p, ours, value)
        return p


class StreamRequest(SamplingFields):
    """POST /stream and WebSocket prompts (the tutorial's body)."""

    # one of prompt and messages is needed; said in the schema too, for clients and fuzzers
    model_config = ConfigDict(extra="forbid", json_schema_extra={"anyOf": [{"required": ["prompt"]},
                                                                           {"required": ["messages"]}]})
    prompt: Optional[str] = Field(None, max_length=200_000)
    messages: Optional[list[ChatMessage]] = None
    max_tokens: int = Field(200, ge=1)
    stop: list[str] = Field(default_factory=list, max_length=8)
    type: Optional[Literal["prompt"]] = None  # WebSocket messages may say {"type": "prompt", ...}
    ignore_eos: bool = False  # as llama.cpp's server: always generate max_tokens (benchmarks)
    logprobs: int = Field(0, ge=0, le=20)  # token events carry the top N alternatives

    def to_request(self) -> Request:
        stop = [s for s in self.stop if s]
        if self.messages:
            return Request(messages=[m.model_dump() for m in self.messages], mode="chat",
                           max_tokens=self.max_tokens, params=self.sampler(stop, 0.7),
                           ignore_eos=self.ignore_eos, logprobs=self.logprobs, **self.thinking())
        return Request(prompt=self.prompt, mode="raw", max_tokens=self.max_tokens,
                       params=self.sampler(stop, 0.7), ignore_eos=self.ignore_eos, logprobs=self.logprobs,
                       **self.thinking())


class StreamOptions(BaseModel):
    include_usage: bool = False


class OpenAIBase(SamplingFields):
    model_config = ConfigDict(extra="ignore")
    model: Optional[str] = None
    max_tokens: Optional[int] = Field(None, ge=1)
    max_completion_tokens: Optional[int] = Field(None, ge=1)
    stop: Optional[Union[str, list[str]]] = None
    stream: bool = False
    stream_options: Optional[StreamOptions] = None
    n: int = Field(1, ge=1, le=1)
    ignore_eos: bool = False  # as llama.cpp's server: always generate max_tokens (benchmarks)
    # as llama.cpp's server: probabilities from the sampler's distribution, not the model's
    post_sampling_probs: bool = False

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class CompletionRequest(OpenAIBase):
    prompt: Union[str, list[str]]
    logprobs: Optional[int] = Field(None, ge=0, le=20)  # OpenAI's legacy form: the top N per token

    @property
    def n_logprobs(self) -> int:
        """0 off; else how many alternatives (at least 1: the chosen token's own value)."""
        return 0 if self.logprobs is None else max(1, self.logprobs)

    def to_request(self) -> Request:
        prompt = self.prompt if isinstance(self.prompt, str) else "".join(self.prompt)
        return Request(prompt=prompt, mode="raw", max_tokens=self.limit(256),
                       params=self.sampler(self.stops(), 1.0), ignore_eos=self.ignore_eos,
                       logprobs=self.n_logprobs, **self.thinking())


class ChatCompletionRequest(OpenAIBase):
    messages: list[ChatMessage] = Field(min_length=1)
    logprobs: Optional[bool] = None  # OpenAI's chat form: logprobs true, top_logprobs N
    top_logprobs: Optional[int] = Field(None, ge=0, le=20)
    # as llama.cpp's server: "none" sends the model's text as it is in `content`, thinking
    # and tags included (no thinking budget then: nothing tells the thinking apart);
    # otherwise the thinking goes to `reasoning_content` (the field DeepSeek's API and vLLM use)
    reasoning_format: Optional[Literal["none", "auto", "deepseek"]] = None

    @property
    def n_logprobs(self) -> int:
        return max(1, self.top_logprobs or 0) if self.logprobs else 0

    def to_request(self) -> Request:
        return Request(messages=[m.model_dump() for m in self.messages], mode="chat",
                       max_tokens=self.limit(512), params=self.sampler(self.stops(), 1.0),
                       ignore_eos=self.ignore_eos, logprobs=self.n_logprobs,
                       split_thinking=self.reasoning_format != "none", **self.thinking())
