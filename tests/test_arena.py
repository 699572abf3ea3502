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
        await pilot.press("escape")  # reopened from the history: side by side, with its vote
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen is not screen, 5, "reopened")
        assert app.screen.sub_title == f"blind run, voted {letter} (Q8_0)"
        assert [p.model for p in app.screen.panes()] == [p.model for p in panes]
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
