"""Snapshot tests of the stable screens (pytest-textual-snapshot). Regenerate after an
intended change with:  pytest tests/test_snapshots.py --snapshot-update"""

from __future__ import annotations

import pytest

from mullama_tui.tui.app import MullamaApp

from helpers import configure, until


async def loaded(pilot) -> None:
    """Wait for conditions, not time: the model is loaded and its worker has ended."""
    app = pilot.app
    await until(pilot, lambda: app.state == "ready" and not app.workers, 60, "the model to load")
    await pilot.pause()


@pytest.fixture(autouse=True)
def fresh_home(home):
    # A steady cursor from the start: a blinking one turned off after mounting could still
    # be hidden by a blink tick already queued, and that snapshot failed under load.
    configure(seed=0, cursor_blink=False)
    return home


def test_the_main_screen_is_ready_and_says_what_to_do(snap_compare):
    assert snap_compare(MullamaApp(), terminal_size=(100, 30), run_before=loaded)


async def unfocused(pilot) -> None:
    """Under a modal, the prompt's cursor may or may not be drawn depending on when the
    screen below last rendered; with no focus it is never drawn."""
    await loaded(pilot)
    pilot.app.set_focus(None)
    await pilot.pause()


def test_f1_lists_every_key_of_the_screen_and_the_app(snap_compare):
    async def before(pilot):
        await unfocused(pilot)
        await pilot.press("f1")
        await pilot.pause()

    assert snap_compare(MullamaApp(), terminal_size=(100, 34), run_before=before)


def test_f2_shows_every_parameter_in_one_form(snap_compare):
    async def before(pilot):
        await unfocused(pilot)
        await pilot.press("f2")
        await pilot.pause()

    assert snap_compare(MullamaApp(), terminal_size=(100, 40), run_before=before)


@pytest.mark.parametrize("size", [(80, 24), (160, 40)], ids=["narrow", "wide"])
def test_compare_panes_sit_side_by_side_or_stack_when_narrow(snap_compare, size):
    async def before(pilot):
        await loaded(pilot)
        await pilot.press("f4")
        await pilot.pause()
        await loaded(pilot)  # the compare screen has its own prompt

    assert snap_compare(MullamaApp(), terminal_size=size, run_before=before)


def test_the_token_view_colours_each_token_by_its_probability(snap_compare):
    """The token view on a fixed, greedy reply: colours, boundaries, the cursor and the panel."""
    configure(seed=0, cursor_blink=False, token_view=True, temperature=0.0, repeat_penalty=1.0,
              max_tokens=24, mode="raw")

    async def before(pilot):
        from mullama_tui.tui.widgets.tokens import TokenView

        await loaded(pilot)
        app = pilot.app
        prompt = app.chat.query_one("#prompt")
        prompt.load_text("The capital of France is")
        await pilot.press("enter")
        await until(pilot, lambda: app.chat.last_stats is not None and app.state == "ready", 60, "the reply")
        view = app.chat.query_one(TokenView)
        view.focus()
        view.select(1)
        app.query_one("Gauge").display = False  # its timings differ from run to run
        await pilot.pause()

    assert snap_compare(MullamaApp(), terminal_size=(120, 30), run_before=before)


def _thinking_app(fed: list):
    """The app on a scripted engine whose generation the test feeds by hand: a stream held
    mid-thinking cannot be produced on demand by a real model (a snapshot needs it still)."""
    from helpers import ScriptedEngine, fed_generation

    holder = {}

    def submit(request):
        holder["gen"] = fed_generation(request, [])
        return holder["gen"]

    configure(seed=0, cursor_blink=False, max_tokens=64)
    return MullamaApp(engine=ScriptedEngine(submit)), holder


THOUGHTS = ["The user", " asks for", " 2+2.", " Two and", " two make", " four."]


async def _think(pilot, holder, answer: bool) -> None:
    from mullama_tui.engine.types import FinishReason, Stats, TokenEvent

    app = pilot.app
    await until(pilot, lambda: app.state == "ready", 5, "the scripted engine")
    prompt = app.chat.query_one("#prompt")
    prompt.load_text("What is 2+2?")
    prompt.focus()
    await pilot.pause()
    await pilot.press("enter")
    await until(pilot, lambda: "gen" in holder, 5, "the request")
    gen = holder["gen"]
    for i, t in enumerate(THOUGHTS):
        gen.push(TokenEvent("", 100 + i, i, thinking=t, channel="thinking"))
    if answer:
        gen.push(TokenEvent("It is **4**.", 200, len(THOUGHTS)))
        stats = Stats(finish_reason=FinishReason.EOS, generated_tokens=7, thinking_tokens=6, answer_tokens=1,
                      thinking_time=12.3, ttft_answer=12.4)
        gen.push(TokenEvent("", -1, 7, FinishReason.EOS, stats))
        await until(pilot, lambda: app.chat.last_stats is not None, 5, "the end")
    else:
        from mullama_tui.tui.widgets.turn import ThinkingBlock

        await until(pilot, lambda: bool(app.chat.query(ThinkingBlock)) and "four" in app.chat.query_one(
            ThinkingBlock).branch.thinking, 5, "the thinking")
    app.query_one("Gauge").display = False  # its timings differ from run to run
    await pilot.pause()


