"""The engine on the real bundled model: streaming, determinism, UTF-8, stops, limits,
cancellation, batching, backpressure, stats and bad input. No mock of llama.cpp."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mullama_tui.engine.llama import LlamaModel, batch_invariance
from mullama_tui.engine.local import LocalEngine
from mullama_tui.engine.types import (
    ContextOverflowError,
    EngineClosedError,
    FinishReason,
    InvalidParamsError,
    ModelLoadError,
    ModelNotFoundError,
    Request,
    SamplerParams,
)

from helpers import greedy_gap, require_batch_invariance, wait_until

STORY = "Once upon a time, in a small village by the sea, there lived"


def raw(prompt: str = STORY, max_tokens: int = 48, ignore_eos: bool = False, **params) -> Request:
    return Request(prompt=prompt, mode="raw", max_tokens=max_tokens, ignore_eos=ignore_eos,
                   params=SamplerParams(**{"seed": 7, **params}))


def collect(gen):
    return list(gen)


def test_events_arrive_while_decoding_not_after(engine):
    gen = engine.submit(raw(max_tokens=96, ignore_eos=True))
    stamps = [(time.perf_counter(), e) for e in gen]
    first, last = stamps[0][0], stamps[-1][0]
    assert len(stamps) == 97  # 96 tokens and the final event
    # the first piece arrives well before the last token is decoded
    assert first - gen.t_submit < 0.5 * (last - gen.t_submit)
    # and arrivals are spread out, not delivered in one burst at the end
    mid = stamps[48][0]
    assert first < mid < last


def test_streamed_text_equals_non_streamed_text_for_same_seed(engine):
    engine.clear_cache()
    pieces = [e.text for e in engine.submit(raw(temperature=0.9, seed=1234))]
    engine.clear_cache()
    whole = engine.submit(raw(temperature=0.9, seed=1234)).text()
    assert "".join(pieces) == whole and len(whole) > 20


def test_greedy_is_deterministic_and_cache_reuse_does_not_change_it(engine):
    engine.clear_cache()
    a = engine.submit(raw(temperature=0.0)).text()
    b = engine.submit(raw(temperature=0.0))  # reuses the cached prompt
    assert b.text() == a
    assert b.stats.cached_tokens > 0


def test_random_seed_is_reported_and_reproduces_the_run(engine):
    gen = engine.submit(raw(temperature=1.0, seed=0))
    text = gen.text()
    assert gen.stats.seed != 0
    assert engine.submit(raw(temperature=1.0, seed=gen.stats.seed)).text() == text


def test_utf8_japanese_and_emoji_pieces_are_whole_characters(engine, model_path):
    prompt = "日本語の文: 東京は日本の首都です。🍣🍜🗾 次の文: 大阪は"
    gen = engine.submit(raw(prompt, max_tokens=64, temperature=0.0))
    events = collect(gen)
    tokens = [e.token_id for e in events if not e.done]
    text = "".join(e.text for e in events)
    assert all("\ufffd" not in e.text for e in events)
    assert any(ord(c) > 0x2E80 for c in text), text  # the model did write CJK/emoji
    model = engine.model
    # some character really was split across tokens (so the test means something) ...
    assert any(not _is_utf8(model.piece(t)) for t in tokens)
    # ... and nothing was lost: the pieces join to the decoding of all the tokens
    assert text == model.detokenize(tokens)


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def test_stop_string_spanning_two_tokens_is_cut_and_never_emitted(engine):
    engine.clear_cache()
    events = collect(engine.submit(raw(max_tokens=60, temperature=0.0)))
    pieces = [e.text for e in events if not e.done]
    full = "".join(pieces)
    # pick a stop string made of the end of one piece and the start of the next
    for i in range(5, len(pieces) - 1):
        if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 2:
            stop = pieces[i][-2:] + pieces[i + 1][:2]
            break
    else:
        pytest.fail("no two long enough neighbouring pieces")
    expected = full[:full.index(stop)]
    engine.clear_cache()
    gen = engine.submit(raw(max_tokens=60, temperature=0.0, stop=[stop]))
    out = [e.text for e in gen]
    assert "".join(out) == expected
    assert all(stop not in p for p in out)
    assert gen.finish_reason is FinishReason.STOP


def test_max_tokens_is_honoured(engine):
    gen = engine.submit(raw(max_tokens=5, ignore_eos=True))
    events = collect(gen)
    assert [e.index for e in events] == [0, 1, 2, 3, 4, 5]
    assert gen.stats.generated_tokens == 5
    assert gen.finish_reason is FinishReason.LENGTH


def test_break_out_cancels_and_next_generation_works(engine):
    gen = engine.submit(raw(max_tokens=500, ignore_eos=True))
    for i, _event in enumerate(gen):
        if i == 3:
            break
    assert gen.cancelled
    assert gen.wait(2.0)
    assert gen.finish_reason is FinishReason.CANCELLED
    assert gen.stats.generated_tokens < 20
    wait_until(lambda: engine.scheduler.active == 0, 2, "the slot to be freed")
    nxt = engine.submit(raw(max_tokens=8, ignore_eos=True))
    assert len(nxt.text()) > 0 and nxt.finish_reason is FinishReason.LENGTH


def test_cancel_during_a_long_prompt_returns_quickly(engine):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 170  # ~1700 tokens
    engine.clear_cache()
    before = engine.scheduler.prompt_tokens_processed
    gen = engine.submit(raw(long_prompt, max_tokens=16))
    assert len(gen.prompt_tokens) > 1500
    # the first 512-token chunk is done, so the cancel lands inside a later one
    wait_until(lambda: engine.scheduler.prompt_tokens_processed > before, 10, "the first prompt chunk")
    assert not gen.finished
    t0 = time.perf_counter()
    gen.cancel()
    assert gen.wait(2.0)
    latency = time.perf_counter() - t0
    assert gen.finish_reason is FinishReason.CANCELLED
    assert gen.stats.generated_tokens == 0
    assert latency < 0.25, f"cancel took {latency * 1000:.0f} ms"


def test_stats_are_consistent_with_the_events(engine):
    engine.clear_cache()
    gen = engine.submit(raw(max_tokens=32, ignore_eos=True))
    events = collect(gen)
    st = gen.stats
    assert st is events[-1].stats
    assert st.generated_tokens == len(events) - 1 == 32
    assert st.prompt_tokens == len(gen.prompt_tokens) and st.cached_tokens == 0
    assert st.prompt_tps > 0 and st.gen_tps > 0
    assert 0 < st.ttft <= st.total_time
    assert st.prompt_time < st.ttft
    assert st.gen_tps == pytest.approx(st.generated_tokens / st.gen_time)


def test_chat_mode_uses_the_models_chat_template(engine):
    req = Request(prompt="Say hi", mode="chat", system="Be brief.")
    toks = engine.prompt_tokens(req)
    text = engine.model.detokenize(toks)
    assert "Be brief." in text and "<|im_start|>" not in text  # specials are tokens, not text
    assert engine.model.render_chat(req.chat_messages()).startswith("<|im_start|>system\nBe brief.")
    gen = engine.submit(Request(prompt="What is 2+2?", mode="chat", max_tokens=30,
                                params=SamplerParams.greedy()))
    assert gen.text().strip() and gen.finish_reason in (FinishReason.EOS, FinishReason.LENGTH)


def read_together(gens) -> list[list]:
    """Every event of each generation, read concurrently (as a front end must: see
    backpressure), in a thread each."""
    out: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i, g=g: out.__setitem__(i, list(g))) for i, g in enumerate(gens)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    return [out[i] for i in range(len(gens))]


def complete(events, n: int) -> list[int]:
    """Assert one well-formed stream of exactly n tokens; return its token ids."""
    assert [e.index for e in events[:-1]] == list(range(n))
    assert all(not e.done for e in events[:-1]) and events[-1].finish_reason is FinishReason.LENGTH
    assert events[-1].stats.generated_tokens == n
    return [e.token_id for e in events[:-1]]


GAP = 0.5  # logits; the batch drift of real hardware is thousandths


def test_concurrent_generations_share_one_batch_and_stay_their_own(engine):
    """What holds on any hardware: three different prompts decoded together finish
    complete, in one decode per step, and each stream is its own: every greedy token is
    (up to the machine's batch drift) the best token for its own prompt alone."""
    engine.clear_cache()
    prompts = [STORY, "The three primary colours are", "def fibonacci(n):\n    "]
    before = engine.scheduler.decode_calls
    gens = [engine.submit(raw(p, max_tokens=40, temperature=0.0, penalty_repeat=1.0, ignore_eos=True))
            for p in prompts]
    tokens = [complete(evs, 40) for evs in read_together(gens)]
    steps = engine.scheduler.decode_calls - before
    assert steps < 2 * 40  # one after another would be 3 x 41 decodes
    for gen, toks in zip(gens, tokens):
        assert greedy_gap(engine.model, gen.prompt_tokens, toks) < GAP
    # the check has teeth: a stream does not pass as another prompt's
    assert greedy_gap(engine.model, gens[1].prompt_tokens, tokens[0]) > GAP
    assert len({tuple(t) for t in tokens}) == 3


def test_compare_panes_process_the_shared_prompt_once(engine):
    engine.clear_cache()
    before = engine.scheduler.prompt_tokens_processed
    gens = [engine.submit(raw(max_tokens=40, temperature=t, seed=99, ignore_eos=True)) for t in (0.1, 0.7, 1.2)]
    tokens = [complete(evs, 40) for evs in read_together(gens)]
    assert len({tuple(t) for t in tokens}) == 3
    assert engine.scheduler.prompt_tokens_processed - before == len(gens[0].prompt_tokens)


def test_the_batch_invariance_probe_sees_drift_where_there_is_some(engine, batch_drift):
    # a unified KV cache puts a sequence's cells among the others', which changes its
    # logits: the probe must see that (it is why the engine keeps one stream per sequence)
    assert batch_invariance(engine.model, engine.scheduler.n_threads, kv_unified=True) > 1e-4


def test_batched_text_equals_single_runs_where_the_hardware_is_batch_invariant(engine, batch_drift):
    require_batch_invariance(batch_drift)
    temps = (0.1, 0.7, 1.2)
    singles = []
    for t in temps:
        engine.clear_cache()
        singles.append(engine.submit(raw(max_tokens=40, temperature=t, seed=99, ignore_eos=True)).text())
    engine.clear_cache()
    gens = [engine.submit(raw(max_tokens=40, temperature=t, seed=99, ignore_eos=True)) for t in temps]
    texts = ["".join(e.text for e in evs) for evs in read_together(gens)]
    assert texts == singles and len(set(singles)) == 3


def test_a_slow_consumer_pauses_only_its_own_sequence(model_path):
    with LocalEngine(model_path, n_ctx=512, n_parallel=2, capacity=4) as eng:
        slow = eng.submit(raw(max_tokens=200, ignore_eos=True))
        fast = eng.submit(raw(STORY + " a dragon", max_tokens=60, ignore_eos=True))
        assert len(fast.text()) > 0 and fast.finish_reason is FinishReason.LENGTH
        # the unread generation stopped at its buffer size instead of running ahead
        assert not slow.finished and slow.buffered == 4
        rest = collect(slow)
        assert len(rest) == 201 and slow.finish_reason is FinishReason.LENGTH


def test_async_iteration_does_not_block_the_event_loop(engine):
    async def main():
        ticks = 0
        stop = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        t = asyncio.create_task(ticker())
        gen = engine.submit(raw(max_tokens=48, ignore_eos=True))
        events = [e async for e in gen]
        stop.set()
        await t
        return events, ticks

    events, ticks = asyncio.run(main())
    assert len(events) == 49 and events[-1].done
    assert ticks > 20  # the loop kept running while we waited for tokens


def test_queue_of_more_requests_than_slots_all_complete(engine):
    gens = [engine.submit(raw(max_tokens=6, ignore_eos=True, seed=s + 1)) for s in range(7)]
    for g in gens:
        assert g.wait(30)
    assert all(g.finish_reason is FinishReason.LENGTH for g in gens)


# -- bad input ------------------------------------------------------------------

def test_missing_model_path():
    with pytest.raises(ModelNotFoundError, match="not found"):
        LlamaModel("/no/such/model.gguf")


def test_directory_instead_of_model(tmp_path):
    with pytest.raises(ModelLoadError, match="directory"):
        LlamaModel(tmp_path)


def test_file_that_is_not_gguf(tmp_path):
    p = tmp_path / "notes.gguf"
    p.write_text("this is not a model")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        LlamaModel(p)


@pytest.mark.parametrize("keep", [100, 1_000_000, 90_000_000])
def test_truncated_gguf(tmp_path, model_path, keep):
    p = tmp_path / "cut.gguf"
    with model_path.open("rb") as src, p.open("wb") as dst:
        dst.write(src.read(keep))
    with pytest.raises(ModelLoadError, match="cannot load"):
        LlamaModel(p)


def test_prompt_longer_than_context(engine):
    with pytest.raises(ContextOverflowError, match="context holds 2048"):
        engine.submit(raw("word " * 3000))


@pytest.mark.parametrize("params, match", [
    ({"temperature": -0.5}, "temperature"),
    ({"top_p": 0.0}, "top_p"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"min_p": 2.0}, "min_p"),
    ({"temperature": float("nan")}, "temperature"),
])
def test_invalid_sampler_values(engine, params, match):
    with pytest.raises(InvalidParamsError, match=match):
        engine.submit(raw(**params))


