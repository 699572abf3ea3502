"""The arena: several models side by side, the agreement of two quantizations, blind votes
and their standings. Real models: the bundled one, and a Q8_0 of it made here with
llama.cpp's own quantizer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mullama_tui.engine.agreement import agreement
from mullama_tui.engine.llama import LlamaContext, LlamaModel, quantize
from mullama_tui.history import History, RunRecord, standings

from helpers import configure, run_cli, until


@pytest.fixture(scope="module")
def second(model_path: Path, tmp_path_factory) -> Path:
    """A second quantization of the bundled model (Q8_0 from its Q4_1), made once."""
    return quantize(model_path, tmp_path_factory.mktemp("second") / "SmolLM2-135M-Instruct.Q8_0.gguf", "Q8_0")


@pytest.fixture(scope="module")
def models(model_path: Path, second: Path):
    a, b = LlamaModel(model_path), LlamaModel(second)
    yield a, b
    a.close()
    b.close()


def _log_softmax(rows: np.ndarray) -> np.ndarray:
    rows = rows - rows.max(axis=1, keepdims=True)
    return rows - np.log(np.exp(rows).sum(axis=1, keepdims=True))


def _rows(model: LlamaModel, prompt: list[int], gen: list[int], batch: int) -> np.ndarray:
    """The logits that predict each of `gen`, decoded `batch` tokens at a time (the test's own
    reading, apart from agreement.py's)."""
    seq, out = prompt + gen[:-1], []
    with LlamaContext(model, 512, 1, batch, 2) as ctx:
        for start in range(0, len(seq), batch):
            ctx.batch.clear()
            idx = [ctx.batch.add(t, pos, 0, True) for pos, t in enumerate(seq[start:start + batch], start)]
            assert ctx.decode() == 0
            for pos, i in zip(range(start, start + len(idx)), idx):
                if pos >= len(prompt) - 1:
                    out.append(ctx.logits(i).astype(np.float64).copy())
    return _log_softmax(np.array(out))


def test_the_agreement_of_two_quantizations_is_the_kl_of_their_logits(models):
    a, b = models
    prompt = a.prompt_tokens("The capital of France is", chat=False)
    gen = a.tokenize(" Paris, a city known for the Eiffel Tower, fine food and long walks by the Seine.",
                     add_special=False)
    found = agreement(a, b, prompt, gen)
    assert found.n == len(gen) and len(found.kl) == len(gen) and 0.0 <= found.top1 <= 1.0
    # the same text read in one batch by the test itself: the same figures, position by position
    pa, pb = _rows(a, prompt, gen, 512), _rows(b, prompt, gen, 512)
    kl = (np.exp(pa) * (pa - pb)).sum(axis=1)
    assert np.allclose(found.kl, kl, atol=1e-6) and found.worst == int(np.argmax(kl))
    assert found.agree == list(pa.argmax(axis=1) == pb.argmax(axis=1))
    # read a token at a time instead (other kernels, other rounding): close, not equal
    pa1, pb1 = _rows(a, prompt, gen, 1), _rows(b, prompt, gen, 1)
    kl1 = (np.exp(pa1) * (pa1 - pb1)).sum(axis=1)
    assert abs(kl1.mean() - found.mean_kl) < 0.01 and found.mean_kl < 0.1  # two quantizations of one model
    # a model against itself: no divergence at all
    same = agreement(a, a, prompt, gen)
    assert same.top1 == 1.0 and same.mean_kl < 1e-9
    assert "agrees with" in found.summary("Q4_1", "Q8_0") and "most disagreement at token" in found.summary("a", "b")


def test_compare_two_models_in_the_console_with_their_agreement(home, model_path, second):
    r = run_cli("compare", "--no-tui", "--json", "-m", str(model_path), "-m", str(second), "--temps", "0.2,1.0",
                "--agreement", "-n", "12", "--raw", "--seed", "7", "The capital of France is")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    panes, agreed = lines[:-1], lines[-1]
    assert [p["model"] for p in panes] == ["SmolLM2-135M-Instruct Q4_1"] * 2 + ["SmolLM2-135M-Instruct Q8_0"] * 2
    assert [p["temperature"] for p in panes] == [0.2, 1.0, 0.2, 1.0] and {p["seed"] for p in panes} == {7}
    assert all(p["stats"]["generated_tokens"] >= 1 for p in panes)
    a = agreed["agreement"]
    assert agreed["reference"] == "SmolLM2-135M-Instruct Q4_1" and agreed["model"] == "SmolLM2-135M-Instruct Q8_0"
    assert a["tokens"] == panes[0]["stats"]["generated_tokens"] and len(a["kl"]) == a["tokens"]
    assert 0.0 <= a["top1_agreement"] <= 1.0 and a["mean_kl"] >= 0.0
    r = run_cli("compare", "--no-tui", "-m", str(model_path), "--agreement", "Hi")
    assert r.returncode == 2 and "two models" in r.stderr


def test_a_remote_pane_beside_a_local_one(home, model_path, server):
    """A pane on an OpenAI-compatible server (serve's own app on loopback) beside a local model."""
    r = run_cli("compare", "--no-tui", "--json", "-m", str(model_path), "-m", f"openai:{server.url}/v1",
                "-n", "6", "--raw", "Once upon a time")
    assert r.returncode == 0, r.stderr
    panes = [json.loads(line) for line in r.stdout.splitlines()]
    assert [p["model"] for p in panes] == ["SmolLM2-135M-Instruct Q4_1", f"openai:{server.url}/v1"]
    assert all(p["stats"]["generated_tokens"] >= 1 and p["text"] for p in panes)
    r = run_cli("compare", "--no-tui", "-m", str(model_path), "-m", "openai:http://127.0.0.1:9/v1", "-n", "3",
                "--raw", "Hi")  # nothing listens there: that pane fails, and so does the run
    assert r.returncode == 1 and "cannot connect" in r.stderr and "Traceback" not in r.stderr


def compare_app(temps: list[float], max_tokens: int):
    """The app opened on its compare screen with these panes, raw mode, a fixed token count."""
    from mullama_tui.tui.app import MullamaApp

    configure(max_tokens=max_tokens, mode="raw")
    return MullamaApp(compare=(temps, None), ignore_eos=True)


async def compare_screen(pilot):
    from mullama_tui.tui.screens.compare import CompareScreen

    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.state == "ready", 30, "the model")
    return app.screen


