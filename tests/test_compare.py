"""Side-by-side temperatures: batched panes on the real model, in the engine, the
console and the TUI."""

from __future__ import annotations

import json

import pytest

from mullama_tui.engine.generation import drain_together
from mullama_tui.engine.types import FinishReason, Request, SamplerParams
from mullama_tui.history import History
from mullama_tui.tui.app import MullamaApp
from mullama_tui.tui.screens.compare import CompareScreen
from mullama_tui.tui.widgets.compare_pane import ComparePane
from mullama_tui.tui.widgets.plain import PlainLines

from helpers import configure, require_batch_invariance, run_cli, until


def first_shown(lines: PlainLines) -> str:
    """The first line with text that a pane's text widget draws."""
    return next((t for t in (lines.render_line(y).text.strip() for y in range(4)) if t), "")

PROMPT = "Tell me a story about a robot who learns to paint."


def pane(t: float, n: int = 60) -> Request:
    return Request(prompt=PROMPT, mode="chat", max_tokens=n, ignore_eos=True,
                   params=SamplerParams(temperature=t, seed=4))


def test_cancelling_one_pane_leaves_the_others_running_to_completion(engine):
    engine.clear_cache()
    gens = [engine.submit(pane(t, 80)) for t in (0.2, 0.8, 1.4)]
    seen = [0, 0, 0]

    def on_events(i, events):
        seen[i] += sum(1 for e in events if not e.done)
        if i == 1 and seen[1] >= 5:
            gens[1].cancel()

    drain_together(gens, interval=0.02, on_events=on_events)
    assert gens[1].finish_reason is FinishReason.CANCELLED
    assert gens[1].stats.generated_tokens < 80
    assert [gens[i].finish_reason for i in (0, 2)] == [FinishReason.LENGTH] * 2
    assert [gens[i].stats.generated_tokens for i in (0, 2)] == [80, 80]


def compare_panes() -> list[dict]:
    r = run_cli("compare", "--no-tui", "--json", "--seed", "9", "--temps", "0.1,1.0,1.5", "-n", "30",
                "--raw", "The old lighthouse keeper")
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_compare_console_panes_are_complete_and_distinct():
    panes = compare_panes()
    assert [p["temperature"] for p in panes] == [0.1, 1.0, 1.5] and {p["seed"] for p in panes} == {9}
    assert len({p["text"] for p in panes}) == 3
    for p in panes:
        assert p["done"] and p["finish_reason"] in ("length", "eos") and p["text"]
        assert 0 < p["stats"]["generated_tokens"] <= 30


def test_compare_console_pane_equals_run_with_same_temperature_and_seed(batch_drift):
    require_batch_invariance(batch_drift)
    panes = compare_panes()
    for p in panes[1:]:
        single = run_cli("run", "--json", "--seed", "9", "--temperature", str(p["temperature"]),
                         "-n", "30", "--raw", "The old lighthouse keeper")
        events = [json.loads(line) for line in single.stdout.splitlines()]
        assert "".join(e["text"] for e in events) == p["text"]


def test_run_temps_prints_each_pane_with_its_stats():
    r = run_cli("run", "--temps", "0.2,0.9", "--seed", "3", "-n", "20", "Hi")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("=== temperature") == 2
    assert "temperature 0.2 · seed 3" in r.stdout and "temperature 0.9 · seed 3" in r.stdout
    assert r.stderr.count("--- Stats ---") == 2


def test_bad_temps_are_one_line():
    r = run_cli("run", "--temps", "0.1,abc", "Hi")
    assert r.returncode == 1 and "--temps" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("compare", "--no-tui", "--temps", "0.5", "Hi")
    assert r.returncode == 2 and "2 to 6" in r.stderr


async def test_compare_screen_streams_all_panes_and_esc_cancels_all(home):
    configure(max_tokens=1500, mode="raw")
    app = MullamaApp()
    async with app.run_test(size=(130, 40)) as pilot:
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
        screen = app.screen
        await screen.run_prompt("Chapter one. The robot opened its eyes and")
        panes = list(screen.query(ComparePane))
        assert len(panes) == 3
        await until(pilot, lambda: all(p.tokens > 10 for p in panes), what="all panes to stream")
        assert len({p.text for p in panes}) == 3
        await pilot.press("escape")
        await until(pilot, lambda: not screen.running, 10, "all panes to stop")
        assert all(p.stats.finish_reason is FinishReason.CANCELLED for p in panes)
        assert all("cancelled" in str(p.query_one(".pane-stats").render()) for p in panes)
        assert isinstance(app.screen, CompareScreen)  # Esc while running does not leave
    runs = History().list()
    assert runs and runs[0].kind == "compare" and len(runs[0].stats["panes"]) == 3


