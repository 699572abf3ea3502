"""Messages the background workers post to the UI (never one per token: see TokenBatch)."""

from __future__ import annotations

from textual.message import Message

from ..engine.types import Stats


class ModelLoaded(Message):
    def __init__(self, name: str, detail: str) -> None:
        super().__init__()
        self.name = name
        self.detail = detail


class ModelFailed(Message):
    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class ModelLoadProgress(Message):
    """How far the picker's model has loaded (0..1); posted every ~5%."""

    def __init__(self, name: str, fraction: float) -> None:
        super().__init__()
        self.name = name
        self.fraction = fraction


class ModelSwitched(Message):
    """The picker's model is loaded (`engine`), or failed to load (`error`)."""

    def __init__(self, engine: object | None, choice: object, error: str | None = None) -> None:
        super().__init__()
        self.engine = engine
        self.choice = choice
        self.error = error


class GenerationStarted(Message):
    def __init__(self, prompt_tokens: int) -> None:
        super().__init__()
        self.prompt_tokens = prompt_tokens


class TokenBatch(Message):
    """The text of all tokens decoded since the last batch (posted every 200 ms)."""

    def __init__(self, text: str, n_tokens: int, ttft: float | None = None) -> None:
        super().__init__()
        self.text = text
        self.n_tokens = n_tokens
        self.ttft = ttft  # engine-side time to first token, once known


class GenerationFinished(Message):
    def __init__(self, stats: Stats | None, error: str | None = None) -> None:
        super().__init__()
        self.stats = stats
        self.error = error
