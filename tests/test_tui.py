"""The real app, driven with Pilot on the real bundled model (MULLAMA_TUI_HOME is a
fresh temporary folder per test, so settings and history start empty)."""

from __future__ import annotations

import pytest
from textual.widgets import Markdown, Static

from mullama_tui.config import Settings
from mullama_tui.history import History, RunRecord
from mullama_tui.tui.app import MullamaApp
from mullama_tui.tui.widgets.gauge import Gauge
from mullama_tui.tui.widgets.plain import PlainLines, RawOutput
from mullama_tui.tui.widgets.prompt import PromptInput

from helpers import LONG_PROMPT as LONG
from helpers import ScriptedEngine, configure, fed_generation, send, until


@pytest.mark.parametrize("key", ["escape", "ctrl+c"])
async def test_prompt_streams_and_cancel_key_stops_it(home, key):
    configure(max_tokens=1000)
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, LONG)
        gauge = app.query_one(Gauge)
        await until(pilot, lambda: gauge.tokens > 15, what="tokens to stream in")
        assert app.state == "generating"
        await until(pilot, lambda: gauge.rate > 0, what="a live tok/s")
        assert len(app.chat.reply_text) > 20
        await pilot.press(key)
        await app.workers.wait_for_complete()
        await until(pilot, lambda: app.state == "cancelled", 5, "the cancelled state")
        text = app.chat.reply_text
        # the worker that posts the text has ended: every message it posted is handled once
        # the app is idle, so anything late would be in by now
        await pilot.pause()
        assert app.engine.scheduler.active == 0 and app.chat.reply_text == text  # the text stopped growing
        assert gauge.finish == "cancelled" and app.chat.last_stats.generated_tokens < 1000
        assert app.query(".cancel-mark")
        assert app.chat.current is None
        # the partial answer stays in the pane and in the conversation
        assert app.chat.messages[-1] == {"role": "assistant", "content": text}


async def test_chat_reply_renders_markdown_and_follow_up_reuses_the_cache(home):
    configure(max_tokens=40, temperature=0.0)
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "What is the capital of France?")
        await until(pilot, lambda: app.state == "ready" and app.chat.last_stats is not None, what="reply")
        assert app.query(Markdown) and app.chat.reply_text
        first = app.chat.last_stats
        await send(pilot, app, "And of Germany?")
        await until(pilot, lambda: app.chat.last_stats is not first and app.state == "ready", what="follow-up")
        assert app.chat.last_stats.cached_tokens >= first.prompt_tokens
        assert [m["role"] for m in app.chat.messages] == ["user", "assistant", "user", "assistant"]


@pytest.mark.parametrize("mode", ["chat", "raw"])
async def test_pane_follows_new_text_until_the_reader_scrolls_up(home, mode):
    from textual.containers import VerticalScroll

    configure(max_tokens=1500, mode=mode)
    app = MullamaApp(ignore_eos=True)
    async with app.run_test(size=(80, 20)) as pilot:
        out = app.query_one("#output", VerticalScroll)
        await send(pilot, app, LONG)
        await until(pilot, lambda: out.max_scroll_y > 5, 60, "the reply to overflow the pane")
        await until(pilot, lambda: out.max_scroll_y > 10 and out.scroll_y == out.max_scroll_y, 30, "following")
        out.scroll_to(y=0, animate=False)  # what the mouse wheel and PageUp do
        grown = out.max_scroll_y + 4
        await until(pilot, lambda: out.max_scroll_y > grown, 60, "more text")
        assert out.scroll_y == 0  # the reader stays where they are
        out.scroll_end(animate=False)  # back to the end: following again
        grown = out.max_scroll_y + 4
        await until(pilot, lambda: out.max_scroll_y > grown, 60, "more text")
        await until(pilot, lambda: out.scroll_y == out.max_scroll_y, 5, "following again")
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: app.state == "cancelled", 10, "the cancelled state")


