"""What every backend offers its front ends: the `Engine` protocol.

The TUI, the CLI, the console and the server hold an `Engine`, never a `LocalEngine` or a
`RemoteEngine` by name, so a front end works the same on a local GGUF and on an
OpenAI-compatible server, and type-checks against the one contract both keep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .generation import Generation
    from .threads import ThreadChoice
    from .types import ModelInfo, Placement, Request


class EngineModel(Protocol):
    """The model an engine serves, as front ends see it."""

    @property
    def info(self) -> ModelInfo: ...

    @property
    def placement(self) -> Placement | None:
        """Where its layers run (None for a remote model: the server knows, not us)."""
        ...


class Engine(Protocol):
    """Requests in, `Generation` handles out."""

    @property
    def model(self) -> EngineModel: ...

    @property
    def n_ctx(self) -> int:
        """Tokens one sequence holds (0 where the backend does not say)."""
        ...

    def submit(self, request: Request) -> Generation:
        """Queue a request; returns at once. Raises a `MullamaError` on bad input."""
        ...

    def clear_cache(self) -> None: ...

    def thread_choice(self) -> ThreadChoice | None:
        """The CPU threads it decodes on now; None where no local CPU decodes."""
        ...

    def set_threads(self, n: int | None) -> None:
        """A fixed thread count from the next step on, or None: chosen while it runs
        (nothing to do where no local CPU decodes)."""
        ...

    def close(self) -> None: ...