async def test_two_models_stream_side_by_side_and_the_agreement_shows(home, second):
    app = compare_app([0.3, 0.3, 0.9], 16)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await compare_screen(pilot)
        panes = screen.panes()
        panes[1].set_model(str(second), "Q8_0")  # pane 2 on the other quantization
        assert panes[1].border_title == "2 · Q8_0"
        before = app.engine.scheduler.times.steps
        await screen.run_prompt("The history of the lighthouse")
        await until(pilot, lambda: not screen.running, 60, "the comparison")
        assert all(p.stats is not None and p.stats.generated_tokens == 16 for p in panes)
        # the two panes on the app's model shared its batch: one decode per step, not one per pane
        # (steps the thread tuner cut short and decoded again on fewer threads are not counted)
        assert app.engine.scheduler.times.steps - before <= 16 + 4
        assert list(app._pane_engines) == [str(second)]  # the other model, loaded once
        await until(pilot, lambda: screen.agreement is not None, 60, "the agreement pass")
        assert "Q8_0 agrees with SmolLM2-135M-Instruct Q4_1 on" in screen.agreement
        assert "agrees with" in str(screen.query_one("#total").render())
    rec = History().list()[0]
    assert [p["model"] for p in rec.params["panes"]] == ["SmolLM2-135M-Instruct Q4_1", "Q8_0",
                                                         "SmolLM2-135M-Instruct Q4_1"]