async def test_new_conversation_mid_stream_drops_the_old_reply_cleanly(home):
    configure(max_tokens=600)
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, LONG)
        await until(pilot, lambda: len(app.chat.reply_text) > 100, 60, "text to stream in")
        await pilot.press("ctrl+n")
        await app.workers.wait_for_complete()
        await until(pilot, lambda: app.chat.current is None, 10, "the generation to end")
        await pilot.pause()  # what the ended worker posted is handled by now
        out = app.query_one("#output")
        assert app.is_running and [w.id for w in out.children] == ["empty-hint"]  # no late text, no mark
        assert app.chat.messages == []  # the old reply is not part of the new conversation
        await send(pilot, app, "Hello")
        await until(pilot, lambda: app.chat.current is None and len(app.chat.messages) == 2, 60, "a fresh turn")
        assert app.chat.messages[0] == {"role": "user", "content": "Hello"}
        assert app.chat.last_stats.prompt_tokens < 40  # the old turn is not in the prompt


async def test_changed_parameters_reach_the_engine_and_persist(home):
    app = MullamaApp()
    async with app.run_test(size=(100, 40)) as pilot:
        await until(pilot, lambda: app.state == "ready", what="model")
        await pilot.press("f2")
        screen = app.screen
        screen.query_one("#max_tokens").value = "7"
        screen.query_one("#temperature").value = "0"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is not screen, 5, "the modal to close")
        await send(pilot, app, LONG)
        await until(pilot, lambda: app.chat.last_stats is not None, what="the run")
        assert app.chat._run_request.params.temperature == 0.0
        assert app.chat.last_stats.generated_tokens <= 7
    saved = Settings.load()
    assert saved.max_tokens == 7 and saved.temperature == 0.0


async def test_bad_parameter_is_refused_with_a_message(home):
    app = MullamaApp()
    async with app.run_test(size=(100, 40)) as pilot:
        await pilot.press("f2")
        screen = app.screen
        screen.query_one("#top_p").value = "1.5"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: "top_p" in str(screen.query_one("#error").render()), 5, "the error shown")
        assert app.screen is screen


async def test_f2_says_what_is_wrong_next_to_the_field_with_save_always_on_screen(home):
    from textual.widgets import Button, TextArea

    configure(system="Be brief.")
    app = MullamaApp(model="/no/such/model.gguf")
    async with app.run_test(size=(80, 24)) as pilot:
        line = app.chat.query_one("#system-line")
        await until(pilot, lambda: "system: Be brief." in str(line.render()), 5, "the system prompt on the main screen")
        await pilot.press("f2")
        screen = app.screen
        screen.query_one("#gpu_layers").value = "lots"  # the last field: below the fold at 24 lines
        screen.query_one("#temperature").value = "hot"
        await pilot.press("ctrl+s")
        note = screen.query_one("#temperature-error")
        await until(pilot, lambda: note.has_class("-shown"), 5, "the error under the field")
        assert "'hot' is not a number" in str(note.render()) and screen.focused is screen.query_one("#temperature")
        screen.query_one("#temperature").value = "0.3"
        await pilot.press("ctrl+s")
        note = screen.query_one("#gpu_layers-error")
        await until(pilot, lambda: note.has_class("-shown"), 5, "the next error")
        await until(pilot, lambda: note.region.height > 0 and screen.region.contains_region(note.region), 5,
                    "the field scrolled into view")
        assert not screen.query_one("#temperature-error").has_class("-shown")  # the mended one is quiet
        for button in screen.query(Button):
            assert button.region.height and screen.region.contains_region(button.region)
        screen.query_one("#gpu_layers").value = ""
        screen.query_one("#system", TextArea).load_text("Be brief.\nAnswer in French.")  # two lines
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is not screen, 5, "saved")
    assert Settings.load().system == "Be brief.\nAnswer in French." and Settings.load().temperature == 0.3


