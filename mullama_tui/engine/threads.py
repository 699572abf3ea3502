"""How many CPU threads llama.cpp decodes on, chosen while it runs (`threads = "auto"`).

Why: llama.cpp's OpenMP team waits at every barrier of every graph for its slowest
thread. When another program takes one of the cores, the thread the OS put aside holds
the whole team up: on a 2-core machine with one busy process beside it, 2 threads
decode at a third of the speed of 1 (see `shared/design/load.md`), and the TUI's own
UI thread is such a process. On an idle machine all cores win. No fixed count is right
everywhere, so the scheduler measures each decode step and this controller picks the
count for the next one (`llama_set_n_threads` takes effect at the next decode).

The controller is pure (no clock, no llama.cpp): it is fed step durations and says
which count to use next, so it is tested with scripted times. Its policy:
- *exploit* the current best count, remembering its recent step times;
- *explore* now and then: try each neighbour (a small set around the best, so a
  64-core machine tries 4 counts, not 64) for a short window, then keep the fastest by
  a margin (ties keep the count it has: no flip-flopping between equals);
- explore *at once* when steps get much slower or much faster than the recent ones
  (load arrived or left), and back off (double the interval) while exploring finds
  nothing better, so an idle machine pays almost nothing for the watching.

Steps are compared only with steps of the same shape (`kind`: one token per sequence,
or prompt chunks; and the batch's token count), because a 3-sequence step is not a
1-sequence step. Prompt steps are compared per token.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - macOS, Windows
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ThreadChoice:
    """What the engine decodes on right now, for the gauge, `run`'s stats and `/health`."""

    decode: int  # threads for steps of one token per sequence
    prompt: int  # threads for prompt processing
    cores: int
    auto: bool

    @property
    def label(self) -> str:
        """'threads 1 of 2, auto' (or 'threads 2 of 2' when fixed); the prompt count
        is added when it differs."""
        s = f"threads {self.decode} of {self.cores}"
        if self.prompt != self.decode:
            s += f" (prompt {self.prompt})"
        return s + (", auto" if self.auto else "")

    @property
    def short(self) -> str:
        """'threads 1/2 auto': the gauge's form (its details line is full at 120 columns)."""
        return f"threads {self.decode}/{self.cores}" + (" auto" if self.auto else "")

    def to_dict(self) -> dict[str, object]:
        return {"decode": self.decode, "prompt": self.prompt, "cores": self.cores,
                "mode": "auto" if self.auto else "fixed"}


