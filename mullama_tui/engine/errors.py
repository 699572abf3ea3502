"""The errors the engine raises on purpose, and the whole-number check that raises one.

Apart from the rest of the vocabulary (engine/types.py, which re-exports them) so that
the command line can catch them without building a dozen dataclasses first: `--help`
is answered before any of those is needed.
"""

from __future__ import annotations


class MullamaError(Exception):
    """Base class of every error the engine raises on purpose."""


class ModelNotFoundError(MullamaError):
    """No model file at the given path, or no model configured at all."""


class ModelLoadError(MullamaError):
    """The file exists but llama.cpp cannot load it (not a GGUF, truncated, ...)."""


class ContextOverflowError(MullamaError):
    """The prompt does not fit in the context window."""


class InvalidParamsError(MullamaError, ValueError):
    """A sampler or request parameter is out of range."""


def is_whole(value: object, least: int | None = None) -> bool:
    """A whole number (an int, and not a bool: `True` is no token count), at least `least`."""
    return isinstance(value, int) and not isinstance(value, bool) and (least is None or value >= least)


def require_whole(name: str, value: object, least: int) -> None:
    """Raise InvalidParamsError unless `value` is a whole number >= `least`."""
    if not is_whole(value, least):
        raise InvalidParamsError(f"{name}={value!r}: must be a whole number >= {least}")


class EngineClosedError(MullamaError):
    """The engine was shut down; no more requests are accepted."""


class QueueFullError(MullamaError):
    """Too many requests are waiting already (the server turns this into a 503)."""