async def test_history_survives_a_restart_and_reopens(home):
    configure(max_tokens=12)
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Name a colour.")
        await until(pilot, lambda: app.chat.last_stats is not None and app.state == "ready", what="run")
        output = app.chat.reply_text
    runs = History().list()
    assert len(runs) == 1 and runs[0].output == output
    assert runs[0].model == "SmolLM2-135M-Instruct Q4_1"  # a name a person knows, not the GGUF's own
    assert app.title == "mullama-tui · SmolLM2-135M-Instruct Q4_1"
    app2 = MullamaApp()
    async with app2.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        await until(pilot, lambda: app2.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("enter")
        await until(pilot, lambda: len(app2.chat.messages) == 2, 5, "the reopened conversation")
        assert app2.chat.messages[-1]["content"] == output


async def test_theme_choice_persists(home):
    app = MullamaApp()
    async with app.run_test() as pilot:
        assert app.theme == "mullama-dark"
        app.theme = "mullama-light"
        await pilot.pause()
    assert Settings.load().theme == "mullama-light"
    app2 = MullamaApp()
    async with app2.run_test():
        assert app2.theme == "mullama-light"


async def test_broken_theme_file_is_reported_not_fatal(home):
    (home / "config" / "themes").mkdir(parents=True)
    (home / "config" / "themes" / "bad.toml").write_text("name = [broken")
    app = MullamaApp()
    async with app.run_test() as pilot:
        await pilot.pause()
        assert any("bad.toml" in n.message for n in app._notifications)
        assert app.theme == "mullama-dark"


async def test_markup_like_text_shows_literally(home):
    History().add(RunRecord(model="m", mode="raw", prompt="[bold]p", output="[red]x[/red] [bold"))
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.query(".assistant-turn")) == 1, 5, "the reopened run")
        user = str(app.query_one(".user-turn", Static).render())
        assert user == "[bold]p"
        raw = app.query_one(RawOutput)
        assert raw.text == "[red]x[/red] [bold"
        lines = raw.query_one(PlainLines)
        await until(pilot, lambda: lines.size.width > 0, 5, "the reopened text laid out")
        assert lines.render_line(0).text.rstrip() == "[red]x[/red] [bold"  # drawn as is, no markup


async def test_missing_model_shows_an_error_instead_of_crashing(home):
    app = MullamaApp(model="/no/such/model.gguf")
    async with app.run_test() as pilot:
        await until(pilot, lambda: app.state == "error", 10, "the error state")
        assert any("not found" in n.message for n in app._notifications)
        await send(pilot, app, "hello")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.chat.current is None and app.is_running


async def test_prompt_history_recall_and_newline_key(home):
    app = MullamaApp(model="/no/such/model.gguf")
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptInput)
        prompt.focus()
        for text in ("first", "second"):
            prompt.load_text(text)
            await pilot.press("enter")
        await pilot.press("up")
        assert prompt.text == "second"
        await pilot.press("up")
        assert prompt.text == "first"
        await pilot.press("down", "down")
        # back to the draft: what was in the box before Up ("second", kept there because
        # there is no model to send it to)
        assert prompt.text == "second"
        prompt.clear()
        await pilot.press("a", "ctrl+j", "b")
        assert prompt.text == "a\nb"


async def test_raw_mode_streams_plain_text_in_bounded_chunks(home):
    configure(max_tokens=400, mode="raw")
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await send(pilot, app, "Chapter one. The lighthouse keeper woke before dawn, and")
        await until(pilot, lambda: app.chat.last_stats is not None, 60, "the run")
        raw = app.query_one(RawOutput)
        assert raw.text == app.chat.reply_text and len(raw.text) > 100
        assert not app.query(Markdown)


async def test_keymap_from_config_rebinds_keys(home):
    configure(keymap={"help": "f12"})
    app = MullamaApp(model="/no/such/model.gguf")
    async with app.run_test() as pilot:
        await pilot.press("f12")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HelpScreen", 5, "the help screen")
        await pilot.press("escape")
        await pilot.press("f1")  # the old key no longer opens it
        await pilot.pause()  # the key is handled, and a screen it pushed would be there
        assert app.screen.__class__.__name__ != "HelpScreen"


