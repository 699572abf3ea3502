"""Token insight on the real bundled model: the model's and the sampler's distributions
per token, checked against llama-cpp-python, and branching from any token."""

from __future__ import annotations

import math

import pytest

from mullama_tui.engine.types import FinishReason, InvalidParamsError, Request, SamplerParams

PROMPT = "The capital of France is"


def insights(engine, **kw):
    req = Request(prompt=kw.pop("prompt", PROMPT), mode="raw", max_tokens=kw.pop("max_tokens", 12),
                  ignore_eos=True, logprobs=kw.pop("logprobs", 5), params=SamplerParams(**{"seed": 3, **kw}))
    engine.clear_cache()
    events = [e for e in engine.submit(req) if not e.done]
    return events


def test_off_means_no_insight(engine):
    events = insights(engine, logprobs=0)
    assert events and all(e.insight is None for e in events)


def test_greedy_chooses_the_top_alternative_with_the_largest_probability(engine):
    for e in insights(engine, **SamplerParams.greedy().to_dict(), logprobs=8):
        i = e.insight
        assert i.token_id == e.token_id == i.top[0].token_id
        assert i.logprob == max(c.logprob for c in i.top) and len(i.top) == 8
        assert [c.logprob for c in i.top] == sorted((c.logprob for c in i.top), reverse=True)
        assert i.sampled_prob == 1.0 and i.kept == 1  # a point mass
        assert all(c.cut_by == "greedy" for c in i.top[1:])
        assert i.entropy > 0 and sum(c.prob for c in i.top) <= 1.0 + 1e-6


def test_a_tiny_temperature_is_greedy_not_nan(engine):
    """Logits over a temperature of 1e-38 overflow to +inf in llama.cpp's float32 sampler:
    its draw then took the last token of the vocabulary and the insight said NaN (the
    fuzzer found it). Any temperature below `GREEDY_BELOW` now decodes greedily."""
    kw = dict(top_k=0, top_p=1.0, min_p=0.0, max_tokens=4)
    tiny = insights(engine, temperature=1e-38, **kw)
    greedy = insights(engine, temperature=0.0, **kw)
    assert [e.token_id for e in tiny] == [e.token_id for e in greedy]
    for e in tiny:
        i = e.insight
        assert i.sampled_prob == 1.0 and all(not math.isnan(c.logprob) for c in i.sampled_top)


def test_sampler_probabilities_sum_to_one_over_kept_and_are_zero_for_cut(engine):
    events = insights(engine, temperature=0.9, top_k=5, top_p=1.0, min_p=0.0, logprobs=20, max_tokens=16)
    for e in events:
        i = e.insight
        kept = {c.token_id for c in i.sampled_top}
        assert i.kept <= 5 and len(i.sampled_top) == i.kept
        assert abs(sum(c.prob for c in i.sampled_top) - 1.0) < 1e-5
        assert e.token_id in kept and i.sampled_prob > 0
        for c in i.top:
            assert (c.cut_by is None) == (c.token_id in kept), (c, kept)
            if c.cut_by is not None:
                assert c.cut_by == "top-k"  # the only filter on here
        assert sum(1 for c in i.top if c.cut_by is None) == min(5, len(i.top))


def test_model_logprobs_match_llama_cpp_python(engine, model_path):
    """Same prompt, greedy: the same tokens, the same top alternatives, the same values
    (within 1e-3) as llama-cpp-python's create_completion(logprobs=N)."""
    import llama_cpp.llama_cpp as low
    from llama_cpp import Llama

    from mullama_tui.engine.llama import model_params

    ours = insights(engine, **SamplerParams.greedy().to_dict(), logprobs=5, max_tokens=10)
    low.llama_model_default_params = model_params  # the same weight placement as ours
    llm = Llama(model_path=str(model_path), n_ctx=512, logits_all=True, verbose=False, n_threads=2)
    try:
        out = llm.create_completion(PROMPT, max_tokens=10, temperature=0.0, repeat_penalty=1.0, top_k=1,
                                    logprobs=5)
    finally:
        llm.close()
    lp = out["choices"][0]["logprobs"]
    assert "".join(lp["tokens"]) == "".join(e.insight.piece for e in ours)
    for e, theirs, their_top in zip(ours, lp["token_logprobs"], lp["top_logprobs"]):
        assert abs(e.insight.logprob - theirs) < 1e-3
        mine = {c.text: c.logprob for c in e.insight.top}
        assert set(mine) == set(their_top)
        assert all(abs(mine[t] - v) < 1e-3 for t, v in their_top.items())


