"""Conversations that pick up where they left off: KV states saved on disk and restored
(engine/session.py), on the real bundled model; every way a saved state can be bad; and
`run --conversation` across processes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mullama_tui.engine.local import LocalEngine
from mullama_tui.engine.session import MAGIC, SessionStore
from mullama_tui.engine.types import Request, SamplerParams

from helpers import LONG_PROMPT, run_cli

GREEDY = SamplerParams(temperature=0.0, seed=1)
QUESTION = LONG_PROMPT + " " + " ".join(
    f"Chapter {i} is about the {['storm', 'ship', 'gull', 'lamp', 'letter'][i % 5]} of winter number {i}."
    for i in range(1, 31))  # about 400 tokens through the chat template


def chat(messages: list[dict[str, str]], session: str | None = "c1", n: int = 24) -> Request:
    return Request(messages=messages, mode="chat", params=GREEDY, max_tokens=n, session=session)


def engine_on(model_path, store: SessionStore, **kw) -> LocalEngine:
    return LocalEngine(model_path, n_ctx=1024, n_parallel=2, n_threads=2, sessions=store, **kw)


@pytest.fixture()
def first_turn(model_path, tmp_path):
    """A conversation's first turn, saved: (the folder, the messages so far)."""
    store = SessionStore(tmp_path / "kv")
    with engine_on(model_path, store) as eng:
        gen = eng.submit(chat([{"role": "user", "content": QUESTION}]))
        reply = gen.text()
    store.close()
    assert reply and store.get("c1") is not None
    return tmp_path / "kv", [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": reply}]


def follow_up(model_path, folder, messages) -> tuple[LocalEngine, object]:
    store = SessionStore(folder)
    eng = engine_on(model_path, store)
    gen = eng.submit(chat([*messages, {"role": "user", "content": "And the second winter?"}]))
    gen.text()
    return eng, gen


def test_a_new_engine_restores_the_saved_turn_and_processes_only_the_new_one(model_path, first_turn):
    folder, messages = first_turn
    eng, gen = follow_up(model_path, folder, messages)
    try:
        st = gen.stats
        full = eng.prompt_tokens(chat([*messages, {"role": "user", "content": "And the second winter?"}]))
        assert st.restored_tokens > 100 and st.cached_tokens == st.restored_tokens
        assert eng.scheduler.prompt_tokens_processed == st.prompt_processed == len(full) - st.restored_tokens
        assert st.prompt_processed < 40  # the new turn (and the template's tail), not the transcript
        assert "restored from disk" in "\n".join(st.summary_lines())
    finally:
        eng.close()


def test_the_restored_continuation_equals_the_uninterrupted_one(model_path, tmp_path):
    """Greedy, one sequence: 30 tokens, saved; a new engine goes on from the saved KV for
    30 more; the 60 tokens are those of one uninterrupted run of 60."""
    prompt = "The lighthouse keeper opened his logbook and wrote:"
    with LocalEngine(model_path, n_ctx=512, n_parallel=1, n_threads=2) as eng:
        whole = [e.token_id for e in eng.submit(Request(prompt=prompt, params=GREEDY, max_tokens=60,
                                                        ignore_eos=True)) if not e.done]
    store = SessionStore(tmp_path / "kv")
    with LocalEngine(model_path, n_ctx=512, n_parallel=1, n_threads=2, sessions=store) as eng:
        first = [e.token_id for e in eng.submit(Request(prompt=prompt, params=GREEDY, max_tokens=30,
                                                        ignore_eos=True, session="log")) if not e.done]
    store.close()
    with LocalEngine(model_path, n_ctx=512, n_parallel=1, n_threads=2, sessions=SessionStore(tmp_path / "kv")) as eng:
        gen = eng.submit(Request(prompt=prompt, params=GREEDY, max_tokens=30, ignore_eos=True, prefix=first))
        rest = [e.token_id for e in gen if not e.done]
        assert gen.stats.restored_tokens >= 29 and gen.stats.prompt_processed == 1
    assert first + rest == whole


def _corrupt(folder, how: str) -> None:
    path = folder / "c1.kv"
    data = bytearray(path.read_bytes())
    if how == "truncated":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "flipped":
        data[-100] ^= 0xFF  # one byte of the KV payload: the checksum catches it
        path.write_bytes(bytes(data))
    elif how in ("another model", "another build"):
        n = int.from_bytes(data[8:12], "little")
        header = json.loads(bytes(data[12:12 + n]))
        header["identity"] = "0" * 32 if how == "another model" else header["identity"][:-2] + "xx"
        raw = json.dumps(header).encode()
        path.write_bytes(bytes(data[:8]) + len(raw).to_bytes(4, "little") + raw + bytes(data[12 + n:]))
    elif how == "not ours":
        path.write_bytes(b"GGUF" + bytes(data[4:]))
    elif how == "broken index":
        (folder / "index.json").write_text("{oops")


@pytest.mark.parametrize("how", ["truncated", "flipped", "another model", "another build", "not ours"])
def test_a_bad_saved_state_is_removed_with_a_notice_and_the_text_is_processed(model_path, first_turn, how):
    folder, messages = first_turn
    _corrupt(folder, how)
    eng, gen = follow_up(model_path, folder, messages)
    try:
        st = gen.stats
        assert st.restored_tokens == 0 and st.error is None and st.generated_tokens > 0
        assert st.notice and "processed from its text" in st.notice
        assert st.prompt_processed == st.prompt_tokens - st.cached_tokens > 300  # the whole transcript
    finally:
        eng.close()
    eng.sessions.close()
    # the bad file is gone, and this turn's good state replaced it
    header = (folder / "c1.kv").read_bytes()[:4]
    assert header == MAGIC and SessionStore(folder).get("c1").n_tokens > 300


def test_a_broken_index_is_rebuilt_from_the_files(model_path, first_turn):
    folder, messages = first_turn
    _corrupt(folder, "broken index")
    eng, gen = follow_up(model_path, folder, messages)
    try:
        assert gen.stats.restored_tokens > 100
    finally:
        eng.close()


def test_a_kill_mid_save_leaves_the_old_state_and_a_stray_temporary_file_is_ignored(model_path, first_turn):
    folder, messages = first_turn
    (folder / ".c1.999.1.tmp").write_bytes(MAGIC + b"half a state")  # what a kill -9 mid-write leaves
    eng, gen = follow_up(model_path, folder, messages)
    try:
        assert gen.stats.restored_tokens > 100 and not gen.stats.notice
    finally:
        eng.close()


def test_a_save_that_cannot_be_written_says_so_and_loses_nothing(model_path, tmp_path):
    """A folder that cannot be created (its parent is a file: what a full or read-only
    disk looks like to the writer, as root can write anywhere here)."""
    (tmp_path / "file").write_text("x")
    store = SessionStore(tmp_path / "file" / "kv")
    with engine_on(model_path, store) as eng:
        gen = eng.submit(chat([{"role": "user", "content": "Hello"}], n=8))
        text = gen.text()
    store.close()
    assert text and gen.stats.error is None
    assert store.get("c1") is None and any("could not save" in n for n in store.notices)


def test_the_store_keeps_to_its_budget_least_recently_used_first(model_path, tmp_path):
    store = SessionStore(tmp_path / "kv")
    with engine_on(model_path, store) as eng:
        for name in ("a", "b"):
            eng.submit(chat([{"role": "user", "content": f"Tell me about {name} and the sea."}], session=name)).text()
            store.flush()
        size = store.get("a").bytes
        store.budget_bytes = int(size * 1.5)  # room for one state
        eng.submit(chat([{"role": "user", "content": "Tell me about c and the sea."}], session="c")).text()
    store.close()
    assert [e.key for e in store.entries()] == ["c"] and store.total_bytes <= store.budget_bytes
    assert sorted(p.name for p in (tmp_path / "kv").glob("*.kv")) == ["c.kv"]


def test_run_conversation_continues_across_processes(home):
    first = run_cli("run", "--conversation", "trip", "-n", "12", "-t", "0", LONG_PROMPT)
    assert first.returncode == 0, first.stderr
    second = run_cli("run", "--conversation", "trip", "-n", "12", "-t", "0", "And then?")
    assert second.returncode == 0, second.stderr
    assert "restored from disk" in second.stderr
    listing = run_cli("conversations", "--json")
    rows = json.loads(listing.stdout)
    assert [(r["name"], r["turns"]) for r in rows] == [("trip", 2)] and rows[0]["tokens"] > 50
    over = run_cli("run", "--conversation", "trip", "--reset", "-n", "4", "-t", "0", "Hello")
    assert over.returncode == 0 and "restored from disk" not in over.stderr
    assert json.loads(run_cli("conversations", "--json").stdout)[0]["turns"] == 1
    gone = run_cli("conversations", "--rm", "trip")
    assert gone.returncode == 0 and json.loads(run_cli("conversations", "--json").stdout) == []
    bad = run_cli("run", "--conversation", "../etc", "hi")
    assert bad.returncode == 2 and "conversation name" in bad.stderr and "Traceback" not in bad.stderr


def test_importing_the_session_store_loads_no_llama_cpp():
    code = "import mullama_tui.engine.session, sys; print('llama_cpp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


async def test_a_conversation_reopened_after_a_restart_resumes_from_its_saved_kv(home):
    """The TUI saves each chat turn's KV cache under the conversation's name; after a
    restart, F3 shows the conversation resumes at once, Enter reopens it, and the next
    turn restores the KV instead of processing the transcript (the gauge says so). Ctrl+K
    in F3 forgets the saved state."""
    from mullama_tui.history import History
    from mullama_tui.tui.app import MullamaApp
    from mullama_tui.tui.widgets.gauge import Gauge

    from helpers import configure, send, until

    configure(max_tokens=16, temperature=0.0)
    app = MullamaApp()
    async with app.run_test(size=(120, 36)) as pilot:
        await send(pilot, app, QUESTION)
        await until(pilot, lambda: app.chat.last_stats is not None and app.state == "ready", 60, "the reply")
        first = app.chat.last_stats
    assert first.prompt_processed > 300
    (run,) = History().list()
    assert run.params["conversation"] == app.chat.conversation
    app2 = MullamaApp()
    async with app2.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app2.state == "ready", 30, "the model")
        await pilot.press("f3")
        await until(pilot, lambda: app2.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        table = app2.screen.query_one("DataTable")
        assert str(table.get_cell_at((0, table.get_column_index("resume")))).startswith("instant")
        await pilot.press("enter")
        await until(pilot, lambda: len(app2.chat.messages) == 2, 5, "the reopened conversation")
        assert app2.chat.conversation == run.params["conversation"]
        await send(pilot, app2, "And the second winter?")
        await until(pilot, lambda: app2.chat.ended == 1 and app2.state == "ready", 60, "the follow-up")
        st = app2.chat.last_stats
        assert st.restored_tokens > 300 and st.prompt_processed < 40
        assert "restored" in app2.query_one(Gauge).details_text.plain
        await pilot.press("f3")
        await until(pilot, lambda: app2.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("ctrl+k")
        await until(pilot, lambda: app2.sessions.get(run.params["conversation"]) is None, 5, "the KV forgotten")
        table = app2.screen.query_one("DataTable")
        assert not str(table.get_cell_at((0, table.get_column_index("resume"))))


async def test_f6_edits_a_reply_and_the_model_goes_on_from_the_edit(home):
    """Edit the model's first reply: the turns after it go, the reply becomes a branch
    that starts with the edit (Ctrl+B shows the original), the model continues it, and
    only the tokens after the first changed one are decoded. Then edit the first question:
    the reply is made again, decoding only from the change on."""
    from mullama_tui.tui.app import MullamaApp
    from mullama_tui.tui.screens.edit import EditScreen
    from mullama_tui.tui.widgets.turn import AssistantTurn

    from helpers import configure, send, until

    configure(max_tokens=24, temperature=0.0)
    app = MullamaApp(ignore_eos=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.state == "ready", 30, "the model")
        for n, q in enumerate(("Describe the lighthouse keeper.", "What did he eat?"), 1):
            await send(pilot, app, q)
            await until(pilot, lambda n=n: app.chat.ended >= n and app.state == "ready", 60, "a reply")
        original = app.chat.messages[1]["content"]
        edited = original[: len(original) // 2] + " Suddenly the lamp"
        sched = app.engine.scheduler
        before = sched.prompt_tokens_processed
        ended = app.chat.ended
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(app.screen, EditScreen), 5, "the editor")
        await pilot.press("up", "up", "enter")  # turn 3 is highlighted: up twice to the first reply
        await until(pilot, lambda: app.screen.index == 1, 5, "the reply in the editor")
        app.screen.query_one("TextArea").load_text(edited)
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.chat.ended > ended and app.state == "ready", 60, "the continuation")
        turns = list(app.chat.query(AssistantTurn))
        assert len(turns) == 1 and len(app.chat.messages) == 2  # the later turns are gone
        reply = app.chat.messages[1]["content"]
        assert reply.startswith(edited) and len(reply) > len(edited)
        assert turns[0].branch.edited and turns[0].branches[0].text == original
        from mullama_tui.history import History

        runs = History().list()
        assert runs[0].params["edited"] == {"of": turns[0].branches[0].run_id}  # the original stays in history
        assert runs[0].output == reply
        request = app.chat._turn_requests[id(turns[0])]
        prompt = app.engine.prompt_tokens(request)
        tail = len(app.engine.model.tokenize(" Suddenly the lamp", add_special=False))
        decoded = sched.prompt_tokens_processed - before
        assert 0 < decoded <= tail + 2 and decoded < len(prompt) // 3  # the changed tail, not the transcript
        # the first question, edited: its reply is made again
        before, ended = sched.prompt_tokens_processed, app.chat.ended
        await pilot.press("f6")
        await until(pilot, lambda: isinstance(app.screen, EditScreen), 5, "the editor")
        await pilot.press("up", "enter")
        await until(pilot, lambda: app.screen.index == 0, 5, "the question in the editor")
        app.screen.query_one("TextArea").load_text("Describe the lighthouse keeper's dog.")
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.chat.ended > ended and app.state == "ready", 60, "the new reply")
        assert [m["role"] for m in app.chat.messages] == ["user", "assistant"]
        assert app.chat.messages[0]["content"] == "Describe the lighthouse keeper's dog."
        assert sched.prompt_tokens_processed - before < 20  # the question's changed end and the template's tail