@pytest.mark.parametrize("state", ["streaming", "folded", "unfolded"])
def test_a_thinking_block_streams_then_folds_to_a_summary(snap_compare, state):
    app, holder = _thinking_app([])

    async def before(pilot):
        await _think(pilot, holder, answer=state != "streaming")
        if state == "unfolded":
            await pilot.press("ctrl+o")
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 24), run_before=before)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
def test_history_is_a_row_per_conversation_at_80_and_120_columns(snap_compare, size):
    from test_tui import _conversation_runs

    _conversation_runs()

    async def before(pilot):
        await unfocused(pilot)
        await pilot.press("f3")
        await until(pilot, lambda: pilot.app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("right")  # the chat's runs under it
        await pilot.pause()

    assert snap_compare(MullamaApp(), terminal_size=size, run_before=before)


def test_f2_says_what_is_wrong_under_the_field_at_80x24(snap_compare):
    async def before(pilot):
        await unfocused(pilot)
        await pilot.press("f2")
        await pilot.pause()
        pilot.app.screen.query_one("#temperature").value = "hot"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: pilot.app.screen.query_one("#temperature-error").has_class("-shown"), 5,
                    "the error")
        pilot.app.set_focus(None)
        await pilot.pause()

    assert snap_compare(MullamaApp(), terminal_size=(80, 24), run_before=before)


def test_a_notification_covers_nothing_being_typed_at_80x24(snap_compare):
    configure(seed=0, cursor_blink=False, system="You are a helpful assistant who answers briefly.")

    async def before(pilot):
        await loaded(pilot)
        await pilot.press("ctrl+r")  # a notification: "raw mode"
        await pilot.press("ctrl+r")  # and back: "chat mode"
        await pilot.pause()

    assert snap_compare(MullamaApp(), terminal_size=(80, 24), run_before=before)


def test_compare_after_a_run_with_one_pane_cancelled(snap_compare):
    """Three finished panes, the second cancelled: borders, summary rows, the line under
    them. A scripted engine feeds fixed text and figures (a real model's tok/s change from
    run to run, and a snapshot needs them still): a pure layout test."""
    from mullama_tui.engine.types import FinishReason, Stats, TokenEvent

    from helpers import ScriptedEngine, fed_generation

    gens = []

    def submit(request):
        gens.append(fed_generation(request, []))
        return gens[-1]

    configure(seed=0, cursor_blink=False, max_tokens=24, mode="raw")
    app = MullamaApp(engine=ScriptedEngine(submit), compare=([0.1, 0.7, 1.2], None))
    texts = ["The sea is calm and blue under a clear sky.", "Waves crash on",
             "Storm-grey water heaves, and gulls wheel over the foam."]

    async def before(pilot):
        from mullama_tui.tui.screens.compare import CompareScreen

        await until(pilot, lambda: isinstance(pilot.app.screen, CompareScreen) and pilot.app.state == "ready", 10,
                    "the compare screen")
        screen = pilot.app.screen
        await screen.run_prompt("Describe the sea.")
        await until(pilot, lambda: len(gens) == 3, 10, "the three requests")
        for i, (gen, text) in enumerate(zip(gens, texts)):
            words = text.split(" ")
            for k, w in enumerate(words):
                gen.push(TokenEvent(w if k == 0 else " " + w, 100 + k, k))
            reason = FinishReason.CANCELLED if i == 1 else (FinishReason.LENGTH if i == 2 else FinishReason.EOS)
            stats = Stats(finish_reason=reason, prompt_tokens=5, generated_tokens=len(words),
                          gen_time=len(words) / 40.0, ttft=0.12, seed=42)
            gen.push(TokenEvent("", -1, len(words), reason, stats))
        await until(pilot, lambda: not screen.running, 10, "the run to end")
        screen.query_one("#total-spark").display = False  # its bars are the live rates, which vary
        pilot.app.set_focus(None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 40), run_before=before)
