"""Past conversations: one row each (titled by its first prompt), its turns, branches and
comparisons inside it; search, reopen, delete, export to Markdown or JSON."""

from __future__ import annotations

import datetime
import time
from dataclasses import dataclass, field

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Input

from ...config import data_dir
from ...engine.session import SavedState, SessionStore
from ...history import History, HistoryError, RunRecord
from ..widgets.prompt import with_blink

# the columns beside the title, and their widths (the title gets what is left): from 110
# columns on, and a narrower set below that (80 columns: the date alone, a shorter model name)
COLUMNS = [("when", 11), ("model", 22), ("turns", 5), ("tokens", 6), ("resume", 12)]
NARROW_COLUMNS = [("when", 5), ("model", 14), ("turns", 5), ("tokens", 6), ("resume", 9)]
WIDE_FROM = 110


@dataclass
class Conversation:
    """The runs of one conversation (a chat's turns, its branches and edits), or one
    comparison, or one run saved before conversations had names."""

    key: str
    runs: list[RunRecord] = field(default_factory=list)  # oldest first

    @property
    def latest(self) -> RunRecord:
        """What reopening the conversation shows: its newest run holds the whole transcript."""
        return self.runs[-1]

    @property
    def title(self) -> str:
        first = self.runs[0]
        text = next((m["content"] for m in first.messages if m.get("role") == "user"), first.prompt)
        text = " ".join(text.split())
        return ("compare: " if first.kind == "compare" else "") + (text or "(empty prompt)")

    @property
    def turns(self) -> int:
        return max(sum(1 for m in r.messages if m.get("role") == "user") or 1 for r in self.runs)

    @property
    def branches(self) -> int:
        return sum(1 for r in self.runs if "branch" in r.params or "edited" in r.params)

    @property
    def tokens(self) -> int:
        total = 0
        for r in self.runs:
            if r.kind == "compare":
                total += sum(int((p.get("stats") or {}).get("generated_tokens") or 0)
                             for p in r.stats.get("panes", []))
            else:
                total += int(r.stats.get("generated_tokens") or 0)
        return total

    @property
    def conversation(self) -> str | None:
        key = self.latest.params.get("conversation")
        return key if isinstance(key, str) else None


def group(records: list[RunRecord]) -> list[Conversation]:
    """Runs by conversation, the conversation used last first."""
    by_key: dict[str, Conversation] = {}
    for r in sorted(records, key=lambda r: (r.created, r.id or 0)):
        key = r.params.get("conversation")
        key = key if isinstance(key, str) and key else f"run-{r.id}"
        by_key.setdefault(key, Conversation(key)).runs.append(r)
    return sorted(by_key.values(), key=lambda c: (c.latest.created, c.latest.id or 0), reverse=True)


def short_model(name: str) -> str:
    """Rows saved before models had short names carry '<name> (98 MB, ..., CPU)'."""
    return name.split(" (", 1)[0]


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(1, width - 1)] + "…"


