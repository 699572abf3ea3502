"""Messages the background workers post to the UI: typed, one job each, and never one per
token (see TokenBatch). Dataclasses, so a message says what it carries in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message

from ..engine.types import Stats

if TYPE_CHECKING:
    from .screens.models import ModelChoice


@dataclass
class ModelLoaded(Message):
    """The engine is ready: `name` for the title, `detail` (size, kind, where it runs) for
    the status line."""

    name: str
    detail: str


@dataclass
class ModelFailed(Message):
    """The model (or remote backend) could not be opened; generation is impossible until
    another one is chosen."""

    error: str


@dataclass
class ModelLoadProgress(Message):
    """How far the picker's model has loaded (0..1). Only the newest matters, so a queued
    one is replaced rather than drawn."""

    name: str
    fraction: float

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ModelLoadProgress) and message.name == self.name


@dataclass
class ModelSwitched(Message):
    """The picker's model is loaded (`engine`), or failed to load (`error`, `engine` None)."""

    engine: Any
    choice: ModelChoice
    error: str | None = None


@dataclass
class GenerationStarted(Message):
    """The engine accepted the request: its prompt is `prompt_tokens` long, of which
    `cached_tokens` will come from the KV cache."""

    prompt_tokens: int
    cached_tokens: int = 0


@dataclass
class PromptProgress(Message):
    """Prompt processing so far (posted while a long prompt is being decoded): `done` of
    `total` tokens (`cached` of them reused), at `rate` tok/s. Only the newest matters."""

    done: int
    total: int
    cached: int
    rate: float

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, PromptProgress)


@dataclass
class TokenBatch(Message):
    """The text of all tokens decoded since the last batch (posted every 200 ms), and the
    tokens themselves (with why each was chosen, in the token view)."""

    text: str
    n_tokens: int
    ttft: float | None = None  # engine-side time to first token, once known
    tokens: list[Any] = field(default_factory=list)  # TokenItem
    thinking: str = ""  # a thinking model's thinking text of these tokens
    moved: str = ""  # answer text shown before that turned out to be thinking (a stray closing tag)
    elapsed: float = 0.0  # seconds since the request was sent


@dataclass
class GenerationFinished(Message):
    """The generation ended: `stats` when the engine finished it (any reason), `error` when
    it failed (with or without stats)."""

    stats: Stats | None
    error: str | None = None


@dataclass
class ModelListRead(Message):
    """The model picker's rows, read from disk in a worker."""

    rows: list[Any]
