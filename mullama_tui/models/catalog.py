"""The models on this machine: pulled ones, the configured default and the bundled SmolLM2,
each described from its GGUF header (what `models`, `show` and the TUI picker list)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import cache_dir
from ..engine.errors import MullamaError
from .discover import SOURCES, discover
from .gguf import GGUFInfo, HeaderCache, read_gguf
from .resolve import BUNDLED_NAME, bundled_model, resolve_model
from .store import ModelStore, StoredModel


@dataclass
class LocalModel:
    """One model file and what we know of it."""

    name: str  # what to pass as MODEL to use it
    path: Path
    # "pulled", "bundled", "file" (a configured default outside the store), or the tool that
    # downloaded it: "ollama", "hf", "lmstudio", "llama.cpp" (see discover.py)
    kind: str
    is_default: bool = False
    info: GGUFInfo | None = None
    error: str | None = None  # why the header could not be read
    entry: StoredModel | None = None

    def describe(self, headers: HeaderCache | None = None) -> None:
        """Read the GGUF header (tens of milliseconds: a vocabulary is stepped over string
        by string), or take it from `headers` if the file has not changed since; a bad
        file records its error instead."""
        try:
            self.info = headers.read(self.path) if headers is not None else read_gguf(self.path)
        except MullamaError as e:
            self.error = str(e)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "path": str(self.path), "kind": self.kind,
                             "default": self.is_default, "size": self.path.stat().st_size
                             if self.path.exists() else None}
        if self.info is not None:
            i = self.info
            d.update(architecture=i.architecture, quantization=i.quantization, parameters=i.n_params,
                     context_length=i.context_length, chat_template=i.has_chat_template,
                     model_name=i.name)
        d["from"] = FROM.get(self.kind, self.kind)
        if self.entry is not None:
            d.update(url=self.entry.url, sha256=self.entry.sha256, pulled_at=self.entry.pulled_at)
        if self.error:
            d["error"] = self.error
        return d


def _default_path(default: str | None) -> Path | None:
    try:
        return resolve_model(None, default).resolve()
    except MullamaError:
        return None


FROM = {"pulled": "pulled", "bundled": "bundled", "file": "file", "ollama": "Ollama", "hf": "HF cache",
        "lmstudio": "LM Studio", "llama.cpp": "llama.cpp"}


def local_models(default: str | None, describe: bool = True, sources: list[str] | None = None,
                 problems: list[str] | None = None) -> list[LocalModel]:
    """Pulled models, the configured default (if it is a file outside the store), the
    bundled model, then what other tools downloaded (`sources`, default: all; see
    discover.py); the one used when no MODEL is given is marked default. What could not
    be read goes to `problems`, one line each."""
    store = ModelStore()
    rows = [LocalModel(e.name, store.path_of(e), "pulled", entry=e) for e in store.entries()]
    bundled = bundled_model()
    if bundled is not None:
        rows.append(LocalModel(BUNDLED_NAME, bundled, "bundled"))
    known = {r.path.resolve(): r.kind for r in rows}
    for f in discover(tuple(SOURCES if sources is None else sources), problems):
        # one file seen by two tools (a link) is listed once; two names of one blob in the
        # same tool (Ollama's `llama3.2` and `llama3.2:3b`) are both listed, as that tool does
        real = f.path.resolve()
        if known.setdefault(real, f.source) == f.source:
            rows.append(LocalModel(f.name, f.path, f.source))
    chosen = _default_path(default)
    if chosen is not None and not any(r.path.resolve() == chosen for r in rows):
        rows.insert(0, LocalModel(str(chosen), chosen, "file"))
    headers = HeaderCache(cache_dir() / "gguf-headers.json") if describe else None
    for r in rows:
        r.is_default = chosen is not None and r.path.resolve() == chosen
        if headers is not None:
            r.describe(headers)
    if headers is not None:
        headers.save()
    return rows


def find_local(name: str | None, default: str | None) -> LocalModel:
    """The model `name` refers to (None = the default), described; ModelNotFoundError if none."""
    path = resolve_model(name, default).resolve()
    for row in local_models(default, describe=False):
        if row.path.resolve() == path:
            break
    else:
        row = LocalModel(name or str(path), path, "file", is_default=path == _default_path(default))
    headers = HeaderCache(cache_dir() / "gguf-headers.json")
    row.describe(headers)
    headers.save()
    return row