@pytest.mark.parametrize("max_tokens", [0, -3])
def test_invalid_max_tokens(engine, max_tokens):
    with pytest.raises(InvalidParamsError, match="max_tokens"):
        engine.submit(raw(max_tokens=max_tokens))


def test_model_load_reports_progress(model_path):
    """The TUI's model picker shows this while a new model loads."""
    seen: list[float] = []
    e = LocalEngine(model_path, n_ctx=256, n_parallel=1, on_progress=seen.append)
    e.close()
    assert len(seen) > 2 and seen == sorted(seen) and seen[-1] == 1.0


def test_amx_builds_keep_weights_out_of_the_amx_buffers(monkeypatch):
    """A llama.cpp built on a CPU that advertises AMX segfaulted on its first decode in a
    VM (the AMX tile kernels). On such builds the weights stay in plain CPU buffers unless
    MULLAMA_TUI_AMX=1; other builds keep llama.cpp's extra (repacking) buffers."""
    import llama_cpp

    from mullama_tui.engine import llama

    has_amx = b"AMX_INT8 = 1" in llama_cpp.llama_print_system_info()
    monkeypatch.delenv("MULLAMA_TUI_AMX", raising=False)
    assert llama.model_params().use_extra_bufts is (not has_amx)
    monkeypatch.setenv("MULLAMA_TUI_AMX", "1")
    assert llama.model_params().use_extra_bufts is True
    assert llama.model_params(n_gpu_layers=-1).n_gpu_layers == -1


