"""`mullama-tui run` and friends as a user runs them: a real subprocess on the real model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from helpers import CLI, run_cli

def test_run_streams_text_and_stats_to_stderr():
    r = run_cli("run", "--seed", "3", "-n", "24", "--raw", "The capital of France is")
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip()) > 0
    assert "--- Stats ---" in r.stderr and "generation rate:" in r.stderr
    assert "Stats" not in r.stdout


def test_run_json_is_one_event_per_line():
    r = run_cli("run", "--json", "--seed", "3", "-n", "12", "--raw", "Hello")
    assert r.returncode == 0, r.stderr
    events = [json.loads(line) for line in r.stdout.splitlines()]
    assert events[-1]["done"] and events[-1]["finish_reason"] in ("eos", "length")
    assert events[-1]["stats"]["generated_tokens"] == len(events) - 1
    assert [e["index"] for e in events[:-1]] == list(range(len(events) - 1))


def test_run_reads_prompt_from_stdin_and_honours_stop():
    r = run_cli("run", "--raw", "-t", "0", "-n", "40", "--no-stats", "--stop", ",", "-",
                input="One, two, three, four")
    assert r.returncode == 0, r.stderr
    assert "," not in r.stdout and r.stderr == ""


def test_ctrl_c_mid_stream_keeps_partial_output_and_exits_130():
    p = subprocess.Popen(CLI + ["run", "-n", "2000", "--seed", "5",
                                "Write a very long story about a lighthouse keeper."],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    got = ""
    deadline = time.monotonic() + 60
    while len(got) < 40:  # wait until text is really streaming
        assert time.monotonic() < deadline, "no output"
        chunk = os.read(p.stdout.fileno(), 64)
        assert chunk, f"the run ended before Ctrl+C: {got!r}"
        got += chunk.decode(errors="replace")
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=15)
    assert p.returncode == 130
    assert "[Generation cancelled]" in err
    assert "finish reason:   cancelled" in err
    assert len(got + out) > 40


@pytest.mark.parametrize("args, message", [
    (["run", "/no/such/model.gguf", "hi"], "model file not found"),
    (["run", "--temperature", "-1", "hi"], "temperature"),
    (["run", "--top-p", "0", "hi"], "top_p"),
    (["run", "-n", "0", "hi"], "max_tokens"),
    (["run", "--ctx", "64", "--raw", "word " * 200], "context holds 64"),
])
def test_bad_input_is_one_readable_line(args, message):
    r = run_cli(*args)
    assert r.returncode == 1
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_not_a_gguf_file(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"nope")
    r = run_cli("run", str(bad), "hi")
    assert r.returncode == 1 and "not a GGUF file" in r.stderr and "Traceback" not in r.stderr


def test_bench_runs_all_three_contenders_side_by_side():
    r = run_cli("bench", "--reps", "1", "-n", "12", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    names = [s["name"] for s in report["series"]]
    assert names[0] == "mullama-tui engine" and "llama-cpp-python" in names[1] and "plain" in names[2]
    assert "default threads" in names[3] and report["ratio_tg_default_threads"] > 0
    assert all(s["tg_tps"]["median"] > 0 and s["tokens"][0] >= 11 for s in report["series"])
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
    from mullama_tui.bench import bench_ui, format_ui_report

    r = bench_ui(model_path, n_tokens=60, long_tokens=600, esc_trials=2, reps=1, mode="raw")
    assert r["headless_tps"] > 0 and r["tui_tps"] > 0 and r["ratio_e2e"] > 0
    assert r["tui_growth"]["first_500_tps"] > 0 and r["tui_growth"]["last_500_tps"] > 0
    cost = r["ui_cpu_ms_per_update"]
    assert cost["first_500"] > 0 and cost["last_500"] > 0
    assert r["esc_ms"]["trials"] == 2 and r["esc_ms"]["p95"] > 0
    assert "UI-thread CPU per screen update" in format_ui_report(r)


@pytest.mark.parametrize("argv, backend", [
    ([], "local"),  # the README's first command: plain `mullama-tui`
    (["tui"], "local"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"], "openai"),
])
def test_tui_entry_points_build_the_app_with_a_real_backend_choice(home, monkeypatch, argv, backend):
    """The app is built exactly as `mullama-tui ...` builds it; only `run()` is recorded."""
    from typer.testing import CliRunner

    from mullama_tui.cli import app as cli_app
    from mullama_tui.engine.backends import BackendChoice
    from mullama_tui.tui.app import MullamaApp

    built = []
    monkeypatch.setattr(MullamaApp, "run", lambda self: built.append(self))
    result = CliRunner().invoke(cli_app, argv)
    assert result.exit_code == 0, result.output
    choice = built[0]._backend
    assert isinstance(choice, BackendChoice) and choice.backend == backend
    assert all(isinstance(v, (str, float)) for v in vars(choice).values())
