"""mullama-tui: watch local GGUF models generate, token by token.

The tutorial-compatible API: `from mullama_tui import Model, Context, SamplerParams`.
"""

from .engine.compat import Context, Model
from .engine.types import (ContextOverflowError, FinishReason, InvalidParamsError, ModelLoadError,
                           ModelNotFoundError, MullamaError, Request, SamplerParams, Stats,
                           TokenEvent)

__version__ = "0.1.0"

__all__ = [
    "Context", "ContextOverflowError", "FinishReason", "InvalidParamsError", "Model",
    "ModelLoadError", "ModelNotFoundError", "MullamaError", "Request", "SamplerParams", "Stats",
    "TokenEvent", "__version__",
]