# -- failures a real model cannot produce on demand ------------------------------------------

async def test_a_crashing_worker_never_wedges_the_chat_screen(home):
    from mullama_tui.engine.types import FinishReason, Stats, TokenEvent

    calls = []

    def submit(request):
        calls.append(request)
        if len(calls) == 1:
            raise RuntimeError("boom in the engine")
        stats = Stats(finish_reason=FinishReason.LENGTH, generated_tokens=1)
        return fed_generation(request, [TokenEvent("Hello", 5, 0), TokenEvent("", -1, 1, FinishReason.LENGTH, stats)])

    app = MullamaApp(engine=ScriptedEngine(submit))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state == "ready", 5, "the scripted engine")
        await send(pilot, app, "first")
        await until(pilot, lambda: app.state == "error", 5, "the error state")
        assert app.chat.current is None
        assert any("boom in the engine" in n.message for n in app._notifications)
        assert app.chat.messages == []  # the failed turn is not left half in the conversation
        await send(pilot, app, "second")  # the screen takes prompts again
        await until(pilot, lambda: app.state == "ready" and app.chat.reply_text == "Hello", 5, "the second run")
        assert len(calls) == 2 and app.chat.messages[-1] == {"role": "assistant", "content": "Hello"}


async def test_an_engine_error_mid_reply_keeps_the_text_and_says_why(home):
    from mullama_tui.engine.types import FinishReason, Stats, TokenEvent

    stats = Stats(finish_reason=FinishReason.ERROR, generated_tokens=2, error="llama_decode failed (-3)")

    def submit(request):
        return fed_generation(request, [TokenEvent("Partial ", 5, 0), TokenEvent("text", 6, 1),
                                        TokenEvent("", -1, 2, FinishReason.ERROR, stats)])

    app = MullamaApp(engine=ScriptedEngine(submit))
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: app.state == "ready", 5, "the scripted engine")
        await send(pilot, app, "go")
        await until(pilot, lambda: app.state == "error", 5, "the error state")
        assert app.chat.reply_text == "Partial text" and app.chat.last_stats is stats
        assert any("llama_decode failed" in n.message for n in app._notifications)
        assert app.query_one(Gauge).finish == "error"
    runs = History().list()
    assert runs[0].finish_reason == "error" and runs[0].output == "Partial text"


async def test_a_crashing_compare_worker_ends_every_pane_and_esc_leaves(home):
    from mullama_tui.tui.screens.compare import CompareScreen
    from mullama_tui.tui.widgets.compare_pane import ComparePane

    def submit(request):
        raise RuntimeError("compare boom")

    app = MullamaApp(engine=ScriptedEngine(submit))
    async with app.run_test(size=(130, 40)) as pilot:
        await until(pilot, lambda: app.state == "ready", 5, "the scripted engine")
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
        screen = app.screen
        await screen.run_prompt("anything")
        await until(pilot, lambda: not screen.running, 5, "the comparison to end")
        panes = list(screen.query(ComparePane))
        assert all(p.done and p.state == "error" for p in panes)
        assert any("compare boom" in n.message for n in app._notifications)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, CompareScreen), 5, "Esc to leave")


async def test_an_empty_chat_says_what_to_do_until_the_first_prompt(home):
    configure(max_tokens=5)
    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        hint = app.chat.query_one("#empty-hint", Static)
        assert "Enter" in str(hint.render()) and "F1" in str(hint.render())
        await until(pilot, lambda: app.state == "ready", what="the model")
        await send(pilot, app, "Hi")
        await until(pilot, lambda: app.chat.last_stats is not None, what="the reply")
        assert not app.chat.query("#empty-hint")


