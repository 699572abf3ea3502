"""Careless input at the console and in the TUI (the real bundled model; a fresh
MULLAMA_TUI_HOME per test): bytes that are not UTF-8, a config of wrong types, a history
file that is damaged or read-only, SIGTERM/SIGHUP, Enter while a generation runs, more
threads than cores. Each failed (a traceback, a crash, lost text) before."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess

import pytest
from test_crash import Terminal, rows, wait_rows

from helpers import CLI, LONG_PROMPT, configure, run_cli, send, until


def test_invalid_utf8_on_stdin_and_in_arguments_is_replaced_and_said_once(home):
    run = [*map(os.fsencode, CLI), b"run", b"--raw", b"-n", b"3", b"--temperature", b"0"]
    for args, stdin in (([b"-"], b"Hi \xff there"), ([b"Hi \xff there"], b""), ([b"Hi", b"--system", b"\xfe"], b"")):
        r = subprocess.run([*run, *args], input=stdin, capture_output=True, timeout=120, env=os.environ.copy())
        err = r.stderr.decode("utf-8", "replace")
        assert r.returncode == 0, err
        assert "Traceback" not in err and err.count("not valid UTF-8") == 1, err


def test_a_config_of_wrong_types_is_one_line_per_key_and_the_defaults_are_used(home):
    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('default_model = 5\ngpu_layers = "all"\nmax_tokens = "lots"\nstop = 5\nkeymap = 3\n'
                   'threads = "many"\ntemperature = 0.0\n')
    r = run_cli("run", "--raw", "-n", "3", "Hello")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    for key in ("default_model", "gpu_layers", "max_tokens", "stop", "keymap", "threads"):
        assert sum(f" {key} = " in w for w in warnings) == 1, (key, warnings)
    assert not any("temperature" in w for w in warnings)  # good keys are kept


async def test_the_tui_starts_with_a_bad_config_says_so_and_generates(home):
    from mullama_tui.tui.app import MullamaApp

    cfg = home / "config" / "config.toml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text('max_tokens = "lots"\nstop = 5\nmode = "raw"\ntemperature = 0.0\n')
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state == "ready", 60, "the model")
        notes = [n.message for n in app._notifications]
        assert any("max_tokens" in n for n in notes) and any("stop" in n for n in notes), notes
        app.settings.max_tokens = 4
        await send(pilot, app, "Hello")
        await until(pilot, lambda: app.chat.last_stats is not None, 60, "a reply")
        assert app.chat.last_stats.generated_tokens == 4


async def test_a_damaged_history_is_kept_aside_and_a_fresh_one_started(home):
    from mullama_tui.tui.app import MullamaApp

    db = home / "data" / "history.sqlite3"
    db.parent.mkdir(parents=True, exist_ok=True)
    junk = os.urandom(8192)
    db.write_bytes(junk)
    configure(mode="raw", max_tokens=3, temperature=0.0)
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state == "ready", 60, "the model")
        aside = app.history.recovered
        assert aside is not None and aside.read_bytes() == junk  # the user's file, kept as it was
        assert any(str(aside) in n.message for n in app._notifications)
        await send(pilot, app, "Hello")
        await until(pilot, lambda: app.chat.last_stats is not None, 60, "a reply")
    assert len(rows(db)) == 1


async def test_a_read_only_history_says_it_cannot_delete(home):
    """Opened read-only (as sqlite opens a file it may not write; the tests run as root,
    who may write anything, so the history is opened that way here): reading works,
    Del in F3 says it cannot, and nothing crashes."""
    from mullama_tui.history import History, HistoryError, RunRecord
    from mullama_tui.tui.app import MullamaApp

    db = home / "data" / "history.sqlite3"
    History(db).add(RunRecord(model="m", mode="raw", prompt="kept", output="o"))
    app = MullamaApp()
    app.history.close()
    app.history = History(db, read_only=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state == "ready", 60, "the model")
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 10, "history")
        await pilot.pause()
        await pilot.press("delete", "delete")  # Del asks first; the second press deletes
        await pilot.pause()
        assert app.screen.__class__.__name__ == "HistoryScreen"  # still running, no crash
        assert any("read-only" in n.message for n in app._notifications)
    assert [r.prompt for r in History(db).list()] == ["kept"]
    with pytest.raises(HistoryError, match="read-only"):
        History(db, read_only=True).add(RunRecord(model="m", mode="raw", prompt="x", output="o"))


def generating(home) -> Terminal:
    """The TUI in a pseudo-terminal, in the middle of a long reply."""
    configure(max_tokens=3000, cursor_blink=False)
    tui = Terminal(home)
    tui.read_until(b"ready")
    tui.type(LONG_PROMPT)
    tui.read_until(b"generating")
    return tui


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_restore_the_terminal_and_save_the_run(home, sig):
    db = home / "data" / "history.sqlite3"
    tui = generating(home)
    try:
        tui.seen = b""
        tui.proc.send_signal(sig)
        tui.read_until(b"\x1b[?1049l", timeout=15)  # the alternate screen was left (read on: a full
        assert tui.proc.wait(15) == 0                # pty would block the app's last writes)
        assert b"\x1b[?1000l" in tui.seen or b"\x1b[?1003l" in tui.seen  # mouse tracking off
    finally:
        if tui.proc.poll() is None:
            tui.kill9()
    wait_rows(db, 1, timeout=5)
    assert [reason for _, reason in rows(db)] == ["cancelled"]
    with sqlite3.connect(db) as conn:
        assert LONG_PROMPT in conn.execute("SELECT messages FROM runs").fetchone()[0]


@pytest.mark.parametrize("signals", [(signal.SIGHUP, signal.SIGCONT), ()], ids=["hangup", "no-signal"])
def test_a_terminal_that_goes_away_ends_the_tui_and_saves_the_run(home, signals):
    """The window closed mid-reply: the kernel hangs the tty up and sends SIGHUP and SIGCONT
    (or, over some links, nothing at all and writes just fail). Textual's own driver hung
    for good in its shutdown (its writer thread died on EIO with a full queue); the app
    must end on its own and save the run as cancelled."""
    db = home / "data" / "history.sqlite3"
    tui = generating(home)
    try:
        os.close(tui.master)  # the terminal is gone: every read and write of it fails from now on
        for sig in signals:
            tui.proc.send_signal(sig)
        assert tui.proc.wait(30) == 0
    finally:
        if tui.proc.poll() is None:
            tui.proc.kill()
            tui.proc.wait(10)
    wait_rows(db, 1, timeout=5)
    assert [reason for _, reason in rows(db)] == ["cancelled"]


async def test_enter_while_generating_keeps_the_typed_text(home):
    from mullama_tui.tui.app import MullamaApp
    from mullama_tui.tui.widgets.prompt import PromptInput

    configure(max_tokens=2000)
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, LONG_PROMPT)
        await until(pilot, lambda: app.state == "generating", 60, "generating")
        await send(pilot, app, "my next question")
        await pilot.pause()
        assert app.query_one(PromptInput).text == "my next question"
        assert any("kept" in n.message for n in app._notifications)
        await pilot.press("escape")
        await until(pilot, lambda: app.state == "cancelled", 10, "cancelled")


def test_more_threads_than_cores_are_capped_with_a_note(home):
    from mullama_tui.engine.threads import cpu_cores

    r = run_cli("run", "--raw", "-n", "2", "--threads", "1000", "Hi")
    assert r.returncode == 0, r.stderr
    assert f"using {cpu_cores()}" in r.stderr and f"threads:         {cpu_cores()} of {cpu_cores()}, fixed" in r.stderr
    bad = run_cli("run", "--raw", "-n", "2", "--threads", "lots", "Hi")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "auto" in bad.stderr


def test_run_json_schema_holds_the_answer_to_the_schema(home, tmp_path):
    import json

    schema = tmp_path / "person.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"name": {"type": "string"},
                                                                    "age": {"type": "integer"}},
                                  "required": ["name", "age"]}))
    r = run_cli("run", "--temperature", "0", "-n", "80", "--json-schema", str(schema), "A person as JSON.")
    assert r.returncode == 0, r.stderr
    value = json.loads(r.stdout)
    assert isinstance(value["name"], str) and isinstance(value["age"], int)
    bad = run_cli("run", "--json-schema", str(tmp_path / "missing.json"), "x")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "missing.json" in bad.stderr


def test_the_token_view_says_which_alternatives_the_grammar_removed(engine):
    from mullama_tui.engine.llama import json_grammar
    from mullama_tui.engine.types import Request, SamplerParams

    gen = engine.submit(Request(prompt="Tell me about cats.", mode="chat", max_tokens=12, logprobs=10,
                                params=SamplerParams(temperature=0.7, seed=3, grammar=json_grammar(None))))
    events = [e for e in gen if not e.done]
    assert "".join(e.text for e in events).lstrip().startswith("{")
    cut = [c for e in events for c in e.insight.top if c.cut_by == "grammar"]
    # the model would rather write prose: its favourites are cut by the grammar, by name
    assert cut and events[0].insight.top[0].cut_by == "grammar"
    assert all(e.insight.sampled_prob > 0 for e in events)


async def test_json_output_set_in_f2_holds_the_tui_reply_to_json(home):
    from mullama_tui.tui.app import MullamaApp

    configure(max_tokens=24, temperature=0.0, json_output="object")
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Tell me about cats.")
        await until(pilot, lambda: app.chat.last_stats is not None and app.state == "ready", 60, "a reply")
        assert app.chat.reply_text.lstrip().startswith("{"), app.chat.reply_text
        app.settings.json_output = str(home / "no-such-schema.json")  # a schema file that went away
        await send(pilot, app, "again")
        await pilot.pause()
        assert any("no-such-schema.json" in n.message for n in app._notifications)
        assert app.query_one("PromptInput").text == "again"  # refused, and the text kept