async def test_blind_mode_hides_who_is_who_until_the_vote_and_the_standings_count_it(home, second):
    from mullama_tui.tui.screens.compare import CompareScreen

    app = compare_app([0.2, 0.7, 1.2], 8)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await compare_screen(pilot)
        screen.panes()[2].set_model(str(second), "Q8_0")
        await pilot.press("ctrl+b")
        await screen.run_prompt("Name a colour.")
        panes = screen.panes()
        assert sorted(p.border_title for p in panes) == ["A", "B", "C"]  # letters only, in screen order
        assert [p.border_title for p in panes] == ["A", "B", "C"]
        assert all(not p.query_one(".knobs").display and "Q8_0" not in p.border_title for p in panes)
        await until(pilot, lambda: not screen.running, 60, "the comparison")
        assert all(not p.query_one(".pane-stats").display for p in panes)  # speeds would give it away
        q8 = next(p for p in panes if p.model == str(second))
        letter = q8.blind_label
        await pilot.press("ctrl+v")
        await until(pilot, lambda: app.screen.__class__.__name__ == "VoteScreen", 5, "the vote")
        await pilot.press(letter.lower())
        await until(pilot, lambda: screen.voted == letter, 5, "the vote taken")
        assert "Q8_0" in q8.border_title and q8.query_one(".knobs").display  # revealed after the vote
        assert f"{letter} ★ = Q8_0" in q8.border_title  # the letter it had, and the winner's star
        await pilot.press("escape")  # reopened from the history: side by side, with its vote
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen is not screen, 5, "reopened")
        assert app.screen.sub_title == f"blind run, voted {letter} (Q8_0)"
        assert [p.model for p in app.screen.panes()] == [p.model for p in panes]
        assert [p.border_title for p in app.screen.panes()] == [p.border_title for p in panes]
    rec = History().list()[0]
    assert rec.params["blind"] and rec.params["vote"] == letter
    assert {p["label"] for p in rec.params["panes"]} == {"A", "B", "C"}
    table = json.loads(run_cli("arena", "--json").stdout)
    q8_row = next(row for row in table if row["name"].startswith("Q8_0"))
    assert q8_row["games"] == 2 and q8_row["wins"] == 2 and q8_row["win_rate"] == 1.0
    assert 0.0 < q8_row["ci95"][0] < q8_row["ci95"][1] <= 1.0  # two votes: a wide interval


def test_standings_count_ties_as_half_and_give_wilson_intervals(home):
    h = History()
    for vote in ("A", "A", "tie", "B"):
        h.add(RunRecord(model="m", mode="raw", prompt="p", output="o", kind="compare", params={
            "blind": True, "vote": vote, "panes": [{"model": "big", "temperature": 0.7, "label": "A"},
                                                   {"model": "small", "temperature": 0.7, "label": "B"}]}))
    table = standings(h.votes())
    assert [(s.name, s.wins, s.games) for s in table] == [("big · t 0.7", 2.5, 4), ("small · t 0.7", 1.5, 4)]
    low, high = table[0].interval()
    assert (round(low, 3), round(high, 3)) == (0.219, 0.908)  # Wilson 95% for 2.5 wins of 4


async def test_f5_is_models_in_the_compare_screen_too(home):
    """One key map: F5 opens the models everywhere; on the compare screen it chooses the
    model of the pane with the cursor (it no longer stops pane 1)."""
    app = compare_app([0.2, 0.9], 8)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await compare_screen(pilot)
        screen.panes()[1].query_one(".temp").focus()
        await pilot.press("f5")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ModelsScreen", 5, "the model picker")
        assert app.screen.for_pane == 2
        await pilot.press("escape")
        await until(pilot, lambda: app.screen is screen, 5, "back")
        assert screen.panes()[1].model is None  # nothing chosen, nothing changed


