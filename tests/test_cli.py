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


@pytest.mark.parametrize("argv, backend", [
    ([], "local"),  # the README's first command: plain `mullama-tui`
    (["tui"], "local"),
    (["--backend", "openai", "--base-url", "http://127.0.0.1:9/v1"], "openai"),
])
def test_tui_entry_points_build_the_app_with_a_real_backend_choice(home, monkeypatch, argv, backend):
    """The app is built exactly as `mullama-tui ...` builds it; only `run()` is recorded."""
    from typer.testing import CliRunner

    from mullama_tui.backends import BackendChoice
    from mullama_tui.cli import app as cli_app
    from mullama_tui.tui.app import MullamaApp

    built = []
    monkeypatch.setattr(MullamaApp, "run", lambda self: built.append(self))
    result = CliRunner().invoke(cli_app, argv)
    assert result.exit_code == 0, result.output
    choice = built[0]._backend
    assert isinstance(choice, BackendChoice) and choice.backend == backend
    assert all(isinstance(v, (str, float)) for v in vars(choice).values())


def test_mullama_tui_model_opens_the_tui_on_that_model(home, model_path, tmp_path):
    """`mullama-tui MODEL` as a user types it, in a real pseudo-terminal: the TUI opens on
    that model (its name in the header: the file's, with size and quantization), and
    Ctrl+Q quits with exit code 0."""
    import os
    import pty
    import select
    import subprocess
    import time

    copy = tmp_path / "my-model.gguf"
    os.link(model_path, copy)
    master, slave = pty.openpty()
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="100", LINES="30")
    proc = subprocess.Popen([*CLI, str(copy)], stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while b"my-model 135M Q4_1" not in seen:  # the header names it after its file
            assert time.monotonic() < deadline and proc.poll() is None, seen[-2000:]
            if select.select([master], [], [], 0.5)[0]:
                seen += os.read(master, 65536)
        os.write(master, b"\x11")  # Ctrl+Q
        deadline = time.monotonic() + 20
        while proc.poll() is None:
            assert time.monotonic() < deadline, "the TUI did not quit"
            if select.select([master], [], [], 0.2)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    break
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_a_command_name_is_the_command_even_if_a_file_has_that_name(tmp_path, monkeypatch):
    from mullama_tui.cli import _model_as_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run").write_bytes(b"GGUF")
    assert _model_as_command(["run", "hi"]) == ["run", "hi"]
    assert _model_as_command(["llama3.2:1b"]) == ["tui", "llama3.2:1b"]
    assert _model_as_command(["--theme", "x", "m.gguf"]) == ["--theme", "x", "tui", "m.gguf"]
    assert _model_as_command(["-v", "--help"]) == ["-v", "--help"]


def test_an_unquoted_prompt_gets_a_hint_to_quote_it(home):
    r = run_cli("run", "Tell", "me", "a", "joke")
    assert r.returncode == 2 and 'mullama-tui run "Tell me a joke"' in r.stderr
    r = run_cli("run", "Tell", "me")
    assert r.returncode == 2 and "'Tell' is not a model" in r.stderr and '"Tell me"' in r.stderr
    assert "Traceback" not in r.stderr


def test_panes_that_shared_the_prompt_say_so_in_their_stats(home):
    r = run_cli("run", "--temps", "0.2,0.9", "-n", "4", "--raw", "The sea is")
    assert r.returncode == 0, r.stderr
    assert "prompt eval:     none (the whole prompt was reused" in r.stderr
    assert "(0.0 tok/s)" not in r.stderr


def _final(out: str) -> dict:
    return json.loads(out.splitlines()[-1])


def test_run_and_compare_take_their_defaults_from_the_saved_configuration(home):
    """What F2 saved (config.toml) is what `run` and `compare` use; a flag still wins."""
    from helpers import configure

    story = "Write a long story about a dragon."
    configure(max_tokens=7, temperature=0.0, seed=0)
    a = run_cli("run", story, "--json", "--seed", "1")
    b = run_cli("run", story, "--json", "--seed", "2")
    assert a.returncode == 0 and b.returncode == 0, a.stderr + b.stderr
    fa, fb = _final(a.stdout), _final(b.stdout)
    assert fa["stats"]["generated_tokens"] == 7 and fa["stats"]["finish_reason"] == "length"
    assert fa["text"] == fb["text"]  # temperature 0 from the config: greedy whatever the seed
    longer = _final(run_cli("run", story, "--json", "-n", "9").stdout)
    assert longer["stats"]["generated_tokens"] == 9  # the flag wins

    def prompt_tokens(*flags: str) -> int:
        return _final(run_cli("run", "Hi", "--json", "-n", "1", *flags).stdout)["stats"]["prompt_tokens"]

    configure(max_tokens=7, temperature=0.0, system="Be brief.")
    short = prompt_tokens()
    configure(max_tokens=7, temperature=0.0, system="You are a pirate. Answer every question as a pirate would.")
    assert prompt_tokens() > short + 8  # the saved system prompt is in the prompt
    assert prompt_tokens("--system", "Be brief.") == short  # the flag wins
    assert prompt_tokens("--raw") < short  # no template, no system prompt

    configure(seed=0, max_tokens=5)
    rows = [json.loads(line) for line in run_cli("compare", "Hi", "--no-tui", "--json", "--temps", "0.1,1.0",
                                                 "--no-stats").stdout.splitlines() if line.startswith("{")]
    assert [r["seed"] for r in rows] == [42, 42]  # as the compare screen: 42 when the config says 0
    assert all(r["stats"]["generated_tokens"] <= 5 for r in rows)