def test_flash_attention_only_where_layers_go_to_a_gpu(engine, model_path):
    """llama.cpp's AUTO turns on CPU flash attention, measured much slower here for decode
    steps (see `llama.create_context`); it stays off unless layers are offloaded to a GPU
    build. The tutorial's `n_gpu_layers=-1` on a CPU build must not turn it on."""
    from mullama_tui.engine import llama

    assert engine.scheduler.flash_attn is False
    with LocalEngine(engine.model, n_ctx=64, n_parallel=1, n_gpu_layers=-1) as e:
        assert e.scheduler.flash_attn is False  # the shared model was loaded with 0 layers
    model = LlamaModel(model_path, n_gpu_layers=-1)
    try:
        with LocalEngine(model, n_ctx=64, n_parallel=1) as e:
            assert e.scheduler.flash_attn is llama.supports_gpu_offload()
            gen = e.submit(raw(max_tokens=4, ignore_eos=True, temperature=0))
            assert sum(1 for ev in gen if not ev.done) == 4 and gen.stats.generated_tokens == 4
    finally:
        model.close()


# -- bounds the C code can trust ----------------------------------------------------------

def test_a_full_batch_refuses_another_token(model_path):
    from mullama_tui.engine.llama import Batch

    batch = Batch(2, 1)
    try:
        batch.add(1, 0, 0, False)
        batch.add(2, 1, 0, True)
        with pytest.raises(OverflowError, match="full"):
            batch.add(3, 2, 0, True)
        assert batch.n == 2
    finally:
        batch.free()


