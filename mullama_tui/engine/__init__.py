"""The generation engine: requests in, token events out. Knows nothing of any UI."""

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
