"""`kill -9` in the middle of a generation, for real (subprocesses on the bundled model):
the history database must pass `PRAGMA integrity_check` and hold every earlier run."""

from __future__ import annotations

import os
import pty
import select
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import httpx

from helpers import CLI, LONG_PROMPT, configure, wait_until


class Terminal:
    """The TUI in a pseudo-terminal, typed at as a user would."""

    def __init__(self, home: Path) -> None:
        self.master, slave = pty.openpty()
        env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30", MULLAMA_TUI_HOME=str(home))
        self.proc = subprocess.Popen(CLI, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
        os.close(slave)
        self.seen = b""

    def read_until(self, what: bytes, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while what not in self.seen:
            alive = self.proc.poll() is None
            assert time.monotonic() < deadline, self.seen[-1500:]
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    self.seen += os.read(self.master, 65536)
                except OSError:  # the app closed the terminal: nothing more will come
                    assert what in self.seen, self.seen[-1500:]
            elif not alive:
                assert what in self.seen, self.seen[-1500:]

    def type(self, text: str) -> None:
        os.write(self.master, text.encode() + b"\r")

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        os.close(self.master)


def rows(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT prompt, finish_reason FROM runs ORDER BY id")]


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def wait_rows(db: Path, n: int, timeout: float = 60) -> None:
    wait_until(lambda: db.exists() and len(rows(db)) >= n, timeout, f"{n} runs in the history", 0.1)


def test_kill_9_of_the_tui_mid_generation_keeps_every_earlier_run(home):
    configure(mode="raw", max_tokens=6, cursor_blink=False)
    db = home / "data" / "history.sqlite3"
    tui = Terminal(home)
    try:
        tui.read_until(b"ready")
        for i, prompt in enumerate(["one fish", "two fish", "red fish"], start=1):
            tui.type(prompt)
            wait_rows(db, i)
        configure(mode="raw", max_tokens=3000, cursor_blink=False)  # read at the next start only
        tui.type(LONG_PROMPT)
        tui.read_until(b"generating")
    finally:
        tui.kill9()
    assert integrity(db) == "ok"
    assert [p for p, _ in rows(db)] == ["one fish", "two fish", "red fish"]
    # and the next start opens it and can add to it
    configure(mode="raw", max_tokens=4, cursor_blink=False)
    tui = Terminal(home)
    try:
        tui.read_until(b"ready")
        tui.type("blue fish")
        wait_rows(db, 4)
    finally:
        tui.kill9()
    assert integrity(db) == "ok" and rows(db)[-1][0] == "blue fish"


def test_kill_9_of_serve_mid_generation_leaves_the_history_intact(home, model_path):
    from mullama_tui.history import History, RunRecord

    db = home / "data" / "history.sqlite3"
    history = History()
    for i in range(3):
        history.add(RunRecord(model="m", mode="raw", prompt=f"earlier {i}", output="x", finish_reason="length"))
    history.close()
    from mullama_tui.bench.server import ServeProcess

    server = ServeProcess(model_path, "--ctx", "1024", home=home)
    try:
        with httpx.stream("POST", server.url + "/stream", json={"prompt": LONG_PROMPT, "max_tokens": 800,
                                                                 "ignore_eos": True}, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: "):
                    server.proc.send_signal(signal.SIGKILL)
                    break
    except httpx.HTTPError:
        pass  # the server died under us, as it should
    finally:
        server.proc.wait(10)
    assert server.proc.returncode == -signal.SIGKILL
    assert integrity(db) == "ok" and [p for p, _ in rows(db)] == ["earlier 0", "earlier 1", "earlier 2"]
