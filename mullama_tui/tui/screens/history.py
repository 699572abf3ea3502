"""Past runs: list, search, reopen, delete, export to Markdown or JSON."""

from __future__ import annotations

import datetime
import time

from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from ...config import data_dir
from ...engine.session import SavedState, SessionStore
from ...history import History, HistoryError, RunRecord
from ..widgets.prompt import with_blink


class HistoryScreen(Screen[RunRecord | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Back"),
        Binding("enter", "open", "Reopen", priority=False),
        Binding("delete", "delete", "Delete"),
        # priority: these work wherever the focus is (the search box has its own ctrl+e/ctrl+k)
        Binding("ctrl+k", "forget_kv", "Forget KV", priority=True),
        Binding("ctrl+e", "export('md')", "Export .md", priority=True),
        Binding("ctrl+j", "export('json')", "Export .json", show=False, priority=True),
    ]

    def __init__(self, history: History, sessions: SessionStore | None = None) -> None:
        """`sessions`: the saved conversations' KV caches (rows say which resume at once)."""
        super().__init__()
        self.history = history
        self.sessions = sessions
        self._armed: tuple[int, float] | None = None  # (run id, when) of a first Del: a second deletes
        self.records: list[RunRecord] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield with_blink(Input(placeholder="search prompts and outputs (or just type)", id="search",
                               select_on_focus=False),
                         self.app.settings.cursor_blink)  # type: ignore[attr-defined]
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("id", "when", "model", "mode", "finish", "tokens", "resume", "prompt")
        self.reload()
        table.focus()

    def reload(self, search: str = "") -> None:
        table = self.query_one(DataTable)
        table.clear()
        self.records = self.history.list(search)
        for r in self.records:
            when = datetime.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M")
            prompt = (r.messages[-1]["content"] if r.messages else r.prompt).replace("\n", " ")
            table.add_row(str(r.id), when, r.model, r.mode, r.finish_reason or "",
                          str(r.stats.get("generated_tokens", "")), self._resume(r), prompt[:60], key=str(r.id))

    def _saved(self, rec: RunRecord) -> SavedState | None:
        key = rec.params.get("conversation")
        return self.sessions.get(key) if self.sessions is not None and isinstance(key, str) else None

    def _resume(self, rec: RunRecord) -> str:
        """'instant 12 MB' when the conversation's KV cache is saved: a follow-up restores it."""
        saved = self._saved(rec)
        return f"instant {saved.bytes / 1e6:.0f} MB" if saved is not None else ""

    def action_forget_kv(self) -> None:
        """Delete the saved KV cache of the selected run's conversation (its text stays)."""
        rec = self._selected()
        saved = self._saved(rec) if rec is not None else None
        if saved is None or self.sessions is None:
            self.notify("this run's conversation has no saved KV cache", severity="warning")
            return
        self.sessions.forget(saved.key)
        self.reload(self.query_one("#search", Input).value)
        self.notify(f"forgot the saved KV cache ({saved.bytes / 1e6:.0f} MB); the conversation's text stays")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.reload(event.value)

    def _selected(self) -> RunRecord | None:
        table = self.query_one(DataTable)
        if not self.records or table.cursor_row is None or table.cursor_row >= len(self.records):
            return None
        return self.records[table.cursor_row]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        rec = self._selected()
        if rec is not None:
            self.dismiss(rec)

    def on_key(self, event: events.Key) -> None:
        """Type to search: a character typed while the list has the focus goes to the search box."""
        if event.is_printable and event.character and self.focused is self.query_one(DataTable):
            search = self.query_one("#search", Input)
            search.focus()
            search.insert_text_at_cursor(event.character)
            event.stop()
            event.prevent_default()

    def action_delete(self) -> None:
        """Del asks first: a second Del on the same run within 4 s deletes it."""
        rec = self._selected()
        if rec is None or rec.id is None:
            return
        now = time.monotonic()
        if self._armed is None or self._armed[0] != rec.id or now - self._armed[1] > 4.0:
            self._armed = (rec.id, now)
            prompt = (rec.messages[-1]["content"] if rec.messages else rec.prompt).replace("\n", " ")[:40]
            self.notify(f"press Del again to delete run {rec.id} ({prompt!r})", severity="warning", timeout=4)
            return
        self._armed = None
        if rec is not None and rec.id is not None:
            try:
                self.history.delete(rec.id)
            except HistoryError as e:
                self.notify(str(e), title="Cannot delete", severity="error", timeout=8)
                return
            self.reload(self.query_one("#search", Input).value)
            self.notify(f"deleted run {rec.id}")

    def action_export(self, fmt: str) -> None:
        rec = self._selected()
        if rec is None:
            return
        folder = data_dir() / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"run-{rec.id}.{fmt}"
        path.write_text(rec.to_markdown() if fmt == "md" else rec.to_json(), encoding="utf-8")
        self.notify(f"exported to {path}")
