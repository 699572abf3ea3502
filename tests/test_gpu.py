"""GPU offload in every front end. This machine has no GPU and a CPU-only llama.cpp, so
what a GPU build would answer is simulated by monkeypatching one function,
`llama.supports_gpu_offload`, where a test says so; everything else is the real engine."""

from __future__ import annotations

import json

import pytest

from mullama_tui.config import Settings
from mullama_tui.engine import llama
from mullama_tui.engine.types import InvalidParamsError, ModelLoadError, Placement

from helpers import run_cli


def test_the_default_follows_what_the_build_can_offload(monkeypatch, model_path):
    assert llama.default_gpu_layers() == 0  # this CPU-only build
    m = llama.LlamaModel(model_path)
    assert m.n_gpu_layers == 0 and m.placement.summary == "CPU"
    m.close()
    # simulated GPU build: every layer by default, as Ollama does
    monkeypatch.setattr(llama, "supports_gpu_offload", lambda: True)
    assert llama.default_gpu_layers() == -1
    m = llama.LlamaModel(model_path)
    assert m.n_gpu_layers == -1
    m.close()


def test_placement_reads_like_the_issue_asks():
    assert Placement(31, 31, "CUDA0 NVIDIA H200").summary == "CUDA0 NVIDIA H200, 31/31 layers"
    assert Placement(10, 31, "CUDA0 NVIDIA H200").summary.endswith("10/31 layers (the rest on the CPU)")
    assert Placement(0, 31, "CUDA0 NVIDIA H200").summary == "CPU"
    assert Placement(31, 31, None).summary == "CPU"


def test_a_model_that_does_not_load_with_offload_names_gpu_layers(monkeypatch, tmp_path, model_path):
    """Running out of GPU memory cannot happen here; a file llama.cpp refuses while layers
    are asked of a (simulated) GPU build takes the same path and must say what to try."""
    bad = tmp_path / "cut.gguf"
    bad.write_bytes(model_path.read_bytes()[:4_000_000])
    monkeypatch.setattr(llama, "supports_gpu_offload", lambda: True)
    with pytest.raises(ModelLoadError, match="--gpu-layers 0"):
        llama.LlamaModel(bad, n_gpu_layers=-1)


def test_bad_gpu_layers_are_a_typed_error(model_path):
    with pytest.raises(InvalidParamsError, match="gpu-layers"):
        llama.LlamaModel(model_path, n_gpu_layers=-3)


@pytest.mark.parametrize("argv", [
    ["run", "--gpu-layers", "-4", "hi"],
    ["compare", "--no-tui", "-ngl", "-4", "hi"],
    ["serve", "--gpu-layers", "-4"],
    ["bench", "--gpu-layers", "-4"],
    ["tui", "--gpu-layers", "-4"],
    ["--gpu-layers", "-4"],
])
def test_every_command_takes_gpu_layers_and_refuses_nonsense_in_one_line(argv):
    r = run_cli(*argv, timeout=60)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "--gpu-layers -4" in r.stderr and "Traceback" not in r.stderr


def test_run_with_gpu_layers_says_where_the_model_runs():
    r = run_cli("run", "-ngl", "0", "-n", "4", "--seed", "3", "Hi")
    assert r.returncode == 0, r.stderr
    assert "model:" in r.stderr and "(CPU)" in r.stderr


@pytest.mark.parametrize("argv, config, expected", [
    (["tui", "--gpu-layers", "7"], None, 7),
    (["-ngl", "0"], None, 0),
    (["--gpu-layers", "5", "tui"], None, 5),
    (["tui"], 3, 3),
    (["tui", "-ngl", "2"], 3, 2),
    (["tui"], None, None),
])
def test_the_tui_gets_gpu_layers_from_the_flag_or_the_config(home, monkeypatch, argv, config, expected):
    from typer.testing import CliRunner

    from mullama_tui.cli import app as cli_app
    from mullama_tui.tui.app import MullamaApp

    if config is not None:
        Settings(gpu_layers=config).save()
    built = []
    monkeypatch.setattr(MullamaApp, "run", lambda self: built.append(self))
    result = CliRunner().invoke(cli_app, argv)
    assert result.exit_code == 0, result.output
    assert built[0].gpu_layers == expected


def test_show_system_says_which_build_and_devices(model_path):
    r = run_cli("show", "--system", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert "AVX" in info["llama.cpp build"] or "NEON" in info["llama.cpp build"]
    assert info["GPU offload"].startswith("no") and "README" in info["GPU offload"]
    assert any(k.startswith("device (cpu)") for k in info)
    assert info["batched decoding"].startswith(("bit-identical", "drifts"))


def test_health_and_bench_say_where_the_model_runs(srv_engine, model_path):
    from fastapi.testclient import TestClient

    from mullama_tui.server.app import create_app

    health = TestClient(create_app(srv_engine, "smollm2"), base_url="http://127.0.0.1").get("/health").json()
    assert health["placement"] == "CPU" and health["sampling"] == "host"
    threads = health["threads"]  # what it decodes on, and that auto chooses it (the default)
    assert threads["mode"] == "auto" and 1 <= threads["decode"] <= threads["cores"]
    r = run_cli("bench", "--reps", "1", "-n", "4", "-ngl", "0", "--json", timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["placement"] == "CPU"
