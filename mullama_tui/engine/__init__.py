"""The generation engine: requests in, token events out. Knows nothing of any UI.

Its face is lazy, as the package's is: `from mullama_tui.engine import Generation` loads
the generation handle (and asyncio) on first use, and its vocabulary too, so importing
`engine.errors` (what the CLI does first) costs only the errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .generation import Generation
    from .types import (
        ContextOverflowError,
        EngineClosedError,
        FinishReason,
        InvalidParamsError,
        ModelLoadError,
        ModelNotFoundError,
        MullamaError,
        QueueFullError,
        Request,
        SamplerParams,
        Stats,
        TokenEvent,
    )

__all__ = [
    "ContextOverflowError", "EngineClosedError", "FinishReason", "Generation",
    "InvalidParamsError", "ModelLoadError", "ModelNotFoundError", "MullamaError", "QueueFullError",
    "Request", "SamplerParams", "Stats", "TokenEvent",
]


def __getattr__(name: str) -> Any:
    if name == "Generation":
        from .generation import Generation

        return Generation
    if name in __all__:
        from . import types

        return getattr(types, name)
    raise AttributeError(f"module 'mullama_tui.engine' has no attribute {name!r}")