def test_a_pane_is_named_by_its_model_and_the_settings_that_set_it_apart():
    """What a vote is for, and a pane's title: the preset's name where one matches, else the
    knobs that differ (older votes, with only a temperature, keep their old names)."""
    from mullama_tui.panes import PaneSetup, contender

    base = PaneSetup()
    assert PaneSetup().with_preset("precise").preset() == "precise"
    assert PaneSetup(top_k=7, system="be brief").differences(base) == ["top-k 7", "sys"]
    assert PaneSetup(temperature=0.5, min_p=0.2).knobs(base) == "t 0.5 · min-p 0.2"
    assert contender({"model": "Q8_0", "temperature": 0.7}) == "Q8_0 · t 0.7"  # saved before there were more knobs
    assert contender({**PaneSetup().with_preset("creative").to_dict(), "model": "Q8_0"}) == "Q8_0 · creative"
    assert contender({**PaneSetup(top_p=0.5).to_dict(), "model": "Q8_0"}) == "Q8_0 · t 0.8 · top-p 0.5"
    saved = {**PaneSetup(top_k=3, system="s").to_dict(), "model": "Q8_0", "path": "/m/q8.gguf"}
    back = PaneSetup.from_dict(saved)
    assert (back.top_k, back.system, back.model, back.model_label) == (3, "s", "/m/q8.gguf", "Q8_0")
    assert PaneSetup.from_dict({"temperature": 0.3}, default=PaneSetup(top_k=9)).top_k == 9


async def _edit_pane(pilot, screen, index: int, values: dict[str, str], save: bool = True):
    """F6 with the cursor in pane `index`: type `values` into the editor's fields."""
    from textual.widgets import Input, TextArea

    app = pilot.app
    screen.panes()[index].query_one(".temp").focus()
    await pilot.press("f6")
    await until(pilot, lambda: app.screen.__class__.__name__ == "PaneScreen", 5, "the pane editor")
    for name, value in values.items():
        widget = app.screen.query_one(f"#{name}")
        if isinstance(widget, TextArea):
            widget.load_text(value)
        else:
            assert isinstance(widget, Input)
            widget.value = value
    if save:
        await pilot.press("ctrl+s")
        await pilot.pause()
    return app.screen


async def test_each_pane_has_its_own_sampler_settings_system_prompt_and_presets(home):
    """F6 edits a pane's knobs; they reach the engine: top-k 1 leaves the sampler one
    candidate (each token's sampled probability is 1), a system prompt lengthens that
    pane's prompt; Ctrl+G cycles the presets; a bad value is said under its field."""
    from mullama_tui.tui.screens.compare import CompareScreen

    configure(max_tokens=8, mode="chat", token_view=True)
    from mullama_tui.tui.app import MullamaApp

    app = MullamaApp(compare=([0.9, 0.9], None), ignore_eos=True)
    async with app.run_test(size=(160, 44)) as pilot:
        screen = await compare_screen(pilot)
        editor = await _edit_pane(pilot, screen, 1, {"top_p": "lots"})
        assert editor is app.screen and "not a number" in str(editor.query_one("#top_p-error").render())
        assert app.screen.focused.id == "top_p"  # the field with the error has the cursor
        await _edit_pane_fields(pilot, {"top_p": "0.9", "repeat_penalty": "-1"})  # the sampler's own check
        await pilot.press("ctrl+s")
        assert "penalty" in str(editor.query_one("#repeat_penalty-error").render())
        await _edit_pane_fields(pilot, {"repeat_penalty": "1.1"})
        await _edit_pane_fields(pilot, {"top_p": "0.9", "top_k": "1", "system": "You answer in one word."})
        await pilot.press("ctrl+s")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the editor closed")
        panes = screen.panes()
        setup = panes[1].setup
        assert (setup.top_k, setup.top_p, setup.system) == (1, 0.9, "You answer in one word.")
        assert panes[1].border_title == "2 · top-k 1 · top-p 0.9 · sys"
        assert panes[0].border_title == "1 · t 0.9 · seed 5"
        await screen.run_prompt("Name a fruit.")
        await until(pilot, lambda: not screen.running, 60, "the comparison")
        assert all(i.insight.sampled_prob == pytest.approx(1.0) for i in panes[1].items)  # top-k 1: one candidate
        assert any(i.insight.sampled_prob < 0.999 for i in panes[0].items)  # t 0.9, top-k 40: a real draw
        # its own system prompt went into its prompt (the other pane's: the template's default)
        ask = app.request(prompt="Name a fruit.")
        plain = len(app.engine.prompt_tokens(ask))
        ask.system = "You answer in one word."
        assert panes[1].stats.prompt_tokens == len(app.engine.prompt_tokens(ask)) != plain
        assert panes[0].stats.prompt_tokens == plain
        panes[0].query_one(".temp").focus()
        for name in ("greedy", "precise", "creative", "greedy"):
            await pilot.press("ctrl+g")
            assert panes[0].setup.preset() == name
        assert panes[0].setup.top_k == 1 and panes[0].border_title == "1 · greedy"
    rec = History().list()[0]
    saved = rec.params["panes"]
    assert saved[1]["top_k"] == 1 and saved[1]["system"] == "You answer in one word." and saved[0]["top_k"] == 40
    assert "top-k 1" in rec.output  # the transcript's headings name each pane's settings