async def test_prompt_processing_shows_progress_then_the_reused_share(home):
    """A long prompt: the gauge shows tokens processed of the total while it is decoded;
    a follow-up turn says how much of its prompt came from the KV cache."""
    configure(max_tokens=4, temperature=0.0)
    app = MullamaApp()
    long_prompt = "Summarise this: " + "The tide came in over the rocks and went out again. " * 130
    async with app.run_test(size=(110, 30)) as pilot:
        await until(pilot, lambda: app.state == "ready", what="the model")
        gauge = app.query_one(Gauge)
        seen: list[tuple[int, str]] = []
        await send(pilot, app, long_prompt)

        def sample() -> bool:  # what the gauge says while the prompt is decoded, until the end
            if gauge.running and gauge.t_first is None and gauge.prompt_tokens:
                seen.append((gauge.prompt_done, gauge.rate_text.plain))
            return app.chat.last_stats is not None

        await until(pilot, sample, 120, "the long prompt's reply")
        total = app.chat.last_stats.prompt_tokens
        assert total > 1000
        shown = [label for done, label in seen if 0 < done < total]  # progress while it was decoded
        assert shown and all(label.startswith("prompt ") and f"/{total}" in label for label in shown), seen
        first = app.chat.last_stats
        await send(pilot, app, "And in one word?")
        await until(pilot, lambda: app.chat.last_stats is not first and app.state == "ready", what="the follow-up")
        st = app.chat.last_stats
        assert st.cached_tokens >= first.prompt_tokens
        details = gauge.details_text.plain
        # in full where the line has room, in fewer letters where it has not
        assert (f"{st.cached_tokens} of {st.prompt_tokens} reused" in details
                or f"prompt {st.prompt_tokens} ({st.cached_tokens} reused)" in details), details


async def test_the_gauge_shows_the_threads_it_decodes_on(home):
    configure(max_tokens=24)
    app = MullamaApp()
    async with app.run_test(size=(160, 30)) as pilot:
        await send(pilot, app, "Hello")
        gauge = app.query_one(Gauge)
        await until(pilot, lambda: app.chat.last_stats is not None and app.state == "ready", 60, "a reply")
        stats = app.chat.last_stats
        assert gauge.threads == f"threads {stats.n_threads}/{stats.cores} auto" and stats.threads_auto
        assert gauge.details_text.plain.endswith(gauge.threads)
        assert len(gauge.details_text.plain) <= 118  # all of it fits the gauge at 120 columns


async def test_ctrl_y_copies_the_whole_reply_and_the_compare_panes(home):
    """What a model wrote can be copied without the terminal's own selection (which takes
    the borders, gauge and prompt with it): Ctrl+Y in the chat copies the last reply, in
    the compare screen the pane whose knob has the focus, or every pane."""
    configure(max_tokens=12, temperature=0.0, mode="raw")
    app = MullamaApp()
    async with app.run_test(size=(120, 36)) as pilot:
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert not app.clipboard  # nothing to copy yet: a warning, not an empty clipboard
        await send(pilot, app, "The capital of France is")
        await until(pilot, lambda: app.state == "ready" and app.chat.last_stats is not None, what="reply")
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert app.clipboard == app.chat.reply_text != ""

        from mullama_tui.tui.screens.compare import CompareScreen
        from mullama_tui.tui.widgets.compare_pane import ComparePane

        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), what="the compare screen")
        screen = app.screen
        await screen.run_prompt("The sea is")
        await until(pilot, lambda: not screen.running and all(p.done for p in screen.query(ComparePane)),
                    60, "the panes to finish")
        panes = list(screen.query(ComparePane))
        await pilot.press("ctrl+y")  # the focus is in the prompt box: every pane
        await pilot.pause()
        assert all(f"## t {p.temperature:g} · seed {p.seed}\n\n{p.text}" in app.clipboard for p in panes)
        panes[1].query_one(".temp").focus()
        await pilot.press("ctrl+y")
        await pilot.pause()
        assert app.clipboard == panes[1].text != ""