@pytest.mark.parametrize("kwargs, match", [
    ({"n_batch": 2, "n_parallel": 4}, "n_batch=2 is smaller than n_parallel=4"),
    ({"n_batch": 0}, "n_batch=0"),
    ({"n_ctx": 8}, "n_ctx=8"),
    ({"n_parallel": 0}, "n_parallel=0"),
    ({"n_threads": 0}, "n_threads=0"),
    ({"capacity": 0}, "capacity=0"),
])
def test_engine_parameters_are_checked_before_any_c_call(engine, kwargs, match):
    with pytest.raises(InvalidParamsError, match=match):
        LocalEngine(engine.model, **kwargs)


def test_compat_context_with_a_zero_batch_is_a_typed_error(engine):
    from mullama_tui import Context, Model

    with pytest.raises(InvalidParamsError, match="n_batch=0"):
        Context(Model(engine.model), n_batch=0)


def test_slot_states_follow_a_request_through_the_scheduler(model_path):
    from mullama_tui.engine.scheduler import SlotState

    with LocalEngine(model_path, n_ctx=512, n_parallel=2, capacity=2) as eng:
        assert [s.state for s in eng.scheduler.slots] == [SlotState.IDLE] * 2
        gen = eng.submit(raw(max_tokens=50, ignore_eos=True))
        wait_until(lambda: gen.buffered == 2, what="the channel to fill")  # paused by backpressure
        assert [s.state for s in eng.scheduler.slots].count(SlotState.GENERATING) == 1
        assert eng.scheduler.active == 1
        gen.cancel()
        assert gen.wait(5)
        wait_until(lambda: eng.scheduler.active == 0, what="the slot to be freed")
        assert [s.state for s in eng.scheduler.slots] == [SlotState.IDLE] * 2


