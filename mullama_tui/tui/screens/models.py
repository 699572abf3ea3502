"""The model picker: local models with their size and details; Enter loads one, D loads it
and makes it the default. The list is read in a thread worker (each row's GGUF header is
read from disk), so the screen opens at once even with many or slow files."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from ...models.catalog import FROM, LocalModel, local_models
from ...models.report import show_lines
from ..messages import ModelChoice, ModelListRead
from .base import WorkerScreen


class ModelsScreen(WorkerScreen[ModelChoice | None]):
    DEFAULT_CSS = """
    ModelsScreen #models-note { color: $text-muted; padding: 0 1; }
    ModelsScreen #models { height: auto; max-height: 60%; }
    ModelsScreen #model-detail { height: auto; border: round $primary; padding: 0 1; margin-top: 1; }
    """
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Back"),
        Binding("enter", "choose(False)", "Load", priority=True),
        Binding("d", "choose(True)", "Load + make default"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, current: Path | None, default_model: str | None, for_pane: int | None = None) -> None:
        """`for_pane`: chosen for one compare pane (its number), not loaded as the app's model."""
        super().__init__()
        self.for_pane = for_pane
        self.current = current.resolve() if current else None
        self.default_model = default_model
        self.rows: list[LocalModel] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the model files…", id="models-note", markup=False)
        yield DataTable(id="models", cursor_type="row", zebra_stripes=True)
        yield Static("", id="model-detail", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("name", "from", "size", "quant", "params", "context", "")
        self.query_one(DataTable).focus()
        self.action_refresh()

    def action_refresh(self) -> None:
        self._read_models()

    @work(thread=True, exclusive=True, group="model-list", exit_on_error=False, description="read the model files")
    def _read_models(self) -> None:
        self.post_message(ModelListRead(local_models(self.default_model, sources=self.app.settings.model_sources)))  # type: ignore[attr-defined]

    def worker_failed(self, group: str, error: str) -> None:
        self.query_one("#models-note", Static).update(f"could not read the models folder: {error}")

    def on_model_list_read(self, msg: ModelListRead) -> None:
        rows: list[LocalModel] = msg.rows
        self.rows = rows
        table = self.query_one(DataTable)
        table.clear()
        for r in rows:
            i = r.info
            size = r.path.stat().st_size if r.path.exists() else 0
            marks = [m for m, on in (("current", self.current == r.path.resolve()), ("default", r.is_default),
                                     ("unreadable", bool(r.error))) if on]
            table.add_row(Text(r.name), FROM.get(r.kind, r.kind), f"{size / 1e6:,.0f} MB", i.quantization if i else "?",
                          i.params_label if i else "?", f"{i.context_length:,}" if i else "?",
                          ", ".join(marks), key=str(r.path))
        note = (f"{len(rows)} local model{'s' if len(rows) != 1 else ''} · Enter loads (the current one "
                f"keeps working until the new one is ready) · D loads and saves it as the default · "
                f"`mullama-tui pull NAME` adds more") if self.for_pane is None else (
            f"{len(rows)} local model{'s' if len(rows) != 1 else ''} · Enter: the model of compare pane "
            f"{self.for_pane} (the other panes keep theirs) · `mullama-tui pull NAME` adds more")
        self.query_one("#models-note", Static).update(note if rows else
                                                       "no local models: run `mullama-tui pull llama3.2:1b`")
        self._detail()

    def _selected(self) -> LocalModel | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or table.cursor_row >= len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        m = self._selected()
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", justify="right")
        grid.add_column(overflow="fold")
        for key, value in show_lines(m) if m is not None else []:
            grid.add_row(key, Text(value))
        detail = self.query_one("#model-detail", Static)
        detail.update(grid)
        detail.display = m is not None

    def action_choose(self, make_default: bool) -> None:
        m = self._selected()
        if m is None:
            return
        if m.error:
            self.notify(m.error, title="Cannot load this file", severity="error")
            return
        self.dismiss(ModelChoice(m.name, m.path, make_default))
