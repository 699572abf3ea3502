"""Past runs: list, search, reopen, delete, export to Markdown or JSON."""

from __future__ import annotations

import datetime

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from ...config import data_dir
from ...history import History, HistoryError, RunRecord
from ..widgets.prompt import with_blink


class HistoryScreen(Screen[RunRecord | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Back"),
        Binding("enter", "open", "Reopen", priority=False),
        Binding("delete", "delete", "Delete"),
        Binding("ctrl+e", "export('md')", "Export .md"),
        Binding("ctrl+j", "export('json')", "Export .json", show=False),
    ]

    def __init__(self, history: History) -> None:
        super().__init__()
        self.history = history
        self.records: list[RunRecord] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield with_blink(Input(placeholder="search prompts and outputs", id="search"),
                         self.app.settings.cursor_blink)  # type: ignore[attr-defined]
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("id", "when", "model", "mode", "finish", "tokens", "prompt")
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
                          str(r.stats.get("generated_tokens", "")), prompt[:60], key=str(r.id))

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

    def action_delete(self) -> None:
        rec = self._selected()
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