def test_logprobs_must_be_0_to_20(engine):
    with pytest.raises(InvalidParamsError, match="logprobs"):
        engine.submit(Request(prompt="x", logprobs=21))


def test_branching_from_token_k_decodes_one_token_of_prompt(engine):
    """A 300-token reply, then a branch at token 150 with the second-best alternative: only
    the forced token is processed (the KV cache holds the rest), and the branch's reply
    starts with that alternative."""
    engine.clear_cache()
    base = Request(prompt="Once upon a time", mode="raw", max_tokens=300, ignore_eos=True, logprobs=5,
                   params=SamplerParams(temperature=0.8, seed=11))
    original = [e for e in engine.submit(base) if not e.done]
    assert len(original) == 300
    k = 150
    alt = next(c for c in original[k].insight.top if c.token_id != original[k].token_id)
    before = engine.scheduler.prompt_tokens_processed
    branch = Request(prompt="Once upon a time", mode="raw", max_tokens=20, ignore_eos=True, logprobs=5,
                     params=SamplerParams(temperature=0.8, seed=12),
                     prefix=[e.token_id for e in original[:k]], force=alt.token_id)
    events = list(engine.submit(branch))
    assert engine.scheduler.prompt_tokens_processed - before == 1
    assert events[0].token_id == alt.token_id and events[0].text == alt.text and events[0].index == 0
    assert events[-1].finish_reason is FinishReason.LENGTH and len(events) == 21
    assert all(e.insight is not None for e in events[1:-1])


# -- over HTTP --------------------------------------------------------------------------------

@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_client_reads_chat_logprobs_from_serve(server, stream):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    kw = dict(model="smollm2", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=8,
              temperature=0, seed=1, logprobs=True, top_logprobs=3, extra_body={"repeat_penalty": 1.0})
    if stream:
        items = []
        for chunk in client.chat.completions.create(stream=True, **kw):
            if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
                items += chunk.choices[0].logprobs.content
    else:
        items = client.chat.completions.create(**kw).choices[0].logprobs.content
    assert 1 <= len(items) <= 8
    for it in items:
        assert it.logprob <= 0 and len(it.top_logprobs) == 3
        assert it.top_logprobs[0].logprob >= it.top_logprobs[-1].logprob
        assert it.token == it.top_logprobs[0].token  # greedy: the chosen token is the best


@pytest.mark.parametrize("stream", [False, True])
def test_the_openai_client_reads_completion_logprobs_from_serve(server, stream):
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused")
    kw = dict(model="smollm2", prompt=PROMPT, max_tokens=6, temperature=0, seed=1, logprobs=4,
              extra_body={"repeat_penalty": 1.0})
    if stream:
        tokens, values, tops = [], [], []
        for chunk in client.completions.create(stream=True, **kw):
            lp = chunk.choices[0].logprobs if chunk.choices else None
            if lp and lp.tokens:
                tokens += lp.tokens
                values += lp.token_logprobs
                tops += lp.top_logprobs
    else:
        lp = client.completions.create(**kw).choices[0].logprobs
        tokens, values, tops = lp.tokens, lp.token_logprobs, lp.top_logprobs
    assert len(tokens) == len(values) == len(tops) == 6
    # (a dict by token text: two tokens with the same text would share a key)
    assert all(v <= 0 and 3 <= len(t) <= 4 and max(t.values()) == v for v, t in zip(values, tops))