class HistoryScreen(Screen[RunRecord | None]):
    BINDINGS = [
        Binding("escape", "dismiss(None)", "Back"),
        Binding("enter", "open", "Reopen", priority=False),
        # priority: the table's own Left/Right would scroll it sideways (the columns fit)
        Binding("right", "expand", "Runs", priority=True),
        Binding("left", "collapse", "Fold", show=False, priority=True),
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
        self._armed: tuple[str, float] | None = None  # (row key, when) of a first Del: a second deletes
        self.conversations: list[Conversation] = []
        self.open_keys: set[str] = set()  # conversations whose runs are listed under them
        self.rows: list[tuple[Conversation, RunRecord | None]] = []  # what each table row is
        self._search = ""

    def compose(self) -> ComposeResult:
        yield Header()
        yield with_blink(Input(placeholder="search prompts and outputs (or just type)", id="search",
                               select_on_focus=False),
                         self.app.settings.cursor_blink)  # type: ignore[attr-defined]
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Footer(compact=True, show_command_palette=False)  # its keys first (Ctrl+P still opens it)

    def on_mount(self) -> None:
        self.sub_title = "Enter reopens · → its runs"
        table = self.query_one(DataTable)
        for name, width in self._columns():
            table.add_column(name, width=width, key=name)
        table.add_column("title", width=self._title_width(), key="title")
        self.reload()
        table.focus()

    @property
    def wide(self) -> bool:
        return self.app.size.width >= WIDE_FROM

    def _columns(self) -> list[tuple[str, int]]:
        return COLUMNS if self.wide else NARROW_COLUMNS

    def _title_width(self) -> int:
        table = self.query_one(DataTable)
        width = self.app.size.width - 2  # the table's scrollbar
        return max(16, width - sum(w + 2 * table.cell_padding for _, w in self._columns()) - 2 * table.cell_padding)

    def on_resize(self, event: events.Resize) -> None:
        table = self.query_one(DataTable)
        for name, width in [*self._columns(), ("title", self._title_width())]:
            column = table.columns.get(name)  # type: ignore[call-overload]
            if column is not None:
                column.width = width
        self._fill()

    def reload(self, search: str | None = None) -> None:
        if search is not None:
            self._search = search
        self.conversations = group(self.history.list(self._search))
        self._fill()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("expand", "collapse"):  # in the search box, Left and Right move its cursor
            return self.focused is self.query_one(DataTable)
        return True

    def _fill(self, keep: tuple[Conversation, RunRecord | None] | None = None) -> None:
        table = self.query_one(DataTable)
        keep = keep or self._selected_row()
        table.clear()
        self.rows = []
        width = self._title_width()
        model_width = dict(self._columns())["model"]
        for c in self.conversations:
            when = datetime.datetime.fromtimestamp(c.latest.created).strftime("%m-%d %H:%M" if self.wide else "%m-%d")
            turns = f"{c.turns}" + (f"+{c.branches}" if c.branches else "")
            marker = "▾ " if c.key in self.open_keys else ("▸ " if len(c.runs) > 1 else "  ")
            table.add_row(when, clip(short_model(c.latest.model), model_width), turns, str(c.tokens),
                          self._resume(c), Text(clip(marker + c.title, width)), key=c.key)
            self.rows.append((c, None))
            if c.key in self.open_keys:
                for r in reversed(c.runs):
                    table.add_row(*self._run_cells(r, width), key=f"{c.key}/{r.id}")
                    self.rows.append((c, r))
        if keep is not None:
            want = (keep[0].key, keep[1].id if keep[1] is not None else None)
            for i, (conv, run) in enumerate(self.rows):
                if (conv.key, run.id if run is not None else None) == want:
                    table.move_cursor(row=i)
                    break

    def _run_cells(self, r: RunRecord, width: int) -> list[object]:
        when = datetime.datetime.fromtimestamp(r.created).strftime("%H:%M:%S" if self.wide else "%H:%M")
        turn = sum(1 for m in r.messages if m.get("role") == "user") or 1
        what = ("compare" if r.kind == "compare" else "branch" if "branch" in r.params
                else "edit" if "edited" in r.params else f"turn {turn}")
        prompt = r.messages[-1]["content"] if r.messages else r.prompt
        prompt = " ".join(prompt.split())
        tokens = r.stats.get("generated_tokens", "")
        return [when if not self.wide else f"  {when}", Text(clip(f"↳ {what}", 14), style="dim"), "", str(tokens),
                r.finish_reason or "", Text(clip(f"   {prompt}", width), style="dim")]

    def _saved(self, c: Conversation) -> SavedState | None:
        key = c.conversation
        return self.sessions.get(key) if self.sessions is not None and key else None

    def _resume(self, c: Conversation) -> str:
        """'instant 12 MB' when the conversation's KV cache is saved: a follow-up restores it."""
        saved = self._saved(c)
        if saved is None:
            return ""
        return f"instant {saved.bytes / 1e6:.0f} MB" if self.wide else f"{saved.bytes / 1e6:.0f} MB"

    def _selected_row(self) -> tuple[Conversation, RunRecord | None] | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row is None or not 0 <= table.cursor_row < len(self.rows):
            return None
        return self.rows[table.cursor_row]

    def _selected(self) -> RunRecord | None:
        """The run a key acts on: the row's own run, or a conversation's newest."""
        row = self._selected_row()
        if row is None:
            return None
        return row[1] if row[1] is not None else row[0].latest

    def action_expand(self) -> None:
        row = self._selected_row()
        if row is not None and len(row[0].runs) > 1 and row[0].key not in self.open_keys:
            self.open_keys.add(row[0].key)
            self._fill()

    def action_collapse(self) -> None:
        row = self._selected_row()
        if row is not None and row[0].key in self.open_keys:
            self.open_keys.discard(row[0].key)
            self._fill(keep=(row[0], None))  # the cursor goes back to the conversation's row

    def action_forget_kv(self) -> None:
        """Delete the saved KV cache of the selected conversation (its text stays)."""
        row = self._selected_row()
        saved = self._saved(row[0]) if row is not None else None
        if saved is None or self.sessions is None:
            self.notify("this conversation has no saved KV cache", severity="warning")
            return
        self.sessions.forget(saved.key)
        self.reload()
        self.notify(f"forgot the saved KV cache ({saved.bytes / 1e6:.0f} MB); the conversation's text stays")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.reload(event.value)

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
        """Del asks first: a second Del on the same row within 4 s deletes it (a
        conversation's row: all its runs; a run's row: that run)."""
        row = self._selected_row()
        if row is None:
            return
        c, run = row
        key = c.key if run is None else f"{c.key}/{run.id}"
        doomed = c.runs if run is None else [run]
        now = time.monotonic()
        if self._armed is None or self._armed[0] != key or now - self._armed[1] > 4.0:
            self._armed = (key, now)
            what = (f"the conversation {clip(c.title, 40)!r} ({len(doomed)} run{'s' * (len(doomed) > 1)})"
                    if run is None else f"run {run.id}")
            self.notify(f"press Del again to delete {what}", severity="warning", timeout=4)
            return
        self._armed = None
        try:
            for r in doomed:
                if r.id is not None:
                    self.history.delete(r.id)
        except HistoryError as e:
            self.notify(str(e), title="Cannot delete", severity="error", timeout=8)
            return
        self.reload()
        self.notify(f"deleted {len(doomed)} run{'s' * (len(doomed) > 1)}")

    def action_export(self, fmt: str) -> None:
        rec = self._selected()
        if rec is None:
            return
        folder = data_dir() / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"run-{rec.id}.{fmt}"
        path.write_text(rec.to_markdown() if fmt == "md" else rec.to_json(), encoding="utf-8")
        self.notify(f"exported to {path}")
