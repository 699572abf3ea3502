"""The benchmarks, at small sizes: every figure comes from real runs (never a timed test:
these check that the figures exist and are consistent, not how large they are)."""

from __future__ import annotations

import json
import os

from helpers import run_cli


def test_bench_runs_all_three_contenders_side_by_side():
    r = run_cli("bench", "--reps", "1", "-n", "12", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    names = [s["name"] for s in report["series"]]
    assert names[0] == "mullama-tui engine" and "llama-cpp-python" in names[1] and "plain" in names[2]
    assert "default threads" in names[3] and report["ratio_tg_default_threads"] > 0
    # a fixed number of tokens on every side: end-of-text cannot end a run early
    assert [s["tokens"] for s in report["series"]] == [[12]] * 4, report["series"]
    assert all(s["tg_tps"]["median"] > 0 for s in report["series"])
    assert report["ratio_tg"] > 0 and report["engine_of_ceiling"] > 0


def test_bench_batched_reports_both_pane_counts_and_one_prompt_pass():
    r = run_cli("bench", "--batched", "-n", "8", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)["rows"]
    assert [row["panes"] for row in rows] == [3, 4]
    assert all(row["prompt_tokens_processed"] == row["prompt_tokens"] for row in rows)
    assert all(row["ratio"] > 0 for row in rows)


def test_bench_ui_measures_the_real_tui_end_to_end(home, model_path):
    """`bench --ui` at a small size: every figure comes from real runs of the app."""
    from mullama_tui.bench.ui import bench_ui, format_ui_report

    r = bench_ui(model_path, n_tokens=40, long_tokens=520, esc_trials=2, reps=1, mode="raw")
    assert r["headless_tps"] > 0 and r["tui_tps"] > 0 and r["ratio_e2e"] > 0
    (pair,) = r["paired_ratios"]  # one rep: the TUI run over the engine run before it (runs print rounded)
    assert pair == r["ratio_e2e"] and abs(pair - r["tui_runs"][0] / r["headless_runs"][0]) < 0.01
    assert r["tui_growth"]["first_500_tps"] > 0 and r["tui_growth"]["last_500_tps"] > 0
    cost = r["ui_cpu_ms_per_update"]
    assert cost["first_500"] > 0 and cost["last_500"] > 0
    assert r["esc_ms"]["trials"] == 2 and r["esc_ms"]["p95"] > 0
    assert "UI-thread CPU per screen update" in format_ui_report(r)


def test_bench_ui_compare_measures_the_real_compare_screen(home, model_path):
    from mullama_tui.bench.ui import bench_ui_compare, format_compare_report

    r = bench_ui_compare(model_path, n_tokens=40, esc_trials=2, reps=1, mode="raw")
    assert r["panes"] == 3 and r["headless_tps"] > 0 and r["tui_tps"] > 0 and r["ratio"] > 0
    assert 0 < r["ui_cpu_share"] < 1.5
    assert r["esc_ms"]["trials"] == 2 and r["esc_ms"]["p95"] > 0
    assert "all panes stopped" in format_compare_report(r)


def test_a_benchmark_never_writes_the_users_files(tmp_path, model_path, monkeypatch):
    """The README documents MULLAMA_TUI_HOME; `bench --ui` used to save its settings there."""
    from mullama_tui.bench.ui import bench_ui

    home = tmp_path / "user-home"
    config = home / "config" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text('theme = "mullama-light"\nmax_tokens = 77\n')
    monkeypatch.setenv("MULLAMA_TUI_HOME", str(home))
    before = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    bench_ui(model_path, n_tokens=20, long_tokens=0, esc_trials=1, reps=1, mode="raw")
    after = {p: p.read_bytes() for p in home.rglob("*") if p.is_file()}
    assert after == before and os.environ["MULLAMA_TUI_HOME"] == str(home)


def test_bench_overhead_on_a_made_up_128k_vocabulary(model_path):
    """`bench --overhead` with its random-weight 128k-vocabulary model (made in a temp
    dir), both sampling modes: the split adds up, and backend sampling leaves the host
    almost nothing to do per sequence."""
    from mullama_tui.bench.overhead import bench_overhead, format_overhead_report

    r = bench_overhead(model_path, n_tokens=12)
    big = [m for m in r["models"] if m["n_vocab"] == 128_256]
    assert [m["sampling"] for m in big] == ["host", "backend"]
    for m in r["models"]:
        assert [row["sequences"] for row in m["rows"]] == [1, 4, 8]
        for row in m["rows"]:
            assert row["tokens"] == 12 * row["sequences"]
            parts = row["sample_ms_per_seq_step"] + row["text_ms_per_seq_step"] + row["bookkeeping_ms_per_seq_step"]
            assert abs(parts - row["host_ms_per_seq_step"]) < 0.01
            assert row["total_ms_per_step"] >= row["decode_ms_per_step"] > 0
    host, backend = big
    assert backend["rows"][-1]["sample_ms_per_seq_step"] < host["rows"][-1]["sample_ms_per_seq_step"]
    assert "128k vocabulary" in format_overhead_report(r)


def test_a_short_soak_of_serve_has_no_unexpected_errors(model_path):
    from mullama_tui.bench.soak import bench_soak, format_soak_report

    r = bench_soak(model_path, seconds=4, clients=4, min_requests=12)  # on a loaded machine: longer
    assert r["unexpected_errors"] == 0, r["errors"]
    assert r["requests_completed"] >= 10
    assert r["disconnects_survived"] >= 1  # the soak drops clients mid-stream on purpose: the server lived on
    assert r["health_after"] == {"active": 0, "queued": 0}
    assert r["rss_mb"]["start"] > 0 and r["rss_mb"]["growth"] < 50
    fs = r["fixed_seed_streams"]
    assert fs["equal"] + fs["differ"] == fs["checked"]
    if not fs["batch_drift"]:
        assert fs["differ"] == 0
    assert "unexpected errors: 0" in format_soak_report(r)
    assert r["abandoned"] >= 0 and r["stalled_readers"] >= 0  # their slots are free: health_after above


def test_busy_processes_are_bounded_and_always_stopped():
    import subprocess

    from mullama_tui.bench.load import busy_processes

    with busy_processes(2, limit_s=30) as pids:
        assert len(pids) == 2
    # each ran in its own process group: killing it took the spinning shell too
    left = subprocess.run(["pgrep", "-f", "while :; do :; done"], capture_output=True, text=True).stdout.split()
    assert not left, left


def test_bench_insight_measures_both_sides(home, model_path):
    from mullama_tui.bench.insight import bench_insight, format_insight_report

    r = bench_insight(model_path, n_tokens=24, ui_tokens=40, reps=1)
    assert r["engine_ratio"] > 0 and r["tui_ratio"] > 0
    assert len(r["engine_on"]) == len(r["tui_on"]) == 1
    assert "token view on vs off" in format_insight_report(r)


def test_the_startup_benchmark_times_each_command_against_its_floor(model_path):
    from mullama_tui.bench.startup import bench_startup, format_startup_report

    r = bench_startup(model_path, rounds=1)
    rows = r["rows"]
    assert set(rows) >= {"--help", "models", "show", "tui first frame", "floor: textual", "floor: typer"}
    assert all(row["median_s"] > rows["bare python"]["median_s"] for name, row in rows.items() if name != "bare python")
    text = format_startup_report(r)
    assert "tui first frame" in text and "over the floor" in text


def test_the_resume_benchmark_restores_faster_than_it_reprocesses(model_path):
    from mullama_tui.bench.resume import bench_resume, format_resume_report

    r = bench_resume(model_path, n_tokens=400, reps=1, n_ctx=2048)
    assert r["prompt_processed"]["restored"] < 40 < r["prompt_processed"]["re-processed"]
    assert r["median_restored_s"] < r["median_reprocessed_s"] and r["mb_per_1000_tokens"] > 0
    assert 0 < r["edit"]["decoded"] == r["edit"]["expected"] < 15  # only the edited tail
    assert "restored is" in format_resume_report(r)


def test_the_arena_benchmark_runs_two_models_side_by_side_headless_and_in_the_tui(home, model_path):
    from mullama_tui.bench.arena import bench_arena, format_arena_report

    r = bench_arena(model_path, n_tokens=8, reps=1, loads=(0,))
    (idle,) = r["loads"]
    assert len(idle["seconds"]["together"]) == 1 and idle["ratio"] > 0
    assert idle["tui"]["tokens"] == 16 and 0.0 < idle["tui"]["ui_share"] < 1.0  # both panes, 8 tokens each
    assert r["agreement"]["of_decode"] > 0 and "agrees with" in r["agreement"]["summary"]
    text = format_arena_report(r)
    assert "the compare screen, a pane on each model" in text and "UI thread" in text