async def _edit_pane_fields(pilot, values: dict[str, str]) -> None:
    from textual.widgets import TextArea

    for name, value in values.items():
        widget = pilot.app.screen.query_one(f"#{name}")
        if isinstance(widget, TextArea):
            widget.load_text(value)
        else:
            widget.value = value


async def test_the_pane_editor_takes_a_model_by_name_path_or_server_and_refuses_what_is_not_one(home, model_path,
                                                                                                second, server):
    """A pane's model from its editor: a GGUF path, `openai:URL` (a loopback server: that
    pane streams from it beside the local one), nothing that is not a model."""
    from mullama_tui.tui.screens.compare import CompareScreen

    app = compare_app([0.5, 0.5], 6)
    async with app.run_test(size=(160, 44)) as pilot:
        screen = await compare_screen(pilot)
        (home / "notes.txt").write_text("not a model")
        for typed, said in ((str(home / "notes.txt"), "not a GGUF"), ("no-such-model-here", "no-such-model-here"),
                            ("openai:ftp://x", "openai:http")):
            editor = await _edit_pane(pilot, screen, 1, {"model": typed})
            assert editor is app.screen and said in str(editor.query_one("#model-error").render())
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the editor closed")
        assert screen.panes()[1].model is None  # nothing refused was kept
        await _edit_pane(pilot, screen, 1, {"model": str(second)})
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the editor closed")
        assert screen.panes()[1].model == str(second) and "Q8_0" in screen.panes()[1].border_title
        await _edit_pane(pilot, screen, 1, {"model": f"openai:{server.url}/v1"})
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the editor closed")
        await screen.run_prompt("Once upon a time")
        await until(pilot, lambda: not screen.running, 60, "the comparison")
        panes = screen.panes()
        assert all(p.stats is not None and p.stats.generated_tokens >= 1 and p.text for p in panes)
        assert panes[1].model == f"openai:{server.url}/v1" and list(app._pane_engines) == [panes[1].model]
        assert screen.agreement is None  # a server gives no logits: no agreement pass
    rec = History().list()[0]
    assert rec.params["panes"][1]["model"] == f"openai:{server.url}/v1"


async def test_where_two_quantizations_disagree_is_struck_in_the_token_view_and_kept_in_history(home, second):
    from mullama_tui.tui.screens.compare import CompareScreen
    from mullama_tui.tui.widgets.tokens import TokenView

    configure(max_tokens=24, mode="raw", token_view=True)
    from mullama_tui.tui.app import MullamaApp

    app = MullamaApp(compare=([1.3, 1.3], None), ignore_eos=True)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await compare_screen(pilot)
        screen.panes()[1].set_model(str(second), "Q8_0")
        await screen.run_prompt("Write a strange list of words:")
        await until(pilot, lambda: not screen.running and screen.found is not None, 90, "the agreement pass")
        found, first = screen.found, screen.panes()[0]
        parted = {i for i, same in enumerate(found.agree) if not same}
        assert found.n == len(first.items) and set(first.disputed) == parted
        assert all("Q8_0 would pick" in note for note in first.disputed.values())
        assert first.query_one(TokenView).disputed == frozenset(parted)
        assert screen.query_one("#total-spark").data == [0.0, *found.kl]  # the strip under the panes
    rec = History().list()[0]
    assert rec.params["agreement"]["kl"] == [round(k, 5) for k in found.kl]
    app = MullamaApp()
    async with app.run_test(size=(160, 40)) as pilot:  # reopened: the line, the strip and the marks again
        app.push_screen(CompareScreen(record=rec))
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.panes()
                    and app.screen.panes()[0].text, 10, "reopened")
        assert app.screen.agreement == rec.params["agreement"]["summary"]
        assert set(app.screen.panes()[0].disputed) == parted


