"""mullama-tui: watch local GGUF models generate, token by token.

The tutorial-compatible API: `from mullama_tui import Model, Context, SamplerParams`.

The package's face is lazy: `Model` and `Context` (which load llama.cpp and numpy), and
the engine's vocabulary, are imported on first use, so `import mullama_tui.anything`
costs only what that module needs (`mullama-tui --help` never loads llama.cpp; see tests/test_imports.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine.compat import Context, Model
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
    if name in __all__:  # the vocabulary: also loaded on first use (`import mullama_tui.cli` needs none of it)
        from .engine import types

        return getattr(types, name)
    raise AttributeError(f"module 'mullama_tui' has no attribute {name!r}")
