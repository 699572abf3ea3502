"""What a saved conversation is worth: the first token of a follow-up to a ~4000-token
conversation with its KV cache restored from disk, against processing the transcript
again; what a save costs (bytes per 1000 tokens, time, on which thread); and how many
tokens an edit decodes.

Each follow-up runs on a fresh engine and a fresh store object reading the folder, as a
new process would (the model load, the same either way, is not counted), restored and
re-processed runs interleaved, so a VM's drift touches both alike.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ..engine.local import LocalEngine
from ..engine.session import SessionStore, common_prefix
from ..engine.types import Request, SamplerParams
from .common import Progress, ok

TARGET_SPEEDUP = 10.0
GREEDY = SamplerParams(temperature=0.0, seed=1)
FOLLOW_UP = "Now tell me, in two sentences, what the keeper wrote on the last page."


def _long_text(engine: LocalEngine, n_tokens: int) -> str:
    """Prose of about `n_tokens` tokens (numbered log entries: no two alike)."""
    lines: list[str] = []
    while True:
        i = len(lines)
        lines.append(f"Entry {i + 1}: the keeper trimmed the wick, logged wind from the "
                     f"{['north', 'east', 'south', 'west'][i % 4]} at {3 + i % 7} knots, and saw "
                     f"{i % 5 + 1} ships pass the point before the tide turned.")
        if i % 20 == 19 and len(engine.model.tokenize("\n".join(lines), add_special=False)) >= n_tokens:
            return "Here is the lighthouse log:\n" + "\n".join(lines)


def _chat(messages: list[dict[str, str]], session: str | None, n: int) -> Request:
    return Request(messages=messages, mode="chat", params=GREEDY, max_tokens=n, ignore_eos=True, session=session)


def ui_share_while_saving(path: Path, text: str, n_ctx: int) -> dict[str, float]:
    """The TUI itself: a chat turn over `text` ends, its KV state is copied out and written;
    the UI thread's CPU time over the wall time of that save (from the end of the turn on
    the screen until the store's writer is done, a second at least), read on the UI thread."""
    import asyncio

    from ..config import Settings
    from ..tui.app import MullamaApp
    from ..tui.widgets.prompt import PromptInput
    from .common import private_home

    async def run() -> dict[str, float]:
        app = MullamaApp(model=str(path), ignore_eos=True)
        async with app.run_test(size=(120, 40)) as pilot:
            while app.state != "ready":
                await pilot.pause(0.05)
            prompt = app.chat.query_one(PromptInput)
            prompt.load_text(text)
            prompt.focus()
            await pilot.press("enter")
            while app.chat.ended < 1:
                await pilot.pause(0.02)
            store = app.sessions
            assert store is not None
            # from the end on screen: the state is being written (queued as the turn ended);
            # the window is at least a second, so a write that is quick still lies inside it
            cpu0, t0 = time.thread_time(), time.perf_counter()
            while store._writes.unfinished_tasks or time.perf_counter() - t0 < 1.0:
                await asyncio.sleep(0.02)
            cpu, wall = time.thread_time() - cpu0, time.perf_counter() - t0
            saved = store.get(app.chat.conversation)
        return {"save_wall_s": round(wall, 3), "ui_cpu_s": round(cpu, 4),
                "ui_share": round(cpu / wall, 3) if wall > 0 else 0.0,
                "saved_tokens": saved.n_tokens if saved is not None else 0}

    with private_home():
        Settings(max_tokens=8, temperature=0.0, n_ctx=n_ctx, mode="chat").save()
        return asyncio.run(run())


