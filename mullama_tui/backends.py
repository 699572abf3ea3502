"""Composing an engine from what the user chose: the local engine on a GGUF (found
through the model store and config), or an OpenAI-compatible server.

This sits above the engine (it reads the model store; the engine never does) and
imports each backend only when it is chosen, so a remote-only session never loads
llama.cpp. Front ends call `open_engine` and get an `Engine`; they never care which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .engine.errors import InvalidParamsError

if TYPE_CHECKING:  # `models` and `show` read a BackendChoice and load no engine's vocabulary
    from .engine.api import Engine
    from .engine.remote import RemoteEngine
    from .engine.session import SessionStore


@dataclass
class BackendChoice:
    backend: str = "local"
    base_url: str = ""
    api_key: str = ""
    remote_model: str = ""
    timeout: float = 60.0

    @property
    def remote(self) -> bool:
        return self.backend == "openai"


SERVER = "openai:"  # a compare pane's model that is an OpenAI-compatible server: "openai:http://host:8080/v1"


def is_server(model: str | None) -> bool:
    return model is not None and model.startswith(SERVER)


def open_pane_engine(model: str, *, n_ctx: int, n_parallel: int, n_threads: int | None = None,
                     n_gpu_layers: int | None = None, timeout: float = 60.0) -> Engine:
    """The engine of a compare pane's own model (the TUI's and the console's): a server
    for `openai:URL` (its own model, `timeout` for its first byte), else a local GGUF."""
    if is_server(model):
        return open_remote(BackendChoice("openai", base_url=model[len(SERVER):], timeout=timeout))
    return open_engine(BackendChoice("local"), model, n_ctx=n_ctx, n_parallel=n_parallel, n_threads=n_threads,
                       n_gpu_layers=n_gpu_layers)


def open_engine(choice: BackendChoice, model_arg: str | None, default_model: str | None = None, *,
                n_ctx: int = 4096, n_parallel: int = 4, n_threads: int | None = None,
                max_queue: int = 64, n_gpu_layers: int | None = None,
                sessions: SessionStore | None = None) -> Engine:
    """The remote backend for `--backend openai`, else a local engine on MODEL (or the
    default): `n_gpu_layers` None offloads every layer where the build can; `sessions`:
    where a local engine saves and restores conversations' KV (a remote one has none)."""
    if choice.backend == "openai":
        return open_remote(choice, model_arg)
    if choice.backend != "local":
        raise InvalidParamsError(f"--backend {choice.backend!r}: use 'local' or 'openai'")
    from .engine.local import LocalEngine
    from .models.resolve import resolve_model

    path = resolve_model(model_arg, default_model)
    return LocalEngine(path, n_ctx=n_ctx, n_parallel=n_parallel, n_threads=n_threads, max_queue=max_queue,
                       n_gpu_layers=n_gpu_layers, sessions=sessions)


def open_remote(choice: BackendChoice, model_arg: str | None = None) -> RemoteEngine:
    """The OpenAI-compatible server of `--base-url` (which also lists its models)."""
    from .engine.remote import RemoteEngine, RemoteError

    if not choice.base_url:
        raise RemoteError("--backend openai needs --base-url, e.g. http://127.0.0.1:8080/v1")
    return RemoteEngine(choice.base_url, api_key=choice.api_key or None,
                        model=choice.remote_model or model_arg or None, first_byte_timeout=choice.timeout)