async def test_ctrl_x_stops_the_pane_with_the_cursor_and_summary_rows_show(home):
    configure(max_tokens=300)
    app = MullamaApp(compare=([0.3, 0.9], None), ignore_eos=True)
    async with app.run_test(size=(130, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
        screen = app.screen
        await screen.run_prompt("Describe the sea.")
        first, second = screen.query(ComparePane)
        await until(pilot, lambda: second.tokens > 3, what="streaming")
        await pilot.press("ctrl+x")  # with the cursor in the prompt: it says how, and stops nothing
        assert any("Tab to a pane" in n.message for n in app._notifications) and screen.running
        second.query_one(".temp").focus()
        await pilot.press("ctrl+x")  # the pane with the cursor
        assert second.border_subtitle in ("running · ^x stops it", "cancelled")
        await until(pilot, lambda: not screen.running, 60, "the comparison to end")
        assert second.stats.finish_reason is FinishReason.CANCELLED
        assert first.stats.finish_reason is FinishReason.LENGTH
        assert first.stats.generated_tokens == 300 > second.stats.generated_tokens
        summary = str(first.query_one(".pane-stats").render())
        assert "tok/s" in summary and "first" in summary and "chars" in summary
        assert second.border_subtitle == "cancelled" and first.border_subtitle == "length"  # why, not how to stop it
        # a pane added after the run leaves the others' text on screen
        await pilot.press("ctrl+a")
        await until(pilot, lambda: len(screen.panes()) == 3, 5, "the third pane")
        await pilot.pause()
        top = first_shown(first.query_one(PlainLines))
        assert top and first.text.lstrip().startswith(top[:10])
        # reopen the saved comparison side by side
        await pilot.press("escape")
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the reopened comparison")
        await until(pilot, lambda: len(app.screen.query(ComparePane)) == 2, 5, "as many panes as it had")
        reopened = list(app.screen.query(ComparePane))
        await until(pilot, lambda: reopened[0].text == first.text, 5, "the pane text")
        assert reopened[1].border_subtitle == "cancelled"
        shown = reopened[0].query_one(PlainLines)
        await until(pilot, lambda: shown.size.width > 0, 5, "laid out")
        top = first_shown(shown)
        assert top and first.text.lstrip().startswith(top[:10])  # shown from its top, not pushed down


@pytest.mark.parametrize("size, stacked", [((80, 24), False), ((80, 12), True), ((160, 45), False)])
async def test_compare_layout_fills_the_height_or_stacks_readably(home, size, stacked):
    configure(max_tokens=40)
    app = MullamaApp(compare=([0.2, 0.8, 1.4], None), ignore_eos=True)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
        screen = app.screen
        await pilot.pause()
        panes = list(screen.query(ComparePane))
        grid = screen.query_one("#panes")
        assert grid.has_class("stacked") is stacked
        scroller = screen.query_one("#scroller")
        if stacked:  # one column of readable panes that scrolls
            assert {p.region.x for p in panes} == {panes[0].region.x}
            assert all(p.size.height >= 10 for p in panes)
        elif size[0] < 120:  # every pane on screen at once, each with lines of text
            assert all(scroller.region.contains_region(p.region) for p in panes)
            assert all(p.query_one("FollowingScroll").size.height >= 2 for p in panes)
        else:  # side by side, together as tall as the space between the prompt line and the box
            assert len({p.region.y for p in panes}) == 1 and len({p.region.x for p in panes}) == 3
            assert panes[0].size.height >= size[1] - 12
        # the footer is on screen, whole; the knobs take one line; the prompt is shown above
        footer = screen.query_one("Footer")
        assert footer.region.bottom == size[1] and footer.region.height == 1
        assert all(p.query_one(".knobs").size.height == 1 for p in panes)
        await screen.run_prompt("Describe the sea.")
        assert str(screen.query_one("#compare-prompt").render()) == "Describe the sea."
        await until(pilot, lambda: not screen.running, 60, "the comparison to end")
        live = [str(p.query_one(".live").render()) for p in panes]
        assert all("40 tok" in t and "/s" in t for t in live), live
        assert all(p.border_subtitle == "length" for p in panes)  # why it stopped, on its border
        if not stacked:
            stats = [str(p.query_one(".pane-stats").render()) for p in panes]
            assert all(s.startswith("length · 40 tok") for s in stats), stats
            assert all(len(s) <= p.query_one(".pane-stats").size.width for s, p in zip(stats, panes))
        total = str(screen.query_one("#total").render())
        assert "tok/s" in total and "120 tok" in total and "3 panes" in total
        assert screen.query_one("#total-spark").data[-1] > 0


async def test_f4_carries_the_typed_prompt_to_the_compare_screen(home):
    app = MullamaApp()
    async with app.run_test(size=(130, 40)) as pilot:
        from mullama_tui.tui.widgets.prompt import PromptInput

        app.chat.query_one(PromptInput).load_text("What does temperature do?")
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
        assert app.screen.query_one(PromptInput).text == "What does temperature do?"
        assert not app.screen.running  # carried over, not started: Enter runs it