async def test_the_prompt_keeps_its_draft_and_pages_scroll_the_conversation(home):
    """Up goes back through earlier prompts and Down comes back to what was being typed
    (it was lost before); PageUp/PageDown scroll the conversation from the prompt; Ctrl+N
    empties the gauge's context count with the conversation."""
    configure(max_tokens=200, temperature=0.0, mode="raw")
    app = MullamaApp(ignore_eos=True)
    async with app.run_test(size=(100, 24)) as pilot:
        await send(pilot, app, "The history of the lighthouse, chapter one:")
        await until(pilot, lambda: app.chat.ended == 1 and app.state == "ready", 60, "the reply")
        prompt = app.query_one(PromptInput)
        prompt.insert("my draft")
        await pilot.press("up")
        assert prompt.text == "The history of the lighthouse, chapter one:"
        await pilot.press("down", "down", "down", "down")
        assert prompt.text == "my draft"
        out = app.chat.query_one("#output")
        await until(pilot, lambda: out.max_scroll_y > 0 and out.scroll_y == out.max_scroll_y, 10, "the end in view")
        bottom = out.scroll_y
        await pilot.press("pageup")
        await until(pilot, lambda: out.scroll_y < bottom, 5, "a page up")
        await pilot.press("pagedown")
        await until(pilot, lambda: out.scroll_y == bottom, 5, "back down")
        gauge = app.query_one(Gauge)
        assert gauge.prompt_tokens + gauge.tokens > 200
        await pilot.press("ctrl+n")
        await until(pilot, lambda: gauge.prompt_tokens + gauge.tokens == 0, 5, "an empty gauge")
        assert f"context 0/{gauge.n_ctx}" in gauge.details_text.plain


async def test_the_palette_lists_the_apps_commands_before_anything_is_typed(home):
    from textual.command import CommandPalette
    from textual.widgets import OptionList

    app = MullamaApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), 5, "the palette")
        options = app.screen.query_one(OptionList)
        await until(pilot, lambda: options.option_count >= 10, 5, "the commands")
        shown = " ".join(str(options.get_option_at_index(i).prompt) for i in range(options.option_count))
        assert "Parameters" in shown and "Edit a turn" in shown and "Compare temperatures" in shown


async def test_f3_searches_as_you_type_asks_before_deleting_and_exports_from_anywhere(home):
    from textual.widgets import DataTable, Input

    History().add(RunRecord(model="m", mode="raw", prompt="about lighthouses", output="o"))
    History().add(RunRecord(model="m", mode="raw", prompt="about gardens", output="o"))
    app = MullamaApp(model="/no/such/model.gguf")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        screen = app.screen
        table = screen.query_one(DataTable)
        assert screen.focused is table and table.row_count == 2
        await pilot.press("g", "a", "r")  # typed on the list: it goes to the search box
        await until(pilot, lambda: table.row_count == 1, 5, "the search to apply")
        assert screen.query_one("#search", Input).value == "gar"
        await pilot.press("ctrl+e")  # with the focus in the search box
        await until(pilot, lambda: any("exported to" in n.message for n in app._notifications), 5, "the export")
        table.focus()
        await pilot.press("delete")
        await pilot.pause()
        assert len(History().list()) == 2 and any("Del again" in n.message for n in app._notifications)
        await pilot.press("delete")
        await until(pilot, lambda: len(History().list()) == 1, 5, "the deletion")
        assert History().list()[0].prompt == "about lighthouses"


async def test_notifications_never_cover_the_prompt(home):
    from textual.widgets._toast import Toast

    app = MullamaApp(model="/no/such/model.gguf")
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await pilot.press("ctrl+r")  # says "raw mode" in a notification
        await until(pilot, lambda: any(t.region.height for t in app.screen.query(Toast)), 5,
                    "a notification laid out")
        prompt = app.query_one(PromptInput).region
        for toast in app.screen.query(Toast):
            assert not toast.region.overlaps(prompt), (toast.region, prompt)
            assert toast.region.y < prompt.y


