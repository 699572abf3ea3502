"""mullama-tui: watch local GGUF models generate, token by token.

The tutorial-compatible API: `from mullama_tui import Model, Context, SamplerParams`.

The package's face is lazy: `Model` and `Context` (which load llama.cpp and numpy) are
imported on first use, so `import mullama_tui.anything` costs only what that module
needs (`mullama-tui --help` never loads llama.cpp; see tests/test_imports.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .engine.types import (
    ContextOverflowError,
    FinishReason,
    InvalidParamsError,
    ModelLoadError,
    ModelNotFoundError,
    MullamaError,
    Request,
    SamplerParams,
    Stats,
    TokenEvent,
)

if TYPE_CHECKING:
    from .engine.compat import Context, Model

__all__ = [
    "Context", "ContextOverflowError", "FinishReason", "InvalidParamsError", "Model",
    "ModelLoadError", "ModelNotFoundError", "MullamaError", "Request", "SamplerParams", "Stats",
    "TokenEvent", "__version__",
]


def version() -> str:
    """The installed distribution's version (pyproject.toml is the one place it is written)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("mullama-tui")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def __getattr__(name: str) -> Any:
    if name in ("Model", "Context"):
        from .engine import compat

        return getattr(compat, name)
    if name == "__version__":
        return version()
    raise AttributeError(f"module 'mullama_tui' has no attribute {name!r}")
