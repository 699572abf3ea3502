"""The thread that owns the llama context and decodes every active sequence in one batch.

Why one thread: a llama context is not thread-safe, and batching many sequences into a
single `llama_decode` is where CPU throughput comes from (three sequences batched run
~1.3x the aggregate of one). So every front end submits a `Generation` here and reads
events back; nothing else touches the context.

One step of the loop:
1. admit waiting requests into free sequence slots (reusing KV-cached prefixes, see below);
2. drop cancelled sequences (their KV is trimmed back to what is known to be valid);
3. build one batch: the last sampled token of each generating sequence whose event
   channel has room (backpressure: a full channel just skips that sequence this step),
   then prompt chunks of sequences still prefilling, up to `n_batch` tokens;
4. one `llama_decode`, which cancel() can interrupt through an abort flag polled by
   llama.cpp itself (see `llama.AbortFlag`: no Python, no GIL on that path);
5. sample each sequence with its own C sampler chain at its own batch index, turn the
   token into text (UTF-8 and stop strings), push an event, finish if done.

KV reuse: each slot remembers the tokens whose KV it holds. A new request takes the free
slot with the longest common prefix (a chat follow-up turn re-processes only the new
part), or copies the prefix from another slot with `llama_memory_seq_cp`. Requests whose
prompt is being prefilled by another sequence right now wait for it and then share it:
N compare panes process their prompt once, not N times.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from . import llama
from .generation import DEFAULT_CAPACITY, Generation
from .insight import InsightProbe
from .session import SessionError, SessionStore, common_prefix
from .text import ReasoningSplitter, ReasoningTags, TextAssembler
from .threads import StepWatchdog, ThreadChoice, ThreadController, ThreadTuner, cpu_cores
from .types import (
    ContextOverflowError,
    EngineClosedError,
    FinishReason,
    InvalidParamsError,
    QueueFullError,
    Request,
    Stats,
    TokenEvent,
    TokenInsight,
    require_whole,
)

log = logging.getLogger("mullama_tui.scheduler")


class SlotState(enum.Enum):
    """What a sequence slot is doing (llama.cpp's server names its slot states the same way)."""

    IDLE = "idle"              # no request; its KV may still hold a prefix for reuse
    PREFILLING = "prefilling"  # prompt tokens left to decode
    GENERATING = "generating"  # its last sampled token goes into the next batch


@dataclass
class StepTimes:
    """Where the scheduler thread's time goes, summed over its life (`bench --overhead`).
    Host time is everything but `decode`: what the engine adds to llama.cpp per step."""

    steps: int = 0
    sampled: int = 0  # sequences sampled, summed over steps
    total: float = 0.0
    decode: float = 0.0
    sample: float = 0.0  # the C sampler chains
    text: float = 0.0  # token bytes -> text (UTF-8, stop strings), events pushed

    @property
    def host(self) -> float:
        return self.total - self.decode

    @property
    def bookkeeping(self) -> float:
        return self.host - self.sample - self.text


@dataclass(eq=False)
class Run:
    """One request while it holds a slot: created at admission, dropped at its end.

    Everything here belongs to the request (llama.cpp's server keeps the same split as a
    TODO: slot state apart from request state), so a slot never carries a previous
    request's sampler, counters or timings into the next one."""

    gen: Generation
    sampler: llama.SamplerChain
    text: TextAssembler
    probe: InsightProbe | None = None  # with Request.logprobs: measures each token's distributions
    t_admit: float = field(default_factory=time.perf_counter)
    forced: list[int] = field(default_factory=list)  # tokens to take next instead of sampling
    next_token: int = -1  # sampled, emitted, not yet decoded
    n_gen: int = 0
    thinking_tokens: int = 0
    answer_tokens: int = 0
    t_think_start: float = 0.0
    t_think_end: float = 0.0
    t_first_answer: float | None = None
    t_prompt_done: float = 0.0
    t_first: float | None = None
    t_last: float = 0.0
    t_full: float = 0.0  # when its event channel filled (nobody read), 0 while it has room

    def fill_stats(self, st: Stats) -> Stats:
        """This request's counters and timings into `st` (which holds the engine's part)."""
        gen = self.gen
        st.cached_tokens = gen.cached_tokens
        st.queue_time = self.t_admit - gen.t_submit
        st.generated_tokens = self.n_gen
        if self.t_prompt_done:
            st.prompt_time = self.t_prompt_done - self.t_admit
            st.gen_time = max(0.0, self.t_last - self.t_prompt_done) if self.n_gen else 0.0
        if self.t_first is not None:
            st.ttft = self.t_first - gen.t_submit
        if self.text.reasoning is not None:
            st.thinking_tokens, st.answer_tokens = self.thinking_tokens, self.answer_tokens
            if self.t_first_answer is not None:
                st.ttft_answer = self.t_first_answer - gen.t_submit
            if self.t_think_start:
                st.thinking_time = (self.t_think_end or self.t_last) - self.t_think_start
        return st

    def free(self) -> None:
        """Release the C sampler chains (the slot lives on)."""
        self.sampler.free()
        if self.probe is not None:
            self.probe.free()


@dataclass(eq=False)
class Slot:
    """One llama sequence id: its KV, its state, and the request it serves now (if any)."""

    seq: int
    state: SlotState = SlotState.IDLE
    cached: list[int] = field(default_factory=list)  # tokens whose KV this sequence holds
    todo: list[int] = field(default_factory=list)  # prompt tokens still to prefill
    logits_idx: int = -1  # batch index of this sequence's logits after the last decode
    chunk: int = 0  # prompt tokens the current batch carries for this sequence
    last_used: float = 0.0
    run: Run | None = None

    @property
    def serving(self) -> Run:
        """The run of a slot known to be busy (PREFILLING or GENERATING)."""
        assert self.run is not None, f"slot {self.seq} is idle"
        return self.run


class Scheduler:
    """Owns one llama context with `n_parallel` sequences of up to `n_ctx` tokens each."""

    def __init__(self, model: llama.LlamaModel, n_ctx: int = 4096, n_parallel: int = 4,
                 n_batch: int = 512, n_threads: int | None = None, max_queue: int = 64,
                 capacity: int = DEFAULT_CAPACITY, flash_attn: bool = False, sampling: str = "auto",
                 sessions: SessionStore | None = None) -> None:
        """`sampling`: "host" (a C sampler chain per sequence, after each decode), "backend"
        (the same chains inside llama.cpp's graph), or "auto": backend where the output
        layer runs on a GPU, host otherwise (see `llama.SamplerChain`)."""
        for name, value, least in (("n_ctx", n_ctx, 16), ("n_parallel", n_parallel, 1), ("n_batch", n_batch, 1),
                                   ("max_queue", max_queue, 0), ("capacity", capacity, 1)):
            require_whole(name, value, least)
        if n_batch < n_parallel:
            raise InvalidParamsError(f"n_batch={n_batch} is smaller than n_parallel={n_parallel}: every "
                                     f"generating sequence needs a place in each batch")
        if n_threads is not None:
            require_whole("n_threads", n_threads, 1)
        self.model = model
        # a generation whose reader has taken nothing for this long (its channel full the
        # whole time) is cancelled and its slot freed; None: wait forever (set by `serve`)
        self.stall_timeout: float | None = None
        self.stalled = 0  # generations cancelled so (the soak benchmark reads it)
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.n_batch = n_batch
        # None: chosen while it runs (see `threads.py`); a number stays fixed
        self.threads = ThreadController(cpu_cores(), min(n_threads, cpu_cores()) if n_threads else None)
        self._ctx_threads = 0  # what the context was last told
        self.max_queue = max_queue
        self.capacity = capacity
        self.flash_attn = flash_attn
        # saved conversations: requests with a `session` are saved when they end, and any
        # request restores the saved state holding the longest prefix of its prompt
        self.sessions = sessions
        self.identity = ""  # what a saved state must match (model file, build, context kind)
        self.restored_tokens = 0  # lifetime count of prompt tokens restored from disk (tests read it)
        self.save_time = 0.0  # seconds this thread spent copying states out for the store (bench --resume)
        self._lock = threading.Lock()
        self._wake_event = threading.Event()
        self._pending: deque[Generation] = deque()
        self._closing = False
        self._slots = [Slot(seq=i) for i in range(n_parallel)]
        self._batch_slots: list[Slot] = []
        self._ctx: llama.LlamaContext | None = None
        self._clear_cache = False
        self._prompt_probe = False
        self.prompt_tokens_processed = 0  # lifetime counters (benchmarks and tests read them)
        self.decode_calls = 0
        self.times = StepTimes()
        if sampling not in ("auto", "host", "backend"):
            raise InvalidParamsError(f"sampling={sampling!r}: auto, host or backend")
        placement = model.placement
        on_gpu = placement.gpu_layers >= placement.n_layers > 0
        self.sampling_mode = "backend" if sampling == "backend" or (sampling == "auto" and on_gpu) else "host"
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="mullama-scheduler", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    # -- public, any thread -------------------------------------------------------
    def submit(self, request: Request, prompt_tokens: list[int],
               reasoning: tuple[ReasoningTags, bool] | None = None) -> Generation:
        """Queue a request; returns at once. Raises on overflow, a full queue, or close.
        `reasoning`: a thinking model's tags, and whether the reply starts inside them."""
        if len(prompt_tokens) >= self.n_ctx:
            raise ContextOverflowError(
                f"the prompt is {len(prompt_tokens)} tokens but the context holds {self.n_ctx} "
                f"(leave room for the reply: shorten the prompt or raise --ctx)")
        if not prompt_tokens:
            raise InvalidParamsError("the prompt is empty after tokenization")
        seed = request.params.seed or random.randrange(1, 2**32)
        gen = Generation(request, prompt_tokens, seed, self.notify, self.capacity)
        gen.reasoning = reasoning
        with self._lock:
            if self._closing:
                raise EngineClosedError("the engine is shut down")
            # slots being freed or filled right now count too: active + waiting is what
            # matters, so a burst into an idle engine is not refused
            if len(self._pending) + self.active >= self.n_parallel + self.max_queue:
                raise QueueFullError(f"{self.n_parallel} requests are running and "
                                     f"{len(self._pending)} waiting")
            self._pending.append(gen)
        self.wake()
        return gen

    def wake(self) -> None:
        self._wake_event.set()

    @property
    def active(self) -> int:
        return sum(1 for s in self._slots if s.state is not SlotState.IDLE)

    @property
    def slots(self) -> tuple[Slot, ...]:
        """The sequence slots, to look at (tests, benchmarks): only this thread changes them."""
        return tuple(self._slots)

    @property
    def queued(self) -> int:
        return len(self._pending)

    @property
    def n_threads(self) -> int:
        """The threads one-token-per-sequence steps decode on (the settled choice)."""
        return self.threads.decode.chosen

    def thread_choice(self) -> ThreadChoice:
        """What the engine decodes on now (gauge, stats, /health)."""
        return self.threads.choice()

    def set_threads(self, n: int | None) -> None:
        """Pin the thread count from the next step on, or None: choose it while running."""
        if n is not None:
            require_whole("n_threads", n, 1)
        self.threads.set_fixed(min(n, self.threads.cores) if n else None)
        self.wake()

    def clear_cache(self) -> None:
        """Forget all cached prefixes (applied by the scheduler thread before its next step)."""
        self._clear_cache = True
        self.wake()

    def close(self, timeout: float = 10.0) -> None:
        """Cancel everything, stop the thread and free the context."""
        with self._lock:
            self._closing = True
        ctx = self._ctx
        if ctx is not None and ctx.ptr:
            ctx.abort.set()
        self.wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the scheduler thread -----------------------------------------------------
    def _run(self) -> None:
        try:
            self._ctx = llama.LlamaContext(self.model, self.n_ctx * self.n_parallel, self.n_parallel,
                                           self.n_batch, self.n_threads, flash_attn=self.flash_attn)
            self._ctx_threads = self.n_threads
            if self.sessions is not None:
                self.identity = f"{self.model.identity}:fa{int(self.flash_attn)}"
            self._watchdog = StepWatchdog(self._ctx.abort.set)
            self._mem = self._ctx.memory
            self._batch = self._ctx.batch
        except BaseException as e:  # reported to the constructor
            self._startup_error = e
            self._ready.set()
            return
        self._ready.set()
        try:
            while self._step():
                pass
        except BaseException as e:  # never leave consumers hanging
            log.exception("scheduler crashed")
            self._fail_all(f"engine error: {e}")
        finally:
            self._shutdown()

    def _step(self) -> bool:
        """One admit/decode/sample round. Returns False when the engine is closing."""
        self._t_step = time.perf_counter()
        self._wake_event.clear()
        if self._closing:
            return False
        if self._clear_cache:
            self._clear_cache = False
            for s in self._slots:
                if s.state is SlotState.IDLE:
                    self._mem.remove(s.seq)
                    s.cached = []
        self._admit()
        for s in self._slots:
            if s.run is not None and s.run.gen.cancelled:
                self._finish(s, FinishReason.CANCELLED)
        if self.stall_timeout is not None:
            self._end_stalled(self.stall_timeout)
        if not self._build_batch():
            self._wake_event.wait(0.5)
            return True
        ctx = self._ctx
        assert ctx is not None
        ctx.abort.clear()
        if self._closing or self._all_cancelled():  # a cancel() that raced the line above
            ctx.abort.set()
        tuner, per, timed, shape = self._tuner_for(self._batch.n)
        n_threads = 1 if self._prompt_probe else tuner.current
        if n_threads != self._ctx_threads:
            ctx.set_threads(n_threads)
            self._ctx_threads = n_threads
        limit = None if self._prompt_probe else tuner.deadline(shape)
        t0 = time.perf_counter()
        if limit is not None:
            self._watchdog.arm(t0 + limit * per)
        rc = ctx.decode()
        t1 = time.perf_counter()
        cut = limit is not None and self._watchdog.disarm()
        self.decode_calls += 1
        if rc == 2 and cut and not self._closing and not self._all_cancelled():
            self._step_cut(tuner, shape, n_threads, t1 - t0)
            return True
        if rc != 0:
            self._decode_failed(rc)
            return True
        if self._prompt_probe:
            tuner.note_single((t1 - t0) / per, shape)
        elif timed:
            tuner.record((t1 - t0) / per, shape)
        self._after_decode()
        times = self.times
        times.steps += 1
        times.decode += t1 - t0
        times.total += time.perf_counter() - self._t_step
        return True

    def _step_cut(self, tuner: ThreadTuner, shape: object, n_threads: int, seconds: float) -> None:
        """The watchdog cut a step that starved on `n_threads` threads: nothing of it is
        kept (the KV it may have written is trimmed to what is known), cancelled
        sequences end, the others are decoded again in the next step on the count the
        tuner now gives."""
        self._drop_batch(None, None)
        retry = tuner.aborted(shape)
        log.info("a step on %d threads was cut after %.0f ms (starving: another program keeps a core busy); "
                 "going on with %d", n_threads, seconds * 1000, retry)

    # prompt chunks below this many tokens are too short to time per token
    MIN_TIMED_PROMPT = 64

    PROMPT_PROBE = 16  # tokens of the prompt tuner's first, one-thread chunk

    def _tuner_for(self, n_tokens: int) -> tuple[ThreadTuner, int, bool, object]:
        """The thread tuner for a batch of `n_tokens`, what its step time and deadline are
        per (the step's tokens, or 1), whether its time is recorded, and the step's shape.
        Steps of one token per generating sequence are timed whole (their shape is their
        size: 3 panes are not 1); batches that carry prompt chunks are timed per token,
        short ones only against their deadline (too short to compare)."""
        if not any(s.state is SlotState.PREFILLING for s in self._batch_slots):
            return self.threads.decode, 1, True, n_tokens
        return self.threads.prompt_tuner(), n_tokens, n_tokens >= self.MIN_TIMED_PROMPT, "prompt"

    def _end_stalled(self, timeout: float) -> None:
        """Cancel generations whose reader has taken nothing for `timeout` seconds: a
        client that stopped reading would otherwise hold its slot for ever."""
        now = time.perf_counter()
        for s in self._slots:
            run = s.run
            if run is None or s.state is not SlotState.GENERATING:
                continue
            if run.gen.has_room():
                run.t_full = 0.0
            elif not run.t_full:
                run.t_full = now
            elif now - run.t_full >= timeout:
                log.warning("cancelled a generation whose client read nothing for %.0f s (--stall-timeout); "
                            "its slot is free again", now - run.t_full)
                self.stalled += 1
                run.gen.cancel()
                self._finish(s, FinishReason.CANCELLED)

    def _all_cancelled(self) -> bool:
        return all(s.run is None or s.run.gen.cancelled for s in self._batch_slots)

    def notify(self) -> None:
        """From any thread, when a consumer cancelled or drained a full channel. If every
        sequence in the running decode is now cancelled, abort that decode at once rather
        than when it ends (a long prompt chunk); in any case wake the loop."""
        ctx = self._ctx
        if ctx is not None and ctx.ptr and self._batch_slots and self._all_cancelled():
            ctx.abort.set()
        self.wake()

    def _admit(self) -> None:
        if not self._pending:
            return
        with self._lock:
            waiting = list(self._pending)
        for gen in waiting:
            if gen.cancelled:
                self._remove_pending(gen)
                self._end_pending(gen, FinishReason.CANCELLED)
                continue
            free = [s for s in self._slots if s.state is SlotState.IDLE]
            if not free:
                break
            prompt = gen.prompt_tokens
            # Best prefix already in some sequence's KV.
            src, best = None, 0
            for s in self._slots:
                n = common_prefix(s.cached, prompt)
                if n > best:
                    src, best = s, n
            # Someone is prefilling a longer shared prefix right now: wait and share it.
            if any(s.state is SlotState.PREFILLING and common_prefix(s.serving.gen.prompt_tokens, prompt) > best
                   for s in self._slots):
                continue
            own = max(free, key=lambda s: self._slot_preference(s, prompt, best))
            self._remove_pending(gen)
            restored = self._restore(own, gen, best)
            if restored:
                src, best = own, restored
            self._start(own, gen, src, best)

    # a saved state is worth reading back only when it spares this many tokens of prompt
    MIN_RESTORE = 32

    def _restore(self, slot: Slot, gen: Generation, best: int) -> int:
        """If a saved conversation holds a longer prefix of `gen`'s prompt than any slot
        does, load its KV into `slot` (emptied) and return how many tokens it holds of the
        prompt; else 0. A state that is bad in any way is removed and noted: the prompt is
        then processed from its text as if nothing had been saved."""
        store = self.sessions
        if store is None:
            return 0
        prompt = gen.prompt_tokens
        entry, n = store.best_prefix(prompt, self.identity)
        n = min(n, len(prompt) - 1)  # at least one token of prompt is decoded, for its logits
        if entry is None or n < self.MIN_RESTORE or n <= best:
            return 0
        try:
            payload = store.load(entry, self.identity)
        except SessionError as e:
            gen.notice = f"the saved conversation was not used ({e}): processed from its text"
            return 0
        ctx = self._context
        if not ctx.set_seq_state(slot.seq, payload) or self._mem.n_tokens(slot.seq) != entry.n_tokens:
            self._mem.remove(slot.seq)
            slot.cached = []
            store.forget(entry.key, f"llama.cpp refused the saved state of {entry.key!r}; removed")
            gen.notice = "the saved conversation could not be restored: processed from its text"
            return 0
        slot.cached = list(entry.tokens)
        gen.restored_tokens = n
        self.restored_tokens += n
        return n

    def _save(self, slot: Slot, request: Request) -> None:
        """The sequence's KV state to the session store, under the request's `session`
        (read here, on the thread that owns the context; written by the store's thread)."""
        store = self.sessions
        if store is None or not request.session or not slot.cached:
            return
        held = store.get(request.session)
        if held is not None and held.identity == self.identity and held.tokens == slot.cached:
            return  # nothing new since it was saved or restored (a turn cancelled at once): no 100 MB rewrite
        try:
            t0 = time.perf_counter()
            payload = self._context.seq_state(slot.seq)
            store.save(request.session, self.identity, slot.cached, payload, request.session_meta)
            self.save_time += time.perf_counter() - t0
        except Exception as e:  # a save must never end the scheduler
            log.warning("could not save conversation %r: %s", request.session, e)

    @staticmethod
    def _slot_preference(slot: Slot, prompt: list[int], best: int) -> tuple[bool, bool, float]:
        """Which free slot a request takes: the one that already holds the longest prefix
        of its prompt (nothing to copy: a chat follow-up); else an empty slot, lowest
        sequence first (the prefix is copied from where it is, and no cache is lost); else
        the least recently used. Lowest first because llama.cpp attends over the range of
        sequence streams a batch touches: three compare panes in sequences 0, 1 and 5
        computed attention for six (measured: 24 against 19 ms per decode step in 0, 1, 2,
        and the panes of every run after the first were spread that way)."""
        holds_best = best > 0 and common_prefix(slot.cached, prompt) >= best
        if slot.cached:
            return holds_best, False, -slot.last_used
        return holds_best, True, -slot.seq

    def _remove_pending(self, gen: Generation) -> None:
        with self._lock:
            try:
                self._pending.remove(gen)
            except ValueError:
                pass

    def _start(self, slot: Slot, gen: Generation, src: Slot | None, prefix: int,
               shared_logits: int = -1) -> Run:
        """Put `gen` into `slot`, reusing `prefix` tokens of KV from `src` (or itself)."""
        prompt = gen.prompt_tokens
        keep = min(prefix, len(prompt) - (0 if shared_logits >= 0 else 1))
        own = common_prefix(slot.cached, prompt)
        if src is None or src is slot or own >= keep:
            keep = min(keep, own)
            self._mem.remove(slot.seq, keep, -1)
        else:
            self._mem.copy_prefix(src.seq, slot.seq, keep)
        slot.cached = prompt[:keep]
        slot.todo = prompt[keep:]
        slot.state = SlotState.PREFILLING if slot.todo else SlotState.GENERATING
        slot.logits_idx = shared_logits
        req = gen.request
        tags = gen.reasoning
        run = Run(gen, llama.SamplerChain(self.model, req.params, gen.seed),
                  TextAssembler(req.params.stop, ReasoningSplitter(*tags) if tags else None),
                  InsightProbe(self.model, req.params, req.logprobs) if req.logprobs else None)
        for tok in [*req.prefix, *([req.force] if req.force is not None else [])]:
            run.sampler.accept(tok)  # a branch: the reply so far counts for the penalties
            if run.probe is not None:
                run.probe.accept(tok)
        if self.sampling_mode == "backend" and run.probe is None:  # insight needs the logits here
            run.sampler.attach(self._context, slot.seq)
        run.t_prompt_done = run.t_admit if shared_logits >= 0 else 0.0
        slot.run = run
        gen.cached_tokens = gen.prompt_done = keep
        return run

    def _build_batch(self) -> bool:
        batch = self._batch
        batch.clear()
        self._batch_slots = []
        for s in self._slots:  # generating sequences first: one token each (n_batch >= n_parallel)
            run = s.run
            if s.state is SlotState.GENERATING and run is not None and run.next_token >= 0 and run.gen.has_room():
                s.logits_idx = batch.add(run.next_token, len(s.cached), s.seq, True)
                self._batch_slots.append(s)
        # the prompt tuner's first look: a short chunk on one thread gives the per-token
        # figure every later prompt step's deadline is held to (see `_tuner_for`)
        probe_left = self.PROMPT_PROBE if self.threads.prompt.needs_reference("prompt") else None
        self._prompt_probe = False
        for s in self._slots:  # then prompt chunks with the room that is left
            if s.state is not SlotState.PREFILLING:
                continue
            room = batch.room
            if probe_left is not None:
                room = min(room, probe_left)
                probe_left -= max(0, min(room, len(s.todo)))
                self._prompt_probe = True
            if room <= 0:
                break
            chunk = s.todo[:room]
            pos = len(s.cached)
            last = len(chunk) == len(s.todo)
            for i, tok in enumerate(chunk):
                idx = batch.add(tok, pos + i, s.seq, last and i == len(chunk) - 1)
            s.logits_idx = idx if last else -1
            s.chunk = len(chunk)
            self._batch_slots.append(s)
        return batch.n > 0

    def _after_decode(self) -> None:
        now = time.perf_counter()
        sampling: list[Slot] = []
        for s in self._batch_slots:
            if s.state is SlotState.PREFILLING:
                s.cached.extend(s.todo[:s.chunk])
                del s.todo[:s.chunk]
                self.prompt_tokens_processed += s.chunk
                s.serving.gen.prompt_done = len(s.cached)
                if s.todo:
                    continue
                s.state = SlotState.GENERATING
                s.serving.t_prompt_done = now
                sampling.append(s)
                sampling.extend(self._attach_followers(s))
            else:
                s.cached.append(s.serving.next_token)
                sampling.append(s)
        for s in sampling:
            self._sample(s)

    def _attach_followers(self, leader: Slot) -> list[Slot]:
        """Requests waiting on this exact prompt start now, on the logits just computed.
        With backend sampling the graph already sampled those logits with the leader's
        chain, so a follower takes the prompt's KV but its last token, and decodes that
        one itself in the next batch."""
        started: list[Slot] = []
        if not self._pending:
            return started
        lead = leader.serving
        prompt = lead.gen.prompt_tokens
        with self._lock:
            same = [g for g in self._pending if g.prompt_tokens == prompt and not g.cancelled]
        for gen in same:
            free = [s for s in self._slots if s.state is SlotState.IDLE]
            if not free:
                break
            self._remove_pending(gen)
            slot = free[0]
            if self.sampling_mode == "backend":
                self._start(slot, gen, leader, len(prompt))
                continue
            run = self._start(slot, gen, leader, len(prompt), shared_logits=leader.logits_idx)
            run.t_admit, run.t_prompt_done = lead.t_admit, lead.t_prompt_done
            started.append(slot)
        return started

    @property
    def _context(self) -> llama.LlamaContext:
        ctx = self._ctx
        assert ctx is not None, "the context lives on the scheduler thread once started"
        return ctx

    def _sample(self, s: Slot) -> None:
        run = s.serving
        gen = run.gen
        t0 = time.perf_counter()
        if gen.request.force is not None and run.n_gen == 0:
            # a branch: the forced token ended the prompt (decoded there, so not again); it is
            # the reply's first token, and the logits just computed after it give the second
            if not self._emit(s, gen.request.force, t0, forced=True):
                return
        if run.forced:  # the engine's own words (a thinking budget closing the block)
            tok = run.forced.pop(0)
            run.sampler.accept(tok)
            if run.probe is not None:
                run.probe.accept(tok)
            self._emit(s, tok, t0, forced=True)
            return
        tok = run.sampler.sample(self._context, s.logits_idx)
        insight = None
        if run.probe is not None:
            insight = run.probe.measure(self._context, s.logits_idx, tok)
            run.probe.accept(tok)
        now = time.perf_counter()
        self._emit(s, tok, now, insight=insight)
        times = self.times
        times.sampled += 1
        times.sample += now - t0
        times.text += time.perf_counter() - now

    def _emit(self, s: Slot, tok: int, now: float, insight: TokenInsight | None = None,
              forced: bool = False) -> bool:
        """One token of the reply: text (by channel), event, and the end if it ends here.
        True if the sequence goes on."""
        run = s.serving
        gen = run.gen
        run.t_last = now
        model = self.model
        if model.is_eog(tok) and not gen.request.ignore_eos and not forced:
            self._finish(s, FinishReason.EOS)
            return False
        splitter = run.text.reasoning
        was_thinking = splitter is not None and splitter.thinking
        split = run.text.push(model.piece(tok))
        index = run.n_gen
        run.n_gen += 1
        channel = "answer"
        if splitter is not None:
            # a token held at the start counts as thinking if it begins the opening tag;
            # leading whitespace alone (a reply after a closed block starts with "\n") is answer
            thinking = was_thinking or splitter.thinking or (splitter.holding_open_tag and not split.answer)
            channel = "thinking" if thinking else "answer"
            self._count_channels(run, splitter, thinking, split.moved, now)
        if run.t_first is None and (split.answer or split.thinking):
            run.t_first = now
        if run.t_first_answer is None and split.answer:
            run.t_first_answer = now
        gen.push(TokenEvent(split.answer, tok, index, insight=insight, thinking=split.thinking, moved=split.moved,
                            channel=channel))
        if run.text.stopped:
            self._finish(s, FinishReason.STOP)
        elif run.n_gen >= gen.request.max_tokens or len(s.cached) + 1 >= self.n_ctx:
            self._finish(s, FinishReason.LENGTH)
        else:
            run.next_token = tok
            return True
        return False

    def _count_channels(self, run: Run, splitter: ReasoningSplitter, thinking: bool, moved: str,
                        now: float) -> None:
        """Thinking and answer tokens, when the thinking started and ended, and the budget:
        past it, the closing tag is queued as the next tokens (the model answers after it)."""
        if moved:  # a stray closing tag: the "answer" so far was thinking
            run.thinking_tokens += run.answer_tokens
            run.answer_tokens = 0
            run.t_first_answer = None
        if thinking or moved:
            run.thinking_tokens += 1
            run.t_think_start = run.t_think_start or (run.t_admit if moved else now)
            if not splitter.thinking and not run.t_think_end:
                run.t_think_end = now
        else:
            run.answer_tokens += 1
        request = run.gen.request
        budget = None if request.params.grammar else request.thinking_budget  # a grammar would refuse the tag
        if budget is not None and splitter.thinking and run.thinking_tokens >= budget and not run.forced:
            run.forced = self.model.tokenize(f"\n{splitter.tags.close}\n\n", add_special=False, parse_special=True)

    def _stats(self, gen: Generation, reason: FinishReason, error: str | None = None) -> Stats:
        """The engine's part of a request's stats (the run adds its own, see `Run.fill_stats`)."""
        choice = self.threads.choice()
        total = time.perf_counter() - gen.t_submit
        return Stats(finish_reason=reason, seed=gen.seed, n_ctx=self.n_ctx, error=error,
                     prompt_tokens=len(gen.prompt_tokens), total_time=total, queue_time=total,
                     n_threads=choice.decode, n_threads_prompt=choice.prompt, cores=choice.cores,
                     threads_auto=choice.auto, restored_tokens=gen.restored_tokens, notice=gen.notice)

    def _end_pending(self, gen: Generation, reason: FinishReason) -> None:
        """Final event for a request that never got a slot."""
        gen.push(TokenEvent("", -1, 0, reason, self._stats(gen, reason)))

    def _finish(self, s: Slot, reason: FinishReason, error: str | None = None) -> None:
        """End the request in `s`; the sequence's KV stays cached for prefix reuse."""
        run = s.serving
        gen = run.gen
        tail = run.text.flush()
        stats = run.fill_stats(self._stats(gen, reason, error))
        if (tail.answer or tail.thinking) and run.t_first is None:
            stats.ttft = time.perf_counter() - gen.t_submit
        if s.todo or len(s.cached) >= self.n_ctx:
            self._mem.remove(s.seq, len(s.cached), -1)
        self._save(s, gen.request)
        run.free()
        s.state = SlotState.IDLE
        s.run = None
        s.todo = []
        s.last_used = time.perf_counter()
        # the slot is free before the consumer can see the end (so `active` agrees with it)
        gen.push(TokenEvent(tail.answer, -1, run.n_gen, reason, stats, thinking=tail.thinking))

    def _decode_failed(self, rc: int) -> None:
        if rc == 2:
            reason, error = FinishReason.CANCELLED, None
        elif rc == 1:
            reason, error = FinishReason.ERROR, "no room left in the KV cache"
        else:
            reason, error = FinishReason.ERROR, f"llama_decode failed ({rc})"
        self._drop_batch(reason, error)

    def _drop_batch(self, reason: FinishReason | None, error: str | None) -> None:
        """Whatever the last batch may have written is not trusted: trim each of its
        sequences to the known prefix. Cancelled ones end; the others end with `reason`,
        or (None) stay to be decoded again."""
        for s in self._batch_slots:
            self._mem.remove(s.seq, len(s.cached), -1)
            if s.run is None:
                continue
            if s.run.gen.cancelled:
                self._finish(s, FinishReason.CANCELLED)
            elif reason is not None:
                self._finish(s, reason, None if reason is FinishReason.CANCELLED else error)

    def _fail_all(self, error: str) -> None:
        for s in self._slots:
            if s.run is not None:
                gen = s.run.gen
                try:
                    self._finish(s, FinishReason.ERROR, error)
                except Exception:
                    gen.push(TokenEvent("", -1, 0, FinishReason.ERROR,
                                        Stats(finish_reason=FinishReason.ERROR, error=error)))
                    s.run, s.state = None, SlotState.IDLE

    def _shutdown(self) -> None:
        for s in self._slots:
            if s.run is not None:
                self._finish(s, FinishReason.CANCELLED)
        with self._lock:
            self._closing = True
            pending, self._pending = list(self._pending), deque()
        for gen in pending:
            self._end_pending(gen, FinishReason.CANCELLED)
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.close()
        if self._ctx is not None:
            self._ctx.close()