def _conversation_runs() -> None:
    """One chat of two turns and a branch, a comparison, and a run from before
    conversations had names (its model column is the long form of those days)."""
    h = History()
    q1 = {"role": "user", "content": "First question about owls"}
    a1 = {"role": "assistant", "content": "Owls hunt at night."}
    q2 = {"role": "user", "content": "And in the day?"}
    old = "Smollm2 135M 8k Lc100K Mix1 Ep2 (98 MB, llama 135M Q4_1, SmolLM2-135M-Instruct.Q4_1.gguf, CPU)"
    h.add(RunRecord(model=old, mode="raw", prompt="an old raw run", output="o", created=1000.0,
                    stats={"generated_tokens": 5}))
    h.add(RunRecord(model="SmolLM2-135M-Instruct Q4_1", mode="chat", prompt="", messages=[q1], output=a1["content"],
                    params={"conversation": "chat-owls", "system": "You are an ornithologist."}, created=2000.0,
                    stats={"generated_tokens": 6}, finish_reason="stop"))
    h.add(RunRecord(model="SmolLM2-135M-Instruct Q4_1", mode="chat", prompt="", messages=[q1, a1, q2],
                    output="They sleep.", params={"conversation": "chat-owls"}, created=3000.0,
                    stats={"generated_tokens": 3}, finish_reason="cancelled"))
    h.add(RunRecord(model="SmolLM2-135M-Instruct Q4_1", mode="chat", prompt="", messages=[q1, a1, q2],
                    output="They roost.", params={"conversation": "chat-owls", "branch": {"of": 3, "at": 1}},
                    created=3100.0, stats={"generated_tokens": 2}, finish_reason="stop"))
    h.add(RunRecord(model="SmolLM2-135M-Instruct Q4_1", mode="chat", prompt="Name a fish", output="## t",
                    kind="compare", created=2500.0, finish_reason="compare",
                    stats={"panes": [{"stats": {"generated_tokens": 4}}, {"stats": {"generated_tokens": 7}}]}))


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_history_is_one_row_per_conversation_that_fits_the_screen(home, size):
    from textual.widgets import DataTable

    _conversation_runs()
    app = MullamaApp(model="/no/such/model.gguf")
    async with app.run_test(size=size) as pilot:
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        table = app.screen.query_one(DataTable)
        await until(pilot, lambda: table.size.width > 0, 5, "the table laid out")
        assert table.row_count == 3  # the chat (3 runs), the comparison, the old run
        cell = lambda row, col: str(table.get_cell_at((row, table.get_column_index(col))))  # noqa: E731
        assert "First question about owls" in cell(0, "title") and cell(0, "turns") == "2+1"
        assert cell(0, "tokens") == "11" and cell(0, "model").startswith("SmolLM2-135M")
        assert cell(1, "title").startswith("  compare: Name a fish") and cell(1, "tokens") == "11"
        assert cell(2, "model").startswith("Smollm2 135M") and "MB" not in cell(2, "model")  # the old long form, cut
        assert table.virtual_size.width <= table.size.width  # every column on screen: nothing to scroll to
        await pilot.press("right")  # the conversation's runs, newest first, under it
        assert table.row_count == 6 and "branch" in cell(1, "model") and "turn 2" in cell(2, "model")
        assert cell(2, "resume") == "cancelled"
        await pilot.press("down", "down", "enter")  # the cancelled second turn, marked as it was
        await until(pilot, lambda: app.screen is app.chat, 5, "the reopened run")
        await until(pilot, lambda: bool(app.query(".cancel-mark")), 5, "the cancelled mark")
        assert app.chat.messages[-1]["content"] == "They sleep."


async def test_history_export_has_the_system_prompt_and_a_conversation_deletes_whole(home):
    from textual.widgets import DataTable

    from mullama_tui.config import data_dir

    _conversation_runs()
    app = MullamaApp(model="/no/such/model.gguf")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        table = app.screen.query_one(DataTable)
        await pilot.press("right", "down", "down", "down", "ctrl+e")  # the first turn's own run
        await until(pilot, lambda: any("exported" in n.message for n in app._notifications), 5, "the export")
        md = (data_dir() / "exports" / "run-2.md").read_text()
        assert "## system\n\nYou are an ornithologist." in md and md.index("## system") < md.index("## user")
        await pilot.press("left")  # folded: the cursor is on the conversation again
        assert table.row_count == 3 and table.cursor_row == 0
        await pilot.press("delete", "delete")
        await until(pilot, lambda: len(History().list()) == 2, 5, "the conversation deleted")
        assert table.row_count == 2


