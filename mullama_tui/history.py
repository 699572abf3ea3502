"""SQLite store of finished runs (prompt or messages, parameters, model, output, stats).

One row per generation, written when it finishes or is cancelled, in one transaction, so
a crash (even `kill -9` mid-write) loses at most the run in progress: the database is in
WAL mode, where a killed writer leaves a journal that the next open rolls back or
forward, never a torn page. Lives under the data dir (see config.py).
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import data_dir
from .panes import contender

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    kind TEXT NOT NULL DEFAULT 'chat',
    model TEXT NOT NULL,
    mode TEXT NOT NULL,
    prompt TEXT NOT NULL,
    messages TEXT NOT NULL,
    params TEXT NOT NULL,
    output TEXT NOT NULL,
    finish_reason TEXT,
    stats TEXT NOT NULL,
    tokens TEXT NOT NULL DEFAULT '[]',
    thinking TEXT NOT NULL DEFAULT ''
);
"""


@dataclass
class RunRecord:
    model: str
    mode: str
    prompt: str
    output: str
    messages: list[dict[str, str]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None
    kind: str = "chat"
    created: float = field(default_factory=time.time)
    id: int | None = None
    tokens: list[dict[str, Any]] = field(default_factory=list)  # per token: id, text, insight (token view)
    thinking: str = ""  # a thinking model's thinking, apart from the answer in `output`

    def to_markdown(self) -> str:
        lines = [f"# mullama-tui run {self.id or ''}".rstrip(), "",
                 f"- model: `{self.model}`", f"- mode: {self.mode}",
                 f"- finish reason: {self.finish_reason}",
                 f"- params: `{json.dumps(self.params)}`", ""]
        system = self.params.get("system")
        if system and not any(m.get("role") == "system" for m in self.messages):
            lines += ["## system", "", str(system), ""]
        for m in self.messages or [{"role": "user", "content": self.prompt}]:
            lines += [f"## {m['role']}", "", m["content"], ""]
        if self.thinking:
            lines += ["## assistant (thinking)", "", self.thinking, ""]
        lines += ["## assistant", "", self.output, ""]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, ensure_ascii=False)


class HistoryError(Exception):
    """The history cannot do what was asked (a read-only file, a full disk): said to the
    user in one line; what is in it stays."""