def bench_resume(path: Path, *, n_tokens: int = 4000, reps: int = 3, n_ctx: int = 8192,
                 progress: Progress = lambda s: None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="mullama-bench-kv-"))
    progress("the conversation's first turn (saved)")
    store = SessionStore(folder)
    with LocalEngine(path, n_ctx=n_ctx, n_parallel=1, sessions=store) as eng:
        text = _long_text(eng, n_tokens)
        messages = [{"role": "user", "content": text}]
        gen = eng.submit(_chat(messages, "bench", 16))
        reply = gen.text()
        t_end = time.perf_counter()
        store.flush()
        write_s = time.perf_counter() - t_end  # the writer thread, after the turn ended
        copy_s = eng.scheduler.save_time  # copying the state out, on the scheduler thread
    store.close()
    saved = store.get("bench")
    assert saved is not None, "the first turn was not saved"
    follow = [*messages, {"role": "assistant", "content": reply}, {"role": "user", "content": FOLLOW_UP}]
    restored: list[float] = []
    fresh: list[float] = []
    processed: dict[str, int] = {}
    for r in range(reps):
        for side in ("restored", "re-processed"):
            progress(f"rep {r + 1}/{reps}: {side}")
            sessions = SessionStore(folder) if side == "restored" else None
            with LocalEngine(path, n_ctx=n_ctx, n_parallel=1, sessions=sessions) as eng:
                g = eng.submit(_chat(follow, None, 8))
                g.text()
                st = g.stats
                assert st is not None and st.ttft is not None
                (restored if side == "restored" else fresh).append(st.ttft)
                processed[side] = st.prompt_processed
                if side == "restored" and not st.restored_tokens:
                    raise RuntimeError(f"the saved state was not restored: {st.notice}")
    # edit and continue: the reply cut in the middle and a word put in; the model goes on
    # from the edit, and only the tokens from the first changed one are decoded
    progress("edit and continue")
    with LocalEngine(path, n_ctx=n_ctx, n_parallel=1, sessions=SessionStore(folder)) as eng:
        edited = reply[: len(reply) // 2] + " lantern"
        request = Request(messages=follow[:1], mode="chat", params=GREEDY, max_tokens=8, ignore_eos=True,
                          continue_text=edited)
        prompt = eng.prompt_tokens(request)
        same = common_prefix(prompt, saved.tokens)  # what the saved state holds of the edited prompt
        g = eng.submit(request)
        g.text()
        assert g.stats is not None
        edit = {"changed_from_token": same, "prompt_tokens": len(prompt), "decoded": g.stats.prompt_processed,
                "expected": len(prompt) - same}
    progress("the TUI's UI thread while a turn's KV is saved")
    ui = ui_share_while_saving(path, text, n_ctx)
    r_med, f_med = statistics.median(restored), statistics.median(fresh)
    for p in folder.glob("*"):
        p.unlink()
    folder.rmdir()
    return {"benchmark": "resume", "model": str(path), "conversation_tokens": saved.n_tokens, "reps": reps,
            "ttft_restored_s": [round(x, 3) for x in restored], "ttft_reprocessed_s": [round(x, 3) for x in fresh],
            "median_restored_s": round(r_med, 3), "median_reprocessed_s": round(f_med, 3),
            "speedup": round(f_med / r_med, 1) if r_med > 0 else 0.0, "target_speedup": TARGET_SPEEDUP,
            "prompt_processed": processed, "bytes": saved.bytes,
            "mb_per_1000_tokens": round(saved.bytes / saved.n_tokens * 1000 / 1e6, 2),
            "write_s": round(write_s, 3), "copy_s": round(copy_s, 3), "edit": edit, "ui": ui}


def format_resume_report(r: dict[str, Any]) -> str:
    e = r["edit"]
    return "\n".join([
        f"a follow-up to a {r['conversation_tokens']}-token conversation, fresh engine each time "
        f"({r['reps']} interleaved reps):",
        f"  first token, KV restored from disk: {r['ttft_restored_s']} s, median {r['median_restored_s']} s "
        f"(prompt tokens processed: {r['prompt_processed'].get('restored')})",
        f"  first token, transcript re-processed: {r['ttft_reprocessed_s']} s, median {r['median_reprocessed_s']} s "
        f"(prompt tokens processed: {r['prompt_processed'].get('re-processed')})",
        f"  restored is {r['speedup']}x faster (target >= {r['target_speedup']}x: "
        f"{ok(r['speedup'] >= r['target_speedup'])})",
        f"  on disk: {r['bytes'] / 1e6:.1f} MB, {r['mb_per_1000_tokens']} MB per 1000 tokens; copied out in "
        f"{r['copy_s']} s on the scheduler thread, written in {r['write_s']} s more by the store's own thread "
        f"(the UI thread does none of it)",
        f"  in the TUI: while a {r['ui']['saved_tokens']}-token turn's KV was written ({r['ui']['save_wall_s']} s), "
        f"the UI thread used {r['ui']['ui_share'] * 100:.1f}% of a core (target < 10%: "
        f"{ok(r['ui']['ui_share'] < 0.10)})",
        f"  edit and continue: changed from token {e['changed_from_token']} of {e['prompt_tokens']}: decoded "
        f"{e['decoded']} tokens (the tail after the change: {e['expected']})",
    ])
