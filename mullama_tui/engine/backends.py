"""Choosing a backend: the local engine on a GGUF, or an OpenAI-compatible server.

Front ends call `open_engine` and get something with `submit(Request) -> Generation`,
`clear_cache()`, `close()`, `n_ctx` and `model.info`; they never care which it is.
"""

from __future__ import annotations

from dataclasses import dataclass

from .local import LocalEngine
from .remote import RemoteEngine, RemoteError
from .types import InvalidParamsError

Engine = LocalEngine | RemoteEngine


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


def open_engine(choice: BackendChoice, model_arg: str | None, default_model: str | None = None, *,
                n_ctx: int = 4096, n_parallel: int = 4, n_threads: int | None = None,
                max_queue: int = 64, n_gpu_layers: int | None = None) -> Engine:
    """The remote backend for `--backend openai`, else a local engine on MODEL (or the
    default): `n_gpu_layers` None offloads every layer where the build can."""
    if choice.backend == "openai":
        if not choice.base_url:
            raise RemoteError("--backend openai needs --base-url, e.g. http://127.0.0.1:8080/v1")
        return RemoteEngine(choice.base_url, api_key=choice.api_key or None,
                            model=choice.remote_model or model_arg or None,
                            first_byte_timeout=choice.timeout)
    if choice.backend != "local":
        raise InvalidParamsError(f"--backend {choice.backend!r}: use 'local' or 'openai'")
    from ..models.resolve import resolve_model

    path = resolve_model(model_arg, default_model)
    return LocalEngine(path, n_ctx=n_ctx, n_parallel=n_parallel, n_threads=n_threads, max_queue=max_queue,
                       n_gpu_layers=n_gpu_layers)