class History:
    """The runs table. A file that is not a database (random bytes, a half-copied file)
    is moved aside, kept (it is the user's data) and a fresh one started: `recovered`
    says where the old one went. A history that cannot be written (read-only) still
    opens for reading; writes raise `HistoryError`."""

    def __init__(self, path: Path | None = None, read_only: bool = False) -> None:
        """`read_only`: open it so (also what happens when the file or folder is not ours to write)."""
        self.path = path or data_dir() / "history.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.recovered: Path | None = None
        self.read_only = read_only or (self.path.exists() and not os.access(self.path, os.W_OK))
        try:
            self._open()
        except sqlite3.DatabaseError as e:
            if "readonly" in str(e) or "read-only" in str(e):
                raise
            self.recovered = self._move_aside()
            self._open()

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.stem}.corrupt-{stamp}{self.path.suffix}")
        try:
            self._db.close()
        except Exception:
            pass
        self.path.replace(aside)
        for extra in ("-wal", "-shm"):  # the journal of the bad file goes with it
            side = self.path.with_name(self.path.name + extra)
            if side.exists():
                side.replace(aside.with_name(aside.name + extra))
        return aside

    def _open(self) -> None:
        if self.read_only:
            self._db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
            self._db.row_factory = sqlite3.Row
            return
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as e:
            if "readonly" not in str(e):
                raise
            self.read_only = True  # a read-only file or folder: reading still works
        self._db.execute("PRAGMA synchronous=NORMAL")  # durable across a killed process (not a power cut)
        self._db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # not a database: raises here
        if self.read_only:
            return
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
        with self._db:  # a history from before the token view, or before thinking models
            if "tokens" not in columns:
                self._db.execute("ALTER TABLE runs ADD COLUMN tokens TEXT NOT NULL DEFAULT '[]'")
            if "thinking" not in columns:
                self._db.execute("ALTER TABLE runs ADD COLUMN thinking TEXT NOT NULL DEFAULT ''")

    def _writing(self) -> Any:
        """A transaction, with sqlite's failures said in our words."""
        if self.read_only:
            raise HistoryError(f"the history is read-only ({self.path}): nothing can be saved or deleted")
        return self._db

    def add(self, r: RunRecord) -> int:
        try:
            return self._add(r)
        except sqlite3.OperationalError as e:
            raise HistoryError(f"cannot save to the history ({self.path}): {e}") from None

    def _add(self, r: RunRecord) -> int:
        with self._writing():
            cur = self._db.execute(
                "INSERT INTO runs (created, kind, model, mode, prompt, messages, params, output,"
                " finish_reason, stats, tokens, thinking) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (r.created, r.kind, r.model, r.mode, r.prompt, json.dumps(r.messages),
                 json.dumps(r.params), r.output, r.finish_reason, json.dumps(r.stats), json.dumps(r.tokens),
                 r.thinking))
        r.id = int(cur.lastrowid or 0)
        return r.id

    def _record(self, row: sqlite3.Row) -> RunRecord:
        return RunRecord(id=row["id"], created=row["created"], kind=row["kind"], model=row["model"],
                         mode=row["mode"], prompt=row["prompt"], messages=json.loads(row["messages"]),
                         params=json.loads(row["params"]), output=row["output"],
                         finish_reason=row["finish_reason"], stats=json.loads(row["stats"]),
                         tokens=json.loads(row["tokens"]), thinking=row["thinking"])

    def list(self, search: str = "", limit: int = 500) -> list[RunRecord]:
        like = f"%{search}%"
        rows = self._db.execute(
            "SELECT * FROM runs WHERE prompt LIKE ? OR output LIKE ? OR messages LIKE ?"
            " ORDER BY id DESC LIMIT ?", (like, like, like, limit)).fetchall()
        return [self._record(r) for r in rows]

    def set_params(self, run_id: int, params: dict[str, Any]) -> None:
        """Replace a run's params (a comparison's vote, given after the run was saved)."""
        try:
            with self._writing():
                self._db.execute("UPDATE runs SET params = ? WHERE id = ?", (json.dumps(params), run_id))
        except sqlite3.OperationalError as e:
            raise HistoryError(f"cannot save to the history ({self.path}): {e}") from None

    def votes(self) -> builtins.list[RunRecord]:
        """Comparisons that were voted on (the arena's standings are made of them)."""
        rows = self._db.execute("SELECT * FROM runs WHERE kind = 'compare' AND params LIKE '%\"vote\"%'"
                                " ORDER BY id").fetchall()
        return [r for r in (self._record(row) for row in rows) if "vote" in r.params]

    def delete(self, run_id: int) -> None:
        try:
            with self._writing():
                self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        except sqlite3.OperationalError as e:
            raise HistoryError(f"cannot delete from the history ({self.path}): {e}") from None

    def close(self) -> None:
        self._db.close()


@dataclass
class Standing:
    """One contender of the arena (a model with its settings) and how its votes went."""

    name: str
    wins: float = 0.0  # a tie counts half
    games: int = 0

    @property
    def rate(self) -> float:
        return self.wins / self.games if self.games else 0.0

    def interval(self, z: float = 1.96) -> tuple[float, float]:
        """The Wilson score interval of the win rate (95% by default): honest with few votes."""
        n = self.games
        if not n:
            return 0.0, 1.0
        p = self.rate
        centre = (p + z * z / (2 * n)) / (1 + z * z / n)
        half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
        return max(0.0, centre - half), min(1.0, centre + half)

    def to_dict(self) -> dict[str, Any]:
        low, high = self.interval()
        return {"name": self.name, "wins": self.wins, "games": self.games, "win_rate": round(self.rate, 4),
                "ci95": [round(low, 4), round(high, 4)]}


def standings(voted: list[RunRecord]) -> list[Standing]:
    """Head-to-head: in each voted comparison the chosen pane beats every other pane (two
    panes that both lost played no game; a tie: each pair half a win); best win rate first."""
    table: dict[str, Standing] = {}
    for r in voted:
        panes = r.params.get("panes") or []
        names = [contender(p) for p in panes]
        vote = r.params.get("vote")
        winner = next((i for i, p in enumerate(panes) if p.get("label") == vote), None)
        for name in names:
            table.setdefault(name, Standing(name))
        pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names)) if names[i] != names[j]]
        for i, j in pairs:
            if winner is None:  # a tie: every pair half a win each
                table[names[i]].wins += 0.5
                table[names[j]].wins += 0.5
            elif winner not in (i, j):
                continue  # two panes that both lost: the vote says nothing between them
            else:
                table[names[winner]].wins += 1.0
            table[names[i]].games += 1
            table[names[j]].games += 1
    return sorted(table.values(), key=lambda s: (-s.rate, -s.games, s.name))