def test_post_sampling_probs_and_stream_and_ws_logprobs(server):
    import asyncio
    import json

    import httpx
    import websockets

    r = httpx.post(server.url + "/v1/chat/completions", json={
        "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5, "seed": 2, "temperature": 0.8,
        "top_k": 3, "logprobs": True, "top_logprobs": 5, "post_sampling_probs": True}).json()
    for it in r["choices"][0]["logprobs"]["content"]:
        probs = [t["prob"] for t in it["top_probs"]]
        assert len(probs) <= 3 and abs(sum(probs) - 1) < 1e-3 and it["prob"] in probs
    with httpx.stream("POST", server.url + "/stream", json={"prompt": PROMPT, "max_tokens": 5, "logprobs": 2,
                                                           "seed": 1, "ignore_eos": True}) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    tokens = [e for e in events if not e["done"]]
    assert len(tokens) == 5 and all(len(e["top_logprobs"]) == 2 and "entropy" in e for e in tokens)

    async def ws():
        async with websockets.connect(server.url.replace("http", "ws") + "/ws") as c:
            await c.send(json.dumps({"prompt": PROMPT, "max_tokens": 3, "logprobs": 1, "ignore_eos": True}))
            got = []
            while True:
                m = json.loads(await c.recv())
                if m["type"] == "done":
                    return got
                got.append(m)

    assert [len(m["top_logprobs"]) for m in asyncio.run(ws())] == [1, 1, 1]


def test_the_remote_backend_shows_a_servers_logprobs_the_same_way(server):
    from mullama_tui.engine.remote import RemoteEngine

    eng = RemoteEngine(server.url + "/v1")
    try:
        for mode in ("chat", "raw"):
            gen = eng.submit(Request(prompt=PROMPT, mode=mode, max_tokens=6, logprobs=3,
                                     params=SamplerParams(temperature=0.0, penalty_repeat=1.0, seed=1)))
            events = list(gen)
            tokens = [e for e in events if not e.done]
            assert tokens and all(e.insight is not None and len(e.insight.top) == 3 for e in tokens)
            assert all(e.insight.top[0].text == e.insight.piece for e in tokens)  # greedy: the best one
            assert math.isnan(tokens[0].insight.sampled_prob)  # not sent by the server: unknown, not zero
            assert gen.stats.notice is None
    finally:
        eng.close()


def test_a_server_that_sends_no_logprobs_gets_one_clear_line(bad_server_plain):
    from mullama_tui.engine.remote import RemoteEngine

    eng = RemoteEngine(bad_server_plain)
    try:
        gen = eng.submit(Request(prompt="x", mode="raw", max_tokens=6, logprobs=3))
        text = gen.text()
        assert text == "Hello you" and "no token log-probabilities" in gen.stats.notice
    finally:
        eng.close()


@pytest.fixture(scope="module")
def bad_server_plain():
    """A scripted OpenAI-compatible server that streams text and never logprobs, as many
    servers do (the real `serve` always sends them when asked, so it cannot stand in)."""
    from helpers import scripted_server, sse_data

    def parts(path: str, calls: int) -> list[bytes]:
        return [sse_data({"choices": [{"index": 0, "text": t, "finish_reason": f}]})
                for t, f in (("Hello", None), (" you", "length"))] + [b"data: [DONE]\n\n"]

    for url in scripted_server(parts):
        yield url + "/v1"


def test_run_logprobs_json_and_heat():
    import json

    from helpers import run_cli

    r = run_cli("run", "--raw", "-n", "5", "--seed", "2", "--json", "--logprobs", "3", PROMPT)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    tokens = [e for e in lines if not e["done"]]
    assert len(tokens) == 5 and all(len(e["insight"]["top_logprobs"]) == 3 for e in tokens)
    assert all(e["insight"]["logprob"] <= 0 and 0 <= e["insight"]["sampled_prob"] <= 1 for e in tokens)
    # --heat into a pipe: plain text, no colour codes, no legend
    r = run_cli("run", "--raw", "-n", "5", "--seed", "2", "--heat", "--no-stats", PROMPT)
    assert r.returncode == 0 and "\x1b[" not in r.stdout and "heat:" not in r.stderr


