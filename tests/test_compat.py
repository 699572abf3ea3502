"""The streaming tutorial's Python snippets, with only the import line changed."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from mullama_tui import Context, Model, SamplerParams


@pytest.fixture(scope="module")
def ctx(model_path):
    model = Model.load(str(model_path), n_gpu_layers=-1)
    c = Context(model, n_ctx=2048)
    yield c
    c.close()


def test_the_tutorial_console_loop_streams_text_then_prints_its_stats(ctx, capsys):
    prompt = "The future of artificial intelligence is"
    print(f"Prompt: {prompt}")
    print("Output: ", end="", flush=True)
    pieces = ctx.generate_stream(prompt, max_tokens=100, params=SamplerParams(temperature=0.8, seed=7))
    n = 0
    for piece in pieces:
        print(piece, end="", flush=True)
        n += 1
    print()
    out = capsys.readouterr().out
    assert out.startswith("Prompt: The future") and len(out) > 60 and 0 < n <= 101


def test_generate_stream_really_streams(ctx):
    t0 = time.perf_counter()
    stamps = [time.perf_counter() for _ in ctx.generate_stream(
        "Once upon a time", max_tokens=64, params=SamplerParams(temperature=0.8, seed=2))]
    assert len(stamps) > 10
    assert stamps[0] - t0 < 0.5 * (stamps[-1] - t0)


def stream_with_stats(ctx, prompt, max_tokens=200, params=None):
    start_time = time.time()
    pieces = ctx.generate_stream(prompt, max_tokens=max_tokens, params=params)
    token_count = 0
    output = ""
    for piece in pieces:
        output += piece
        token_count += 1
    elapsed = time.time() - start_time
    tokens_per_sec = token_count / elapsed if elapsed > 0 else 0
    return {"output": output, "tokens": token_count, "elapsed": elapsed, "tok_per_sec": tokens_per_sec}


def test_stream_with_stats(ctx):
    stats = stream_with_stats(ctx, "Explain quantum computing:", max_tokens=150)
    assert stats["tokens"] > 0 and stats["tok_per_sec"] > 0 and stats["output"]
    assert ctx.last_stats is not None and ctx.last_stats.generated_tokens == stats["tokens"]


def test_temperature_comparison(ctx):
    outs = {}
    for temp in [0.1, 0.7, 1.2]:
        pieces = ctx.generate_stream("Once upon a time", max_tokens=30,
                                     params=SamplerParams(temperature=temp, seed=11))
        outs[temp] = "".join(pieces)
        ctx.clear_cache()
    assert all(outs.values()) and len(set(outs.values())) == 3


def test_early_stopping_then_generate_again(ctx):
    pieces = ctx.generate_stream("The meaning of life is", max_tokens=200)
    text = ""
    for p in pieces:
        text += p
        if "." in text and len(text) > 50:
            break
    assert "." in text
    # the next generation works normally, and the broken-off one was cancelled
    again = ctx.generate("The meaning of life is", max_tokens=10, params=SamplerParams.greedy())
    assert again
    assert ctx._engine.scheduler.active == 0


def test_generate_equals_joined_stream_and_presets(ctx):
    for params in (SamplerParams.greedy(), SamplerParams.precise(), SamplerParams.creative()):
        p = replace(params, seed=21)
        ctx.clear_cache()
        a = "".join(ctx.generate_stream("Tell me about the moon.", max_tokens=30, params=p))
        ctx.clear_cache()
        assert ctx.generate("Tell me about the moon.", max_tokens=30, params=p) == a