async def test_the_arena_screen_ranks_the_votes_and_reopens_one_side_by_side(home):
    from mullama_tui.tui.app import MullamaApp
    from mullama_tui.tui.screens.compare import CompareScreen

    h = History()
    for vote, prompt in (("A", "first"), ("B", "second"), ("A", "third")):
        h.add(RunRecord(model="m", mode="raw", prompt=prompt, output="o", kind="compare", params={
            "blind": True, "vote": vote, "panes": [{"model": "big", "temperature": 0.7, "label": "A"},
                                                   {"model": "small", "temperature": 0.7, "label": "B"}]},
            stats={"panes": [{"temperature": 0.7, "seed": 1, "text": "a", "label": "A"},
                             {"temperature": 0.7, "seed": 1, "text": "b", "label": "B"}]}))
    app = MullamaApp(arena=True)
    async with app.run_test(size=(120, 36)) as pilot:
        await until(pilot, lambda: app.screen.__class__.__name__ == "ArenaScreen"
                    and app.screen.query_one("#votes").row_count == 3, 10, "the arena")
        table = app.screen.query_one("#standings")
        assert table.row_count == 2 and str(table.get_row_at(0)[0]) == "big · t 0.7"
        assert str(table.get_row_at(0)[1]) == "67%" and str(table.get_row_at(1)[1]) == "33%"
        assert str(app.screen.query_one("#votes").get_row_at(0)[3]) == "third"  # newest first
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 10, "the comparison")
        assert app.screen.query_one("#compare-prompt").render().plain == "third"
        assert app.screen.sub_title.startswith("blind run, voted A (big)")


def test_arena_prints_its_table_off_a_terminal(home):
    r = run_cli("arena")
    assert r.returncode == 0 and "no votes yet" in r.stdout


async def test_compare_with_models_opens_a_pane_per_model_and_temperature(home, model_path, second):
    """`compare --model A --model B --temps ...` in the TUI: what the console prints, side by side."""
    from mullama_tui.tui.app import MullamaApp

    configure(max_tokens=4, mode="raw")
    app = MullamaApp(compare=([0.2, 0.9], "Hello"), compare_models=[str(model_path), str(second)], ignore_eos=True)
    async with app.run_test(size=(160, 44)) as pilot:
        screen = await compare_screen(pilot)
        await until(pilot, lambda: screen.running, 10, "the run")
        await until(pilot, lambda: not screen.running, 60, "the comparison")
        panes = screen.panes()
        assert [(p.model, p.setup.temperature) for p in panes] == [
            (str(model_path), 0.2), (str(model_path), 0.9), (str(second), 0.2), (str(second), 0.9)]
        assert [p.border_title for p in panes][2:] == [f"{n} · SmolLM2-135M-Instruct Q8_0" for n in (3, 4)]
        assert all(p.stats.generated_tokens == 4 for p in panes)