def test_heat_colours_tokens_on_a_terminal():
    import os
    import pty
    import subprocess

    from helpers import CLI

    master, slave = pty.openpty()
    proc = subprocess.Popen([*CLI, "run", "--raw", "-n", "8", "--seed", "2", "--heat", "--no-stats", PROMPT],
                            stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(60) == 0
    os.close(master)
    text = out.decode(errors="replace")
    assert "heat:" in text and "\x1b[38;5;" in text


# -- the TUI's token view ------------------------------------------------------------------

async def test_token_view_streams_coloured_tokens_with_a_cursor_and_a_panel(home):
    from mullama_tui.tui.app import MullamaApp
    from mullama_tui.tui.widgets.tokens import TokenPanel, TokenView, bucket

    from helpers import configure, send, until

    configure(max_tokens=300, mode="raw", temperature=0.9, top_k=20, min_p=0.05)
    app = MullamaApp(ignore_eos=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await until(pilot, lambda: app.state == "ready", what="the model")
        await pilot.press("ctrl+t")
        assert app.settings.token_view and app.chat.query_one(TokenPanel).display
        await send(pilot, app, "Once upon a time")
        view = app.chat.query_one(TokenView)
        await until(pilot, lambda: 0 < len(view.items) < 300, 30, "tokens to stream into the view")
        await until(pilot, lambda: app.chat.current is None and app.state == "ready", 60, "the reply")
        assert len(view.items) == 300 and all(i.insight is not None for i in view.items)
        assert view.text == app.chat.reply_text
        # colours follow probability, and boundaries alternate
        styles = [view.style_of(i) for i in range(len(view.items))]
        assert len({bucket(i.insight.prob) for i in view.items}) >= 2
        assert styles[0].bgcolor != styles[1].bgcolor
        # the cursor: keys and the panel
        view.focus()
        await pilot.press("home", "right", "right")
        assert view.cursor == 2
        panel = app.chat.query_one(TokenPanel)
        assert panel.index == 2 and panel.item is view.items[2]
        shown = "".join(seg.text for seg in app.console.render(panel.render()))
        assert "model" in shown and "sampler" in shown and "entropy" in shown and "alternatives" in shown
        item = view.items[2].insight
        cut = [c for c in item.top if c.cut_by]
        if cut:  # which stage cut them is said
            assert f"cut: {cut[0].cut_by}" in shown
        # a click on a token selects it
        line, col = view._line_of[5], sum(len(t) for i, t in view._lines[view._line_of[5]] if i < 5)
        await pilot.click(view, offset=(col + 1, line))
        assert view.cursor == 5


async def test_branching_from_a_token_keeps_the_original_and_decodes_one_token(home):
    from mullama_tui.history import History
    from mullama_tui.tui.app import MullamaApp
    from mullama_tui.tui.widgets.prompt import PromptInput
    from mullama_tui.tui.widgets.tokens import TokenView
    from mullama_tui.tui.widgets.turn import AssistantTurn

    from helpers import configure, send, until

    configure(max_tokens=60, mode="raw", temperature=0.8, token_view=True)
    app = MullamaApp(ignore_eos=True)
    async with app.run_test(size=(130, 36)) as pilot:
        await until(pilot, lambda: app.state == "ready", what="the model")
        await send(pilot, app, "Once upon a time")
        await until(pilot, lambda: app.chat.current is None and app.state == "ready", 60, "the reply")
        original = app.chat.reply_text
        view = app.chat.query_one(TokenView)
        k = 20
        kept = "".join(i.text for i in view.items[:k])
        view.focus()
        view.select(k)
        await pilot.press("down")  # the second alternative
        alt = view.items[k].insight.top[1]
        before = app.engine.scheduler.prompt_tokens_processed
        await pilot.press("b")  # B branches (Enter in a reply goes back to the prompt)
        await until(pilot, lambda: app.chat.current is None and app.state == "ready"
                    and len(app.query_one(AssistantTurn).branches) == 2, 60, "the branch")
        assert app.engine.scheduler.prompt_tokens_processed - before == 1  # only the forced token
        assert app.focused is app.query_one(PromptInput)  # the prompt has the keys back
        turn = app.query_one(AssistantTurn)
        branch = turn.branch
        assert branch.at == k and branch.text.startswith(kept + alt.text) and branch.text != original
        assert branch.items[k].token_id == alt.token_id and branch.items[k].insight.forced
        assert turn.branches[0].text == original  # the original is kept
        await pilot.press("ctrl+b")  # and a key goes back to it
        assert turn.branch is turn.branches[0]
    runs = History().list()
    assert len(runs) == 2 and runs[0].params["branch"] == {"of": runs[1].id, "at": k}
    # a fresh budget after the branch point: the 20 kept, then 60 new (the forced one first)
    assert len(runs[0].tokens) == k + 60 and runs[0].tokens[k]["id"] == alt.token_id


async def test_a_run_reopened_from_history_shows_its_tokens(home):
    from mullama_tui.history import History, RunRecord
    from mullama_tui.tui.app import MullamaApp
    from mullama_tui.tui.widgets.tokens import TokenItem, TokenView

    from helpers import configure, until

    configure(token_view=True)
    item = TokenItem(" Paris", 7042, None)
    rec = RunRecord(model="m", mode="raw", prompt="The capital of France is", output=" Paris",
                    tokens=[{"text": " Paris", "id": 7042, "lp": -0.26, "sp": 0.96, "h": 1.5, "kept": 2,
                             "top": [[7042, " Paris", -0.26, None], [260, " the", -2.8, None]],
                             "stop": [[7042, " Paris", -0.04]]}])
    History().add(rec)
    app = MullamaApp()
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("f3")
        await until(pilot, lambda: app.screen.__class__.__name__ == "HistoryScreen", 5, "history")
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.chat.query(TokenView)), 5, "the reopened run")
        view = app.chat.query_one(TokenView)
        assert [i.text for i in view.items] == [item.text] and view.items[0].insight.prob == pytest.approx(0.771, 1e-3)


