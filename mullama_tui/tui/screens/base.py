"""What every screen that runs workers shares: their state changes go to the app's one
handler (`MullamaApp.handle_worker_error`), because Textual delivers `Worker.StateChanged`
to the worker's own node only (it does not bubble)."""

from __future__ import annotations

from typing import TypeVar

from textual import on
from textual.screen import Screen
from textual.worker import Worker

R = TypeVar("R")


class WorkerScreen(Screen[R]):
    """A screen whose crashed workers are handled in one place; it ends its own run as
    failed in `worker_failed(group, error)`."""

    @on(Worker.StateChanged)
    def _forward_worker_state(self, event: Worker.StateChanged) -> None:
        self.app.handle_worker_error(event)  # type: ignore[attr-defined]

    def worker_failed(self, group: str, error: str) -> None:
        """Called by the app when one of this screen's workers raised."""