def test_backend_sampling_gives_the_host_samplers_tokens(model_path):
    """Sampling inside llama.cpp's graph (what the engine does where the output layer runs
    on a GPU) is forced here on the CPU: the same seeds give the same tokens as the host's
    C sampler chains, for compare panes sharing a prompt and for a penalised greedy run."""
    def tokens(sampling: str) -> list[list[int]]:
        with LocalEngine(model_path, n_ctx=512, n_parallel=4, sampling=sampling) as eng:
            assert eng.scheduler.sampling_mode == sampling
            gens = [eng.submit(raw(max_tokens=30, temperature=t, seed=11, ignore_eos=True)) for t in (0.3, 0.9, 1.4)]
            gens.append(eng.submit(raw("The three primary colours are", max_tokens=30, temperature=0.0,
                                       penalty_repeat=1.3, ignore_eos=True)))
            return [[e.token_id for e in evs[:-1]] for evs in read_together(gens)]

    host, backend = tokens("host"), tokens("backend")
    assert all(len(t) == 30 for t in backend)
    assert backend == host and len({tuple(t) for t in host}) == 4


def test_the_engine_samples_on_the_host_on_a_cpu_build(engine):
    assert engine.model.placement.summary == "CPU" and engine.scheduler.sampling_mode == "host"


def test_new_requests_take_the_lowest_empty_sequences_and_keep_a_cached_conversation(engine):
    """Free slots are taken lowest sequence first, whenever requests arrive (llama.cpp
    attends over the range of sequence streams a batch touches: a batch in sequences 0, 1
    and 3 computes attention for four), and an unrelated request takes an empty slot
    rather than a slot whose cache a follow-up could reuse."""
    sched = engine.scheduler
    engine.clear_cache()
    first = engine.submit(raw("The keeper kept a diary.", max_tokens=4, temperature=0.0))
    first.text()  # ends; its slot keeps the prompt and reply cached
    kept = next(s for s in sched.slots if s.cached)
    gens = []
    for i in range(3):  # one by one, each admitted before the next arrives
        gens.append(engine.submit(raw(f"Fact {i}: the sea is", max_tokens=40, ignore_eos=True)))
        wait_until(lambda: gens[-1].prompt_done > 0, 30, f"request {i} to be admitted", 0.005)
    busy = sorted(s.seq for s in sched.slots if s.run is not None and s.run.gen in gens)
    for g in gens:
        g.text()
    assert kept.cached and kept.seq not in busy  # the conversation's cache survived
    others = sorted(s.seq for s in sched.slots if s is not kept)
    assert busy == others[:3], (busy, kept.seq)  # the lowest free ones, in order