async def test_compare_token_view_marks_where_the_panes_part_ways(home):
    from mullama_tui.tui.app import MullamaApp
    from mullama_tui.tui.screens.compare import CompareScreen
    from mullama_tui.tui.widgets.compare_pane import ComparePane
    from mullama_tui.tui.widgets.tokens import TokenView

    from helpers import configure, until

    configure(max_tokens=30, seed=4)
    app = MullamaApp(compare=([0.1, 0.9, 1.6], None), ignore_eos=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, CompareScreen), 5, "the compare screen")
        screen = app.screen
        await pilot.press("ctrl+t")
        await screen.run_prompt("Write a poem about the sea.")
        await until(pilot, lambda: not screen.running, 60, "the comparison")
        panes = list(screen.query(ComparePane))
        views = [p.query_one(TokenView) for p in panes]
        assert all(len(v.items) == 30 and all(i.insight for i in v.items) for v in views)
        ids = [[i.token_id for i in v.items] for v in views]
        expected = next(k for k in range(30) if len({row[k] for row in ids}) > 1)
        assert screen.diverge == expected and all(v.diverge == expected for v in views)
        said = "differ from the start" if expected == 0 else f"agree for {expected} tokens"
        assert said in str(screen.query_one("#total").render())
        # the cursor in a pane says why that token was chosen, on the pane's last line
        views[1].focus()
        views[1].select(expected)
        await pilot.pause()
        line = str(panes[1].query_one(".pane-stats").render())
        assert line.startswith(f"token {expected}") and "model" in line and "sampler" in line
