"""The one streaming path of both screens (tui/stream.py), without Textual: `Frames` on
token events made by hand (pure bookkeeping: when a frame is due and what is in it), and
`pump` on real generations of the bundled model."""

from __future__ import annotations

import sys

from mullama_tui.engine.types import Candidate, FinishReason, Request, SamplerParams, Stats, TokenEvent, TokenInsight
from mullama_tui.tui.stream import Frames, News, TokenItem, pump


def ev(text: str, index: int, *, thinking: str = "", channel: str = "answer", done: bool = False) -> TokenEvent:
    if done:
        stats = Stats(finish_reason=FinishReason.LENGTH, generated_tokens=index)
        return TokenEvent(text, -1, index, FinishReason.LENGTH, stats)
    return TokenEvent(text, 100 + index, index, thinking=thinking, channel=channel)


def test_a_frame_is_due_once_per_interval_and_carries_everything_since_the_last():
    f = Frames([0.0], interval=0.2)
    f.collect(0, [ev("a", 0), ev("b", 1)], now=0.05)
    first = f.take(0.05)
    assert [(n.text, n.n_tokens, n.ttft) for n in first] == [("ab", 2, 0.05)]
    f.collect(0, [ev("c", 2)], now=0.10)
    assert f.take(0.10) == []  # 0.05 s after the last frame: not due
    f.collect(0, [ev("d", 3)], now=0.20)
    later = f.take(0.26)
    assert [(n.text, n.n_tokens, [i.token_id for i in n.items]) for n in later] == [("cd", 2, [102, 103])]
    assert later[0].ttft == 0.05 and later[0].elapsed == 0.26
    assert f.take(0.9) == []  # nothing new: no frame at all
    assert f.frames == 2


def test_an_end_is_shown_at_once_and_a_cancel_waits_for_the_others():
    f = Frames([0.0, 0.0], interval=10.0)
    f.collect(0, [ev("x", 0)], now=0.0)
    f.take(0.0)
    f.collect(0, [ev("y", 1), ev("", 2, done=True)], now=0.1)
    f.collect(1, [ev("z", 0)], now=0.1)
    assert f.take(0.1, holding=True) == []  # another generation was cancelled and has not ended
    frame = f.take(0.1)  # interval not over, but one generation ended
    assert [(n.index, n.text, n.done) for n in frame] == [(0, "y", True), (1, "z", False)]
    assert frame[0].stats is not None and frame[0].stats.generated_tokens == 2
    assert frame[0].n_tokens == 1  # the final event is not a token


def test_thinking_tokens_and_a_forced_first_token_become_items():
    forced = TokenInsight(token_id=7, piece="Yes", logprob=-0.1, top=[Candidate(7, "Yes", -0.1)], sampled_prob=0.9,
                          sampled_top=[Candidate(7, "Yes", -0.1)], entropy=0.3, kept=1, forced=True)
    f = Frames([0.0], interval=0.0, forced={0: forced})
    f.collect(0, [ev("", 0, thinking="hmm", channel="thinking"), ev("Yes", 1)], now=0.0)
    (news,) = f.take(1.0)
    assert [(i.text, i.thinking) for i in news.items] == [("hmm", True), ("Yes", False)]
    assert news.items[0].insight is forced and news.items[1].insight is None  # forced: index 0 only
    assert news.thinking == "hmm" and news.text == "Yes"
    assert TokenItem.from_dict(news.items[0].to_dict()).insight.forced  # survives history


def test_pump_streams_several_real_generations_in_few_frames(engine):
    gens = [engine.submit(Request(prompt="The sea is", mode="raw", max_tokens=40, ignore_eos=True,
                                  params=SamplerParams(temperature=t, seed=3))) for t in (0.2, 1.0)]
    frames: list[list[News]] = []
    pump(gens, 0.2, frames.append)
    texts = ["".join(n.text for frame in frames for n in frame if n.index == i) for i in range(2)]
    tokens = [sum(n.n_tokens for frame in frames for n in frame if n.index == i) for i in range(2)]
    assert tokens == [40, 40]
    assert all(g.finished and g.stats.generated_tokens == 40 for g in gens)
    assert all(texts) and texts[0] != texts[1]
    ends = [n for frame in frames for n in frame if n.done]
    assert sorted(n.index for n in ends) == [0, 1] and all(n.stats is not None for n in ends)
    assert len(frames) < 40  # batched: never one frame per token


def test_pump_reports_prompt_progress_before_the_first_text_and_stops_when_asked(engine):
    engine.clear_cache()
    prompt = " ".join(f"w{i}" for i in range(400))
    gen = engine.submit(Request(prompt=prompt, mode="raw", max_tokens=2000, ignore_eos=True))
    progress: list[int] = []
    frames: list[list[News]] = []

    def on_frame(frame: list[News]) -> None:
        frames.append(frame)

    pump([gen], 0.05, on_frame, on_progress=lambda g: progress.append(g.prompt_done),
         stop=lambda: sum(n.n_tokens for f in frames for n in f) >= 5)
    assert progress and progress == sorted(progress)  # prompt processing, in order
    assert gen.finished and gen.stats.finish_reason is FinishReason.CANCELLED
    assert gen.stats.generated_tokens < 2000


def test_the_stream_module_needs_no_textual():
    import subprocess

    code = "import mullama_tui.tui.stream, sys; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"
