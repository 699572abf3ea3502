"""The thread controller as a pure unit, fed scripted step times (no model, no clock):
it converges to the fastest count, re-explores when the load changes, honours a fixed
count and does not oscillate. The engine side is in test_engine.py."""

from __future__ import annotations

import random

import pytest

from mullama_tui.engine.threads import ThreadChoice, ThreadController, ThreadTuner, parse_threads


def drive(tuner: ThreadTuner, speed: dict[int, float], steps: int, noise: float = 0.05,
          rng: random.Random | None = None, shape: object = 1, cost: list[float] | None = None) -> list[int]:
    """Feed `steps` steps whose time depends on the count used (with multiplicative
    noise), cutting a step at the tuner's deadline as the scheduler does; returns the
    counts used, step by step, and adds the time each took (cut ones: their deadline)
    to `cost`."""
    rng = rng or random.Random(1)
    used = []
    for _ in range(steps):
        n = tuner.current
        used.append(n)
        t = speed[n] * (1 + rng.uniform(-noise, noise))
        limit = tuner.deadline(shape)
        if limit is not None and t > limit:
            tuner.aborted(shape)
            t = limit
        else:
            tuner.record(t, shape)
        if cost is not None:
            cost.append(t)
    return used


def tokens_per_second(speed: dict[int, float], steps: int, **kw: object) -> tuple[float, float]:
    """Auto's rate over `steps` decoded tokens (cut steps cost their time and decode
    nothing), and the best fixed count's rate."""
    t = ThreadTuner(max(speed))
    cost: list[float] = []
    done = 0
    while done < steps:
        before = t.aborts
        drive(t, speed, 1, cost=cost, **kw)  # type: ignore[arg-type]
        done += t.aborts == before
    return steps / sum(cost), 1 / min(speed.values())


IDLE = {1: 1 / 84, 2: 1 / 121}  # figures of shared/design/load.md: 2 threads win idle
LOAD1 = {1: 1 / 86, 2: 1 / 41}  # one busy process: 1 thread wins
STARVED = {1: 0.025, 2: 3.5}  # measured here on an Intel Xeon VM: 2 threads beside a busy process


def test_stays_on_all_cores_when_idle_and_pays_little_for_watching() -> None:
    t = ThreadTuner(2)
    used = drive(t, IDLE, 3000)
    assert t.best == 2
    # exploring 1 thread now and then costs under 3% of the steps (the interval backs off)
    assert used.count(1) / len(used) < 0.03
    assert t.interval > t.base_interval


def test_converges_to_the_fastest_under_load_and_holds_it() -> None:
    t = ThreadTuner(2)
    used = drive(t, LOAD1, 2000, noise=0.3)
    assert t.best == 1
    first = used.index(1)
    assert first < t.base_interval + 4 * t.window  # found within the first exploration
    assert used[first + 40:].count(1) / len(used[first + 40:]) > 0.95


def test_reexplores_at_once_when_load_arrives_and_when_it_leaves() -> None:
    t = ThreadTuner(2)
    drive(t, IDLE, 3000)
    assert t.best == 2 and t.interval >= 8 * t.base_interval  # backed off far
    used = drive(t, LOAD1, 60)
    # a jump in step time triggers exploring well before the backed-off interval
    assert t.best == 1, used
    assert used[-20:] == [1] * 20
    # load leaves: 1 thread is not faster then, so only the periodic look finds it
    used = drive(t, IDLE, 3 * t.base_interval)
    assert t.best == 2


def test_a_fixed_count_stays_fixed() -> None:
    t = ThreadTuner(8, fixed=3)
    used = drive(t, {n: 1.0 / n for n in range(1, 9)}, 500)
    assert set(used) == {3}
    assert t.switches == 0


def test_never_oscillates_between_equals() -> None:
    t = ThreadTuner(2)
    used = drive(t, {1: 0.01, 2: 0.01}, 3000, noise=0.2)
    changes = sum(1 for a, b in zip(used, used[1:]) if a != b)
    assert changes < 0.03 * len(used)
    # never a flip-flop: the count it settles on holds for the great majority of steps
    settled = max(set(used), key=used.count)
    assert used.count(settled) > 0.8 * len(used)


@pytest.mark.parametrize("speed, target", [(IDLE, 0.97), (LOAD1, 0.9), (STARVED, 0.9)],
                         ids=["idle", "load1", "starved"])
def test_auto_keeps_the_speed_of_the_best_fixed_count(speed: dict[int, float], target: float) -> None:
    """The bench --load targets, in simulation: what auto pays for measuring, exploring
    and cutting starving steps, over 1000 tokens from a cold start."""
    auto, best = tokens_per_second(speed, 1000, noise=0.1)
    assert auto >= target * best, (auto, best)


def test_a_starving_best_is_cut_within_one_step_and_left() -> None:
    t = ThreadTuner(2)
    drive(t, IDLE, 400)
    assert t.best == 2
    cost: list[float] = []
    used = drive(t, STARVED, 10, cost=cost)
    assert t.aborts >= 1 and t.best == 1
    assert used[1:].count(2) <= 1  # at most one more probe of 2 threads, cut at its deadline
    assert max(cost) < 0.05  # no step waited the 3.5 s a starving team takes


def test_many_cores_explore_a_small_neighbourhood_and_still_find_the_best() -> None:
    # 64 cores, half of them taken: the speed peaks at 32 threads
    speed = {n: 0.001 * (1 + abs(n - 32) / 16) for n in range(1, 65)}
    t = ThreadTuner(64)
    assert len(t.neighbours()) <= 4
    drive(t, speed, 4000, noise=0.02)
    assert abs(t.best - 32) <= 2
    assert t.explorations < 60


def test_a_passing_step_of_another_shape_is_not_compared() -> None:
    t = ThreadTuner(2)
    drive(t, IDLE, 200)
    before = t.best
    # two odd steps (a short prompt chunk between decode steps) do not reset anything
    t.record(1.0, shape="prompt")
    t.record(1.0, shape="prompt")
    assert t.best == before and t._shape == 1


def test_controller_reports_and_pins() -> None:
    c = ThreadController(4)
    assert c.choice() == ThreadChoice(4, 4, 4, True)
    assert c.choice().label == "threads 4 of 4, auto"
    c.set_fixed(2)
    assert c.choice() == ThreadChoice(2, 2, 4, False)
    assert c.choice().label == "threads 2 of 4"


@pytest.mark.parametrize("value,expected", [
    ("auto", (None, None)), (0, (None, None)), (None, (None, None)), ("2", (2, None)), (1, (1, None)),
])
def test_parse_threads(value: object, expected: tuple[int | None, str | None]) -> None:
    assert parse_threads(value, cores=2) == expected


def test_parse_threads_caps_at_the_cores_and_refuses_nonsense() -> None:
    n, note = parse_threads(1000, cores=2)
    assert n == 2 and note is not None and "1000" in note and "2 cores" in note
    for bad in ("lots", -1, True, 2.5, "1.5"):
        with pytest.raises(ValueError, match="auto"):
            parse_threads(bad, cores=2)