def test_threads_auto_is_the_default_reported_and_changes_the_live_context(model_path):
    """With no thread count the engine chooses while it runs: the stats and the choice say
    auto, and the live llama context is switched between steps (here a short exploring
    interval makes it look at its neighbours within the run)."""
    import llama_cpp

    from mullama_tui.engine.threads import cpu_cores

    with LocalEngine(model_path, n_ctx=512, n_parallel=1) as eng:
        sched = eng.scheduler
        choice = eng.thread_choice()
        assert choice.auto and choice.cores == cpu_cores() and 1 <= choice.decode <= choice.cores
        sched.threads.decode.base_interval = sched.threads.decode.interval = 16
        used: list[int] = []
        ctx = sched._ctx
        original = ctx.set_threads
        ctx.set_threads = lambda n, b=None: (used.append(n), original(n, b))  # record, then really set
        gen = eng.submit(raw(max_tokens=120, ignore_eos=True))
        gen.text()
        st = gen.stats
        assert st.threads_auto and st.cores == choice.cores and 1 <= st.n_threads <= st.cores
        assert f"threads:         {st.threads_label}" in st.summary_lines()
        assert st.threads_label.endswith(", auto")
        assert llama_cpp.llama_n_threads(ctx.ptr) == sched._ctx_threads
        if choice.cores >= 2:
            assert sched.threads.decode.explorations >= 1
            assert set(used) - {choice.cores}, used  # a neighbour was tried on the live context


def test_a_fixed_thread_count_is_kept_and_capped_at_the_cores(model_path):
    import llama_cpp

    from mullama_tui.engine.threads import cpu_cores

    with LocalEngine(model_path, n_ctx=512, n_parallel=1, n_threads=1) as eng:
        sched = eng.scheduler
        sched.threads.decode.base_interval = sched.threads.decode.interval = 8
        gen = eng.submit(raw(max_tokens=60, ignore_eos=True))
        gen.text()
        assert gen.stats.n_threads == 1 and not gen.stats.threads_auto
        assert gen.stats.threads_label == f"1 of {cpu_cores()}, fixed"
        assert llama_cpp.llama_n_threads(sched._ctx.ptr) == 1
        assert sched.threads.decode.switches == 0 and sched.threads.decode.explorations == 0
        eng.set_threads(None)  # back to auto, live
        assert eng.thread_choice().auto
    with LocalEngine(model_path, n_ctx=512, n_parallel=1, n_threads=1000) as eng:
        assert eng.thread_choice().decode == cpu_cores() and not eng.thread_choice().auto


def test_the_thread_count_does_not_change_greedy_text(engine):
    """Switching threads while a run goes on must not change what it generates: ggml's CPU
    kernels split rows between threads, so a row's arithmetic is the same on 1 or N."""
    from mullama_tui.engine.threads import cpu_cores

    if cpu_cores() < 2:
        pytest.skip("one core: nothing to switch between")
    texts = []
    try:
        for n in (1, cpu_cores()):
            engine.set_threads(n)
            engine.clear_cache()
            texts.append(engine.submit(raw(max_tokens=48, temperature=0.0, ignore_eos=True)).text())
    finally:
        engine.set_threads(None)
    assert texts[0] == texts[1]


def test_a_closed_engine_refuses_with_a_typed_error_not_a_crash(model_path):
    """After close the model's memory is freed: llama.cpp would crash on its vocabulary."""
    eng = LocalEngine(model_path, n_ctx=256, n_parallel=1)
    eng.close()
    with pytest.raises(EngineClosedError):
        eng.prompt_tokens(raw("hello"))
    with pytest.raises(EngineClosedError):
        eng.submit(raw("hello"))