async def test_f7_makes_the_reply_again_and_f8_goes_on_with_a_fresh_budget(home):
    from mullama_tui.tui.widgets.turn import AssistantTurn

    configure(max_tokens=12, mode="raw", temperature=0.9)
    app = MullamaApp(ignore_eos=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await send(pilot, app, "Once upon a time")
        await until(pilot, lambda: app.chat.ended == 1 and app.state == "ready", 60, "the reply")
        turn = app.query_one(AssistantTurn)
        original, first_seed = turn.text, app.chat.last_stats.seed
        await pilot.press("f8")
        await until(pilot, lambda: app.chat.ended == 2 and app.state == "ready", 60, "the continuation")
        assert len(turn.branches) == 2 and turn.branch.origin == "continued"
        assert turn.text.startswith(original) and len(turn.text) > len(original)
        assert app.chat.last_stats.generated_tokens == 12  # a fresh budget, not what was left of it
        await pilot.press("f7")
        await until(pilot, lambda: app.chat.ended == 3 and app.state == "ready", 60, "the new reply")
        assert len(turn.branches) == 3 and turn.branch.origin == "regenerated"
        assert app.chat.last_stats.seed != first_seed  # another seed: another reply
        await pilot.press("ctrl+b")  # back to the first
        assert turn.branch is turn.branches[0] and turn.text == original
    runs = History().list()
    assert runs[0].params["regenerated"] == {"of": runs[2].id} and runs[1].params["continued"] == {"of": runs[2].id}


async def test_enter_in_a_reply_goes_back_to_the_prompt_and_nothing_typed_is_lost(home):
    from textual.containers import VerticalScroll

    from mullama_tui.tui.widgets.tokens import TokenView
    from mullama_tui.tui.widgets.turn import AssistantTurn

    configure(max_tokens=6, token_view=True)
    app = MullamaApp(ignore_eos=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await send(pilot, app, "Hi")
        await until(pilot, lambda: app.chat.ended == 1 and app.state == "ready", 60, "the reply")
        prompt = app.query_one(PromptInput)
        view = app.chat.query_one(TokenView)
        view.focus()
        view.select(2)
        await pilot.press("enter")  # not a branch: back to the prompt
        assert app.focused is prompt and len(app.query_one(AssistantTurn).branches) == 1
        assert app.chat.current is None
        view.focus()
        await pilot.press("x")  # typed in the reply: it lands in the prompt
        assert app.focused is prompt and prompt.text == "x"
        app.chat.query_one("#output", VerticalScroll).focus()
        await pilot.press("y")
        assert app.focused is prompt and prompt.text == "xy"
        prompt.load_text("And again")
        await pilot.press("enter")
        await until(pilot, lambda: app.chat.ended == 2 and app.state == "ready", 60, "the second reply")
        views = list(app.chat.query(TokenView))
        assert len(views) == 2 and [v.can_focus for v in views] == [False, True]  # one Tab stop, the last reply


async def test_the_gauge_says_everything_in_80_columns(home):
    configure(max_tokens=8)
    app = MullamaApp()
    async with app.run_test(size=(80, 24)) as pilot:
        await send(pilot, app, "Hello")
        await until(pilot, lambda: app.chat.last_stats is not None and app.state == "ready", 60, "a reply")
        details = app.query_one(Gauge).details_text.plain
        assert len(details) <= 78, details  # the whole line on screen, none of it cut
        for figure in ("/8 tok", "1st ", "prompt ", "ctx ", "thr "):
            assert figure in details, details