class ThreadTuner:
    """Picks a thread count for one kind of step from the step times it is fed.

    `fixed` pins the count (the user's `--threads N`): `current` is always it and
    nothing is learned. Otherwise it starts at `start` (all cores by default).

    Parameters (in steps): `window` measurements per count while exploring, `interval`
    exploit steps between explorations (doubling up to `max_interval` while the best
    stays the same), `margin` how much faster a neighbour must be to take over, `jump`
    the ratio of recent to usual step times that counts as the load changing.

    Starvation: with a busy program beside it, a team of N > 1 threads can take a
    hundred times longer per step than one thread (each barrier waits for the thread the
    OS put aside: 3.5 s instead of 25 ms measured here). Waiting for such a step to end
    before learning from it would stall the user for seconds, so `deadline()` gives every
    step on more than one thread a time limit, and the scheduler cuts a step that passes
    it (`aborted()`): a neighbour being explored is dropped, and a best that starves is
    given up at once for fewer threads. The limits: `starve` times what one thread takes
    (more threads that are slower than one are starving), `stall` times the best's usual
    step, and for a neighbour `give_up` times the best's figure of this exploration.
    With `probe_first`, one-thread steps are measured first for every shape, to know
    that figure (a few steps at one thread when a shape is new: cheap for one-token
    steps; prompt chunks, few and long, learn it while exploring instead).
    """

    def __init__(self, cores: int, fixed: int | None = None, start: int | None = None, *,
                 window: int = 4, interval: int = 48, max_interval: int = 768, margin: float = 0.04,
                 jump: float = 1.6, give_up: float = 1.25, starve: float = 2.0, stall: float = 4.0,
                 probe_first: bool = True) -> None:
        self.cores = max(1, cores)
        self.fixed = fixed
        self.window = window
        self.base_interval = interval
        self.max_interval = max_interval
        self.margin = margin
        self.jump = jump
        self.give_up = give_up
        self.starve = starve
        self.stall = stall
        self.best = min(self.cores, start or self.cores)
        self.interval = interval
        self._recent: deque[float] = deque(maxlen=12)  # the best count's step times, this shape
        self._single: dict[object, deque[float]] = {}  # one-thread step times, by shape
        self._since_explore = 0
        self._shape: object = None
        self._other = 0  # consecutive steps of another shape
        self._plan: list[int] = []  # counts still to measure in this exploration, the best first
        self._trial: dict[int, list[float]] = {}
        self._reference = 0.0  # the best's figure in this exploration (0: not yet measured)
        self.switches = 0  # how often the count changed (tests and bench read these)
        self.explorations = 0
        self.aborts = 0
        self.ceiling = self.cores  # no count above this is used or tried (see ThreadController)
        self._jump_gap = 0  # steps a jump must wait after the last look (grows while looks find nothing)
        self._jumped = False
        self.probe_first = probe_first and self.fixed is None and self.cores > 1
        if self.probe_first:  # the very first step too: one thread is the count that cannot starve
            self._plan = [1]

    @property
    def chosen(self) -> int:
        """The count it has settled on (what the gauge and the stats show), whatever it
        is trying for a step or two."""
        return self.fixed if self.fixed is not None else self.best

    @property
    def current(self) -> int:
        """The count the next step of this kind should run with."""
        if self.fixed is not None:
            return self.fixed
        return self._plan[0] if self._plan else self.best

    def neighbours(self) -> list[int]:
        """A small neighbourhood of the best: one count either side, and a quarter of it
        either side on larger machines (so load that takes half the cores is found in a
        few explorations, and 64 cores never means trying 64 counts)."""
        n, out = self.best, set[int]()
        for d in {1, max(1, n // 4)}:
            out.update((n - d, n + d))
        return sorted((c for c in out if 1 <= c <= self.ceiling and c != n), reverse=True)

    def set_ceiling(self, ceiling: int) -> None:
        """Use and try no more than `ceiling` threads from now on; when it rises, look
        above soon (the load that held it down has gone)."""
        ceiling = max(1, min(self.cores, ceiling))
        if ceiling == self.ceiling:
            return
        if ceiling > self.ceiling:  # look above at the next prompt step
            self.interval = self.base_interval
            self._since_explore = max(self._since_explore, self.interval - 1)
        self.ceiling = ceiling
        if self.best > ceiling:
            self.best = ceiling
            self._recent.clear()
        self._plan = [n for n in self._plan if n <= ceiling]

    def deadline(self, shape: object = None) -> float | None:
        """How long the next step (at `current`) may take before it is cut, in the unit
        `record` takes; None: no limit (one thread, a fixed count, or nothing known yet)."""
        n = self.current
        if self.fixed is not None or n <= 1:
            return None
        limits = []
        single = self._single.get(shape)
        if single:
            limits.append(self.starve * statistics.median(single))
        if shape != self._shape:  # a passing step of another shape: only its own figure counts
            return limits[0] if limits else None
        if self._plan and n != self.best and self._reference:
            limits.append(self.give_up * self._reference)
        elif self._recent:
            limits.append(self.stall * statistics.median(self._recent))
        return min(limits) if limits else None

    def needs_reference(self, shape: object) -> bool:
        """No one-thread figure yet for this shape (while the count is not fixed)."""
        return self.fixed is None and self.cores > 1 and shape not in self._single

    def note_single(self, seconds: float, shape: object) -> None:
        """A one-thread figure measured outside the tuner's own steps (a short probe chunk)."""
        if seconds > 0:
            self._single.setdefault(shape, deque(maxlen=8)).append(seconds)

    def record(self, seconds: float, shape: object = None) -> int:
        """Count one step that ran with `current` threads and took `seconds` (per token
        for prompt steps), of the given shape. Returns the count for the next step."""
        if self.fixed is not None or seconds <= 0:
            return self.current
        if shape != self._shape:  # another batch shape: what was measured does not compare
            self._other += 1
            if self._shape is not None and self._other < 3:  # a passing step of another shape
                if self.current == 1:
                    self._single.setdefault(shape, deque(maxlen=8)).append(seconds)
                return self.current
            self._adopt(shape)
            return self.current
        self._other = 0
        if self.current == 1:
            self._single.setdefault(shape, deque(maxlen=8)).append(seconds)
        if self._plan:
            return self._explore_step(seconds)
        self._recent.append(seconds)
        self._since_explore += 1
        if self._load_changed() or self._since_explore >= self.interval:
            self._start_exploring()
        return self.current

    def aborted(self, shape: object = None) -> int:
        """The last step, at `current` threads, was cut at its deadline: that count is
        starving (or hopeless as a neighbour). Returns the count for the retry."""
        if self.fixed is not None:
            return self.current
        self.aborts += 1
        if shape != self._shape:  # a passing step of another shape starved: take this shape on
            self._adopt(shape)
            self.best = max(1, self.best - max(1, self.best // 4))
            return self.current
        n = self.current
        if self._plan and n != self.best:  # a neighbour: dropped, and the exploration goes on
            self._trial.setdefault(n, []).append(self._reference * self.give_up * 2)
            self._plan.pop(0)
            return self._switch() if self._plan else self._decide()
        # the best itself starves (load arrived): step down now, then look around there
        self.best = max(1, n - max(1, n // 4))
        self.interval = self.base_interval
        self._recent.clear()
        self._start_exploring()
        return self.current

    def _adopt(self, shape: object) -> None:
        """A new shape stays: start measuring it afresh, one thread first if its figure
        is not known (what every other count's deadline is measured against)."""
        self._shape = shape
        self._other = 0
        self._recent.clear()
        self._trial.clear()
        self._plan.clear()
        self._since_explore = 0
        if self.probe_first and shape not in self._single:
            self._reference = 0.0
            self._plan = [1, self.best] if self.best != 1 else [1]
            self._trial = {}
            self.switches += 1

    def _load_changed(self) -> bool:
        """The last few steps are much slower or faster than the ones before them, in a
        way another count could help with: slower with more than one thread (fewer may
        do), or faster below the ceiling (the load left: more may do). Steps on one
        thread beside busy programs are noisy, so a look that found nothing makes the
        next jump wait twice as long."""
        r = self._recent
        if len(r) < 8 or self._since_explore < max(2 * self.window, self._jump_gap):
            return False
        usual = statistics.median(list(r)[:-3])
        now = statistics.median(list(r)[-3:])
        slower, faster = now > usual * self.jump, now * self.jump < usual
        if (slower and self.best > 1) or (faster and self.best < self.ceiling):
            self._jumped = True
            return True
        return False

    def _start_exploring(self) -> None:
        candidates = self.neighbours()
        self._since_explore = 0
        if not candidates:
            return
        self.explorations += 1
        # the best first: its figure now is what the neighbours are held against (and
        # what cuts a hopeless one after one step); more threads first, then fewer
        self._plan = [self.best, *candidates]
        self._trial = {}
        self._reference = 0.0

    def _switch(self) -> int:
        self.switches += 1
        return self.current

    def _explore_step(self, seconds: float) -> int:
        n = self._plan[0]
        got = self._trial.setdefault(n, [])
        got.append(seconds)
        # a neighbour clearly slower than the best is dropped after one step: exploring
        # then costs one slow step, not a window of them
        hopeless = n != self.best and self._reference > 0 and statistics.median(got) > self._reference * self.give_up
        if len(got) < self.window and not hopeless:
            return n
        if n == self.best and not self._reference:
            self._reference = statistics.median(got)
        self._plan.pop(0)
        return self._switch() if self._plan else self._decide()

    def _decide(self) -> int:
        medians = {n: statistics.median(ts) for n, ts in self._trial.items() if ts}
        old = self.best
        if old not in medians:  # the best was not measured this time (a new shape's first look)
            medians[old] = float("inf")
        fastest = min(medians, key=lambda n: medians[n])
        if fastest != old and medians[fastest] < medians[old] * (1 - self.margin):
            self.best = fastest
            self.interval = self.base_interval  # something moved: look again soon
            self._jump_gap = 0
        else:
            self.interval = min(self.max_interval, self.interval * 2)
            if self._jumped:
                self._jump_gap = min(self.max_interval, max(2 * self.window, self._jump_gap) * 2)
        self._jumped = False
        self._recent.clear()
        self._recent.append(medians[self.best])
        self._trial = {}
        if self.best != old:
            self.switches += 1
        return self.best


class StepWatchdog:
    """Cuts a decode step that runs past its deadline, from a thread of its own.

    `fire` must be safe to call from this thread while the step runs (the context's
    abort flag, which llama.cpp polls between graph nodes). Armed only for steps that
    have a deadline; it sleeps until that deadline, so it wakes about once a step and
    costs nothing while the engine is idle or on one thread. A lock makes disarming and
    firing exclusive: a step that ended in time is never cut, nor is the next one.
    """

    def __init__(self, fire: Callable[[], None]) -> None:
        self._fire = fire
        self._lock = threading.Lock()
        self._deadline = 0.0  # time.perf_counter(); 0: disarmed
        self._fired = False
        self._closed = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mullama-step-watchdog", daemon=True)
        self._thread.start()

    def arm(self, deadline: float) -> None:
        with self._lock:
            self._deadline, self._fired = deadline, False
        self._wake.set()

    def disarm(self) -> bool:
        """Stop watching; True if the step was cut."""
        with self._lock:
            self._deadline = 0.0
            return self._fired

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def _run(self) -> None:
        while not self._closed:
            deadline = self._deadline
            if not deadline:
                self._wake.wait()
                self._wake.clear()
                continue
            left = deadline - time.perf_counter()
            if left > 0:
                self._wake.wait(min(left, 0.25))
                self._wake.clear()
                continue
            with self._lock:
                if self._deadline == deadline:  # still the same step, still running
                    self._deadline = 0.0
                    self._fired = True
                    self._fire()


class ThreadController:
    """The two tuners a context needs: decode steps (one token per sequence: memory-
    bound, and the ones the barriers hurt most) and prompt steps (many tokens:
    compute-bound, which may want every core), tuned apart."""

    def __init__(self, cores: int, fixed: int | None = None) -> None:
        self.cores = cores
        self.decode = ThreadTuner(cores, fixed)
        # prompt chunks are few and long: one measurement per count is enough
        self.prompt = ThreadTuner(cores, fixed, window=1, interval=8, max_interval=64, probe_first=False)

    def prompt_tuner(self) -> ThreadTuner:
        """The prompt tuner, held to no more threads than decoding uses while decoding
        has found load (its one-step probes are the cheap load sensor): measured here,
        prompt chunks starve on the same counts (25 against 80 tok/s with one busy
        process), and a prompt step tried on a starving count costs a whole chunk. On a
        quiet machine (decoding on every core) the prompt tuner explores freely."""
        d = self.decode
        if d.fixed is None:
            self.prompt.set_ceiling(d.chosen)
        return self.prompt

    @property
    def auto(self) -> bool:
        return self.decode.fixed is None

    def set_fixed(self, fixed: int | None) -> None:
        """Pin a count (or None: back to auto) from now on."""
        self.decode.fixed = self.prompt.fixed = fixed

    def choice(self) -> ThreadChoice:
        return ThreadChoice(self.decode.chosen, self.prompt.chosen, self.cores, self.auto)


def parse_threads(value: object, cores: int | None = None) -> tuple[int | None, str | None]:
    """`--threads` / config `threads`: "auto" (or 0) -> None; a whole number >= 1 -> it,
    capped at the machine's cores with a note (more threads than cores only wait on each
    other: measured 0.3 tok/s with 1000). Raises ValueError with the reason otherwise."""
    cores = cores or cpu_cores()
    if value is None or value == 0 or (isinstance(value, str) and value.strip().lower() in ("auto", "", "0")):
        return None, None
    n: int
    if isinstance(value, bool):
        raise ValueError(f"threads={value!r}: 'auto' or a whole number >= 1")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str) and value.strip().isdigit():
        n = int(value.strip())
    else:
        raise ValueError(f"threads={value!r}: 'auto' or a whole number >= 1")
    if n < 1:
        raise ValueError(f"threads={value!r}: 'auto' or a whole number >= 1")
    if n > cores:
        return cores, f"threads {n} is more than this machine's {cores} cores: using {cores}"
    return n, None
