"""How fast the app answers: `--help`, `models`, `show`, and the TUI's first frame, each
in a fresh interpreter (what a user waits for), against bare Python started the same way.
Runs are interleaved (every command once per round) so a VM's drift hits them alike; the
report gives medians over the rounds.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .common import Progress, ok, private_home

TARGETS = {"--help": 0.2, "models": 0.2, "show": 0.2, "tui first frame": 0.5}

# the TUI in a fresh interpreter: prints when its first screen has been drawn (Textual's
# Ready event); the model goes on loading in its worker, as it does for a user
FIRST_FRAME = """
import sys
from mullama_tui.tui.app import MullamaApp

class FirstFrame(MullamaApp):
    def on_ready(self) -> None:
        print("drawn", flush=True)
        self.exit()

FirstFrame(model=sys.argv[1]).run(headless=True, size=(120, 40))
"""

# the floors: what the libraries alone cost, started the same way (Typer, which answers
# --help, models and show without Rich; a Textual app with a header, a text area and a
# footer, to its first frame)
TYPER_FLOOR = "import typer"
TEXTUAL_FLOOR = """
from textual.app import App
from textual.widgets import Footer, Header, Static, TextArea

class Bare(App):
    def compose(self):
        yield Header()
        yield Static("x")
        yield TextArea()
        yield Footer()

    def on_ready(self) -> None:
        print("drawn", flush=True)
        self.exit()

Bare().run(headless=True, size=(120, 40))
"""


def _time(argv: list[str], until: str | None = None) -> float:
    """Seconds from spawning `argv` to its exit (or to a line containing `until`)."""
    # as a user's Python runs: compiled modules are cached (a PYTHONDONTWRITEBYTECODE in this
    # shell would have every run compile every changed module from source again)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        if until is None:
            proc.communicate(timeout=60)
            if proc.returncode:
                raise RuntimeError(f"{' '.join(argv)} exited with {proc.returncode}")
            return time.perf_counter() - t0
        assert proc.stdout is not None
        for line in proc.stdout:
            if until in line:
                return time.perf_counter() - t0
        raise RuntimeError(f"{argv[0]} ended before printing {until!r}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def bench_startup(path: Path, *, rounds: int = 9, progress: Progress = lambda s: None) -> dict[str, Any]:
    cli = [sys.executable, "-m", "mullama_tui.cli"]
    cases: dict[str, tuple[list[str], str | None]] = {
        "bare python": ([sys.executable, "-c", "pass"], None),
        "floor: typer": ([sys.executable, "-c", TYPER_FLOOR], None),
        "floor: textual": ([sys.executable, "-c", TEXTUAL_FLOOR], "drawn"),
        "--help": ([*cli, "--help"], None),
        "models": ([*cli, "models"], None),
        "show": ([*cli, "show", str(path)], None),
        "tui first frame": ([sys.executable, "-c", FIRST_FRAME, str(path)], "drawn"),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    with private_home():
        for argv, until in cases.values():  # warm the file cache, and write the compiled modules, once
            _time(argv, until)
        for r in range(rounds):
            progress(f"round {r + 1}/{rounds}")
            for name, (argv, until) in cases.items():
                times[name].append(_time(argv, until))
    rows = {name: {"median_s": round(statistics.median(ts), 3), "min_s": round(min(ts), 3),
                   "max_s": round(max(ts), 3)} for name, ts in times.items()}
    return {"benchmark": "startup", "model": str(path), "rounds": rounds, "python": sys.version.split()[0],
            "rows": rows, "targets": TARGETS}


def format_startup_report(r: dict[str, Any]) -> str:
    lines = [f"start-up, fresh interpreters, median of {r['rounds']} interleaved rounds (Python {r['python']}):"]
    rows = r["rows"]
    floors = {"--help": "floor: typer", "models": "floor: typer", "show": "floor: typer",
              "tui first frame": "floor: textual"}
    for name, row in rows.items():
        target = r["targets"].get(name)
        verdict = f"  target < {target} s: {ok(row['median_s'] < target)}" if target else ""
        floor = floors.get(name)
        over = f"  ours +{row['median_s'] - rows[floor]['median_s']:.3f} s over the floor" if floor else ""
        lines.append(f"  {name:<18} {row['median_s']:.3f} s  (min {row['min_s']:.3f}, max {row['max_s']:.3f})"
                     f"{over}{verdict}")
    return "\n".join(lines)
