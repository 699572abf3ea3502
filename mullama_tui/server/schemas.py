"""Request bodies: the tutorial's format (strict: unknown fields are errors) and
OpenAI's (lenient on fields clients always send, strict on values we cannot honour)."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..engine.types import Request, SamplerParams


class ChatMessage(BaseModel):
    """One message. `content` may be a string or, as many OpenAI clients send it, a list
    of parts: text parts are joined; an image or audio part is refused by name (this
    server runs text models)."""

    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str

    @field_validator("content", mode="before")
    @classmethod
    def _parts(cls, value: Any) -> Any:
        if value is None:
            return ""
        if not isinstance(value, list):
            return value
        texts = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                texts.append(part)
                continue
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif kind in ("image_url", "input_image", "image", "input_audio", "audio", "file"):
                raise ValueError(f"part {i} is {kind}: only text is supported (this server runs a text model)")
            else:
                raise ValueError(f"part {i}: expected {{\"type\": \"text\", \"text\": ...}}")
        return "".join(texts)


class ThinkingFields(BaseModel):
    """Thinking models: `think` (or vLLM's and llama.cpp's `chat_template_kwargs.enable_thinking`)
    switches the thinking on or off; `thinking_budget` closes it after so many tokens."""

    think: bool | None = None
    thinking_budget: int | None = Field(None, ge=0)
    chat_template_kwargs: dict[str, Any] | None = None

    def thinking(self) -> dict[str, Any]:
        think = self.think
        if think is None and isinstance(self.chat_template_kwargs, dict):
            value = self.chat_template_kwargs.get("enable_thinking")
            think = value if isinstance(value, bool) else None
        return {"think": think, "thinking_budget": self.thinking_budget}


class SamplingFields(ThinkingFields):
    temperature: float | None = Field(None, ge=0, le=5, allow_inf_nan=False)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    min_p: float | None = Field(None, ge=0, le=1)
    seed: int | None = Field(None, ge=0, lt=2**32)
    repeat_penalty: float | None = Field(None, gt=0)
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)

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
    prompt: str | None = Field(None, max_length=200_000)
    messages: list[ChatMessage] | None = None
    max_tokens: int = Field(200, ge=1)
    stop: list[str] = Field(default_factory=list, max_length=8)
    type: Literal["prompt"] | None = None  # WebSocket messages may say {"type": "prompt", ...}
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
    """OpenAI's fields. Unknown fields are ignored (clients send many that change
    nothing); the ones that would change the answer and that this server cannot honour
    are refused by name (`unsupported`), never silently dropped."""

    model_config = ConfigDict(extra="ignore")
    # honoured: JSON output through llama.cpp's grammar sampler, and logit biases
    response_format: dict[str, Any] | None = None
    logit_bias: dict[str, float] | None = None
    # refused when set to anything that would change the answer
    tools: list[Any] | None = None
    functions: list[Any] | None = None
    best_of: int | None = None
    echo: bool | None = None
    model: str | None = None
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int = Field(1, ge=1, le=1)
    ignore_eos: bool = False  # as llama.cpp's server: always generate max_tokens (benchmarks)
    # as llama.cpp's server: probabilities from the sampler's distribution, not the model's
    post_sampling_probs: bool = False

    @model_validator(mode="after")
    def _unsupported(self) -> OpenAIBase:
        for name, value, harmless in (("tools", self.tools, [None, []]), ("functions", self.functions, [None, []]),
                                      ("best_of", self.best_of, [None, 1]), ("echo", self.echo, [None, False]),
                                      ("suffix", getattr(self, "suffix", None), [None, ""])):
            if value not in harmless:
                raise ValueError(f"{name} is not supported by this server (it would change the answer); "
                                 f"leave it out")
        return self

    def sampler(self, stop: list[str], default_temperature: float) -> SamplerParams:
        p = super().sampler(stop, default_temperature)
        p.grammar = self.grammar()
        for key, bias in (self.logit_bias or {}).items():
            if not str(key).strip().isdigit():
                raise BodyError(f"logit_bias: keys are token ids, not {key!r}")
            p.logit_bias[int(key)] = float("-inf") if bias <= -100 else float(bias)
        return p

    def grammar(self) -> str | None:
        """`response_format` as a GBNF grammar: `json_object` any JSON object (with a
        `schema`, llama.cpp's server's form, that schema), `json_schema` its
        `json_schema.schema`; `text` (or none) no grammar."""
        rf = self.response_format
        if not rf or rf.get("type") in (None, "text"):
            return None
        kind = rf.get("type")
        if kind == "json_object":
            schema = rf.get("schema")
        elif kind == "json_schema":
            spec = rf.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            if not isinstance(schema, dict):
                raise BodyError("response_format.json_schema.schema: a JSON schema object is needed")
        else:
            raise BodyError(f"response_format.type {kind!r}: text, json_object or json_schema")
        if schema is not None and not isinstance(schema, dict):
            raise BodyError("response_format.schema: a JSON schema object")
        from ..engine.llama import json_grammar
        from ..engine.types import InvalidParamsError

        try:
            return json_grammar(schema)
        except InvalidParamsError as e:
            raise BodyError(f"response_format: {e}") from None

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def limit(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class CompletionRequest(OpenAIBase):
    prompt: str | list[str]
    suffix: str | None = None  # refused if set (no fill-in-the-middle here)
    logprobs: int | None = Field(None, ge=0, le=20)  # OpenAI's legacy form: the top N per token

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
    logprobs: bool | None = None  # OpenAI's chat form: logprobs true, top_logprobs N
    top_logprobs: int | None = Field(None, ge=0, le=20)
    # as llama.cpp's server: "none" sends the model's text as it is in `content`, thinking
    # and tags included (no thinking budget then: nothing tells the thinking apart);
    # otherwise the thinking goes to `reasoning_content` (the field DeepSeek's API and vLLM use)
    reasoning_format: Literal["none", "auto", "deepseek"] | None = None

    @property
    def n_logprobs(self) -> int:
        return max(1, self.top_logprobs or 0) if self.logprobs else 0

    def to_request(self) -> Request:
        return Request(messages=[m.model_dump() for m in self.messages], mode="chat",
                       max_tokens=self.limit(512), params=self.sampler(self.stops(), 1.0),
                       ignore_eos=self.ignore_eos, logprobs=self.n_logprobs,
                       split_thinking=self.reasoning_format != "none", **self.thinking())


# -- what a body may be before any model sees it -------------------------------------------
MAX_DEPTH = 32  # the deepest real request (tools' JSON schemas) is far below
MAX_MESSAGES = 1024
CHARS_PER_TOKEN_BOUND = 64  # no tokenizer packs more text than this into one token

M = TypeVar("M", bound=BaseModel)


class BodyError(ValueError):
    """A body that is refused before it reaches the engine (a 400 with this message)."""


def validation_message(e: Any) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{loc}: {err.get('msg')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


def load_json(raw: bytes, max_bytes: int) -> dict[str, Any]:
    """Parse a body or a WebSocket message: an object, at most `max_bytes`, nested at most
    MAX_DEPTH deep (a few thousand `[` would otherwise end in a RecursionError)."""
    if len(raw) > max_bytes:
        raise BodyError(f"the message is over {max_bytes} bytes")
    try:
        data = json.loads(raw or b"null")
    except RecursionError:
        raise BodyError(f"invalid JSON: nested more than {MAX_DEPTH} levels deep") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BodyError(f"invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise BodyError("the body must be a JSON object")
    check_structure(data)
    return data


def check_structure(data: Any) -> None:
    """Depth and text: every string must be valid Unicode (a lone UTF-16 surrogate such as
    "\\ud800" is valid JSON but no text can be made of it), found iteratively (no recursion
    for an attacker to exhaust), with the path of the first bad value."""
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise BodyError(f"invalid JSON: nested more than {MAX_DEPTH} levels deep")
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise BodyError(f"{path or 'a string'}: contains a lone UTF-16 surrogate "
                                f"(\\u{ord(value[e.start]):04x}), which is not text") from None
        elif isinstance(value, dict):
            for k, v in value.items():
                stack.append((k, path, depth + 1))
                stack.append((v, f"{path}.{k}" if path else str(k), depth + 1))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                stack.append((v, f"{path}.{i}", depth + 1))


def validate_body(data: bytes | dict[str, Any], model: type[M], n_ctx: int, max_bytes: int = 10**9) -> M:
    """A parsed body as `model`, with the bounds that keep a hostile body cheap: at most
    MAX_MESSAGES messages, and no more text than could fit into the context (refused
    before the chat template and the tokenizer spend seconds on it)."""
    if isinstance(data, bytes):
        data = load_json(data, max_bytes)
    messages = data.get("messages")
    if isinstance(messages, list) and len(messages) > MAX_MESSAGES:
        raise BodyError(f"messages: {len(messages)} messages; at most {MAX_MESSAGES}")
    try:
        body = model.model_validate(data)
    except ValidationError as e:
        raise BodyError(validation_message(e)) from None
    text = sum(len(m.content) for m in getattr(body, "messages", None) or [])
    prompt = getattr(body, "prompt", None)
    text += len(prompt) if isinstance(prompt, str) else sum(len(p) for p in prompt or [])
    if text > CHARS_PER_TOKEN_BOUND * n_ctx:
        raise BodyError(f"the prompt is {text} characters: it cannot fit into the context of {n_ctx} tokens")
    return body