async def test_a_blind_run_voted_on_later_stays_blind_when_reopened_and_takes_its_vote_there(home, second):
    """The vote says "Esc: vote later": the comparison reopened from the history is still
    lettered, Ctrl+V votes there, and the vote lands on that history row."""
    from mullama_tui.tui.screens.compare import CompareScreen

    app = compare_app([0.3, 0.9], 6)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await compare_screen(pilot)
        screen.panes()[1].set_model(str(second), "Q8_0")
        await pilot.press("ctrl+b")
        await screen.run_prompt("Name a bird.")
        await until(pilot, lambda: not screen.running, 60, "the comparison")
        await pilot.press("ctrl+v")
        await until(pilot, lambda: app.screen.__class__.__name__ == "VoteScreen", 5, "the vote")
        await pilot.press("escape")  # later
        await until(pilot, lambda: app.screen is screen, 5, "back")
        assert screen.voted is None and [p.border_title for p in screen.panes()] == ["A", "B"]
        await pilot.press("escape")
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen is not screen
                    and app.screen.panes() and app.screen.panes()[0].text, 10, "reopened")
        again = app.screen
        assert [p.border_title for p in again.panes()] == ["A", "B"] and "not voted yet" in again.sub_title
        assert all(not p.query_one(".knobs").display for p in again.panes())  # still blind
        q8 = next(p for p in again.panes() if p.model == str(second))
        await pilot.press("ctrl+v")
        await until(pilot, lambda: app.screen.__class__.__name__ == "VoteScreen", 5, "the vote")
        await pilot.press(q8.blind_label.lower())
        await until(pilot, lambda: again.voted is not None, 5, "the vote taken")
        assert "★ = Q8_0" in q8.border_title and again.sub_title == f"blind run, voted {again.voted}"
    (rec,) = History().votes()
    assert rec.params["vote"] == again.voted and rec.params["blind"]
    assert next(p for p in rec.params["panes"] if p["label"] == rec.params["vote"])["model"] == "Q8_0"


async def test_ctrl_r_in_compare_opens_the_standings_and_enter_reopens_a_vote(home):
    from mullama_tui.tui.screens.compare import CompareScreen

    History().add(RunRecord(model="m", mode="raw", prompt="voted on", output="o", kind="compare", params={
        "blind": True, "vote": "A", "panes": [{"model": "big", "temperature": 0.7, "label": "A"},
                                              {"model": "small", "temperature": 0.7, "label": "B"}]},
        stats={"panes": [{"temperature": 0.7, "seed": 1, "text": "a", "label": "A"},
                         {"temperature": 0.7, "seed": 1, "text": "b", "label": "B"}]}))
    app = compare_app([0.2, 0.9], 4)
    async with app.run_test(size=(120, 36)) as pilot:
        screen = await compare_screen(pilot)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ArenaScreen"
                    and app.screen.query_one("#votes").row_count == 1, 10, "the standings")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen is not screen, 10, "reopened")
        assert app.screen.query_one("#compare-prompt").render().plain == "voted on"


async def test_the_agreement_pass_reads_the_first_pane_as_it_ran_its_own_system_prompt_too(home, model_path, second):
    """Chat mode, the first pane with a system prompt of its own: the second model reads
    the prompt that pane ran (not the app's), so the figures equal a direct computation."""
    from mullama_tui.engine.llama import LlamaModel
    from mullama_tui.panes import PaneSetup
    from mullama_tui.tui.app import MullamaApp

    configure(max_tokens=10, mode="chat")
    app = MullamaApp(compare=([0.5, 0.5], None), ignore_eos=True)
    async with app.run_test(size=(160, 40)) as pilot:
        screen = await compare_screen(pilot)
        first = screen.panes()[0]
        first.set_setup(PaneSetup.from_dict({"system": "Answer like a pirate."}, default=first.setup))
        screen.panes()[1].set_model(str(second), "Q8_0")
        await screen.run_prompt("Where is the treasure?")
        await until(pilot, lambda: not screen.running and screen.found is not None, 90, "the agreement pass")
        request = app.request(prompt="Where is the treasure?")
        request.system = "Answer like a pirate."
        prompt = app.engine.prompt_tokens(request)
        tokens = [i.token_id for i in first.items]
    a, b = LlamaModel(model_path), LlamaModel(second)
    try:
        direct = agreement(a, b, prompt, tokens)
    finally:
        a.close()
        b.close()
    assert screen.found.kl == pytest.approx(direct.kl, abs=1e-6) and screen.found.agree == direct.agree
