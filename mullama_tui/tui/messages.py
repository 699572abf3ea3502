"""Messages the background workers post to the UI: typed, one job each, and never one per
token (see TokenBatch). Dataclasses, so a message says what it carries in one place."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

from ..engine.types import Stats

if TYPE_CHECKING:
    from ..engine.api import Engine
    from ..models.catalog import LocalModel
    from .stream import News


@dataclass(frozen=True)
class ModelChoice:
    """What the model picker returns: the model to load, and whether to save it as the default."""

    name: str
    path: Path
    make_default: bool = False


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

    engine: Engine | None
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
    """One frame of streaming (see `tui/stream.py`): each generation's text and tokens (with
    why each was chosen, in the token view) since the last frame; at most 5 a second."""

    news: list[News]

    @property
    def n_tokens(self) -> int:
        return sum(n.n_tokens for n in self.news)


@dataclass
class GenerationFinished(Message):
    """The generation ended: `stats` when the engine finished it (any reason), `error` when
    it failed (with or without stats)."""

    stats: Stats | None
    error: str | None = None


@dataclass
class ModelListRead(Message):
    """The model picker's rows, read from disk in a worker."""

    rows: list[LocalModel]
