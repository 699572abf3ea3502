"""The arena's standings: every model and setting that blind votes ranked, by win rate head
to head, with its number of games and a 95% (Wilson) interval; below, the votes themselves,
newest first. Enter on a vote reopens that comparison side by side. Returns the chosen
comparison's record, or None.

Read in a thread worker: the history may be large, and the screen opens at once."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Static

from ...history import History, HistoryError, RunRecord, Standing, standings
from ...panes import contender
from .base import WorkerScreen

BAR = 20  # columns of the win-rate bar


def rate_bar(s: Standing) -> Text:
    """The win rate as a bar, with its interval shaded around it: [####==   ] (the bar is
    the rate, the shade how far the interval says it may really be)."""
    low, high = s.interval()
    filled, lo, hi = round(s.rate * BAR), round(low * BAR), round(high * BAR)
    bar = Text()
    for i in range(BAR):
        if i < filled:
            bar.append("█", style="green" if i >= lo else "bold green")
        elif i < hi:
            bar.append("░", style="dim green")
        else:
            bar.append("·", style="dim")
    return bar


class StandingsRead(Message):
    def __init__(self, table: list[Standing], votes: list[RunRecord], error: str | None = None) -> None:
        super().__init__()
        self.table, self.votes, self.error = table, votes, error


class ArenaScreen(WorkerScreen[RunRecord | None]):
    DEFAULT_CSS = """
    ArenaScreen #arena-note { color: $text-muted; padding: 0 1; height: auto; }
    ArenaScreen #standings { height: auto; max-height: 50%; }
    ArenaScreen #votes-title { padding: 1 1 0 1; color: $text-muted; }
    ArenaScreen #votes { height: 1fr; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "Back"),
                Binding("enter", "open", "Reopen side by side", priority=True),
                Binding("r", "refresh", "Refresh")]

    def __init__(self, history: History | None = None) -> None:
        super().__init__(id="arena")
        self.history = history
        self.votes: list[RunRecord] = []
        self.table: list[Standing] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("reading the votes…", id="arena-note", markup=False)
        yield DataTable(id="standings", cursor_type="row", zebra_stripes=True)
        yield Static("votes, newest first (Enter reopens one side by side)", id="votes-title", markup=False)
        yield DataTable(id="votes", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "arena"
        self.query_one("#standings", DataTable).add_columns("model · settings", "win rate", "", "95% interval",
                                                            "wins", "games")
        self.query_one("#votes", DataTable).add_columns("when", "vote", "winner", "prompt", "against")
        self.query_one("#votes", DataTable).focus()
        self.action_refresh()

    def action_refresh(self) -> None:
        self._read()

    @work(thread=True, exclusive=True, group="arena", exit_on_error=False, description="read the votes")
    def _read(self) -> None:
        try:
            history = self.history or History()
            votes = history.votes()
            self.post_message(StandingsRead(standings(votes), votes))
        except HistoryError as e:
            self.post_message(StandingsRead([], [], str(e)))

    def worker_failed(self, group: str, error: str) -> None:
        self.query_one("#arena-note", Static).update(f"could not read the history: {error}")

    def on_standings_read(self, msg: StandingsRead) -> None:
        self.table, self.votes = msg.table, list(reversed(msg.votes))
        note = self.query_one("#arena-note", Static)
        if msg.error:
            note.update(msg.error)
        elif not msg.votes:
            note.update("no votes yet: in the compare screen (F4), Ctrl+B runs the next comparison blind (the "
                        "panes become A, B, C), and Ctrl+V votes for the best one")
        else:
            note.update(f"{len(msg.votes)} blind vote{'s' if len(msg.votes) != 1 else ''}: each one is a win over "
                        f"every other pane of its comparison (a tie: half a win each); the interval is how sure "
                        f"so few votes can be")
        standing = self.query_one("#standings", DataTable)
        standing.clear()
        for s in self.table:
            low, high = s.interval()
            standing.add_row(Text(s.name), f"{s.rate:.0%}", rate_bar(s), f"{low:.0%}-{high:.0%}", f"{s.wins:g}",
                             str(s.games))
        votes = self.query_one("#votes", DataTable)
        votes.clear()
        for rec in self.votes:
            panes = rec.params.get("panes") or []
            vote = rec.params.get("vote")
            winner = next((p for p in panes if p.get("label") == vote), None)
            others = [contender(p) for p in panes if p is not winner]
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(rec.created)) if rec.created else ""
            votes.add_row(when, str(vote), Text(contender(winner) if winner else "tie"),
                          Text(rec.prompt.replace("\n", " ")[:40]), Text(", ".join(others)))

    def action_open(self) -> None:
        votes = self.query_one("#votes", DataTable)
        if not self.votes or votes.cursor_row is None or votes.cursor_row >= len(self.votes):
            return
        self.dismiss(self.votes[votes.cursor_row])
