"""The `mullama-tui` command: one thin function per subcommand, no logic of its own.

Errors from the engine are typed; they are turned into one readable line here
(`error: ...` on stderr, exit 1), never a traceback.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .config import Settings
from .engine.types import MullamaError, Request, SamplerParams

app = typer.Typer(add_completion=False, no_args_is_help=False,
                  help="Watch local GGUF models generate, token by token.",
                  context_settings={"help_option_names": ["-h", "--help"]})

EXIT_CANCELLED = 130


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _setup_logging(verbose: bool) -> None:
    """llama.cpp's logs go to Python logging (see engine/llama.py): silent unless --verbose."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.CRITICAL, stream=sys.stderr,
                        format="%(name)s: %(message)s")


def _settings() -> Settings:
    try:
        return Settings.load()
    except ValueError as e:
        typer.echo(f"warning: ignoring a broken config file: {e}", err=True)
        return Settings()


def _split_model_prompt(args: list[str]) -> tuple[str | None, str]:
    if len(args) == 1:
        return None, args[0]
    if len(args) == 2:
        return args[0], args[1]
    raise _fail("expected [MODEL] PROMPT", 2)


@app.callback(invoke_without_command=True)
def main_callback(ctx: typer.Context,
                  verbose: bool = typer.Option(False, "--verbose", "-v",
                                               help="Show llama.cpp's logs on stderr.")) -> None:
    """With no command, open the TUI on the default model."""
    _setup_logging(verbose)
    if ctx.invoked_subcommand is None:
        ctx.invoke(tui, model=None)


@app.command()
def run(
    args: List[str] = typer.Argument(..., metavar="[MODEL] PROMPT",
                                     help="Optional model path, then the prompt ('-' reads stdin)."),
    max_tokens: int = typer.Option(256, "--max-tokens", "-n", help="Most tokens to generate."),
    temperature: float = typer.Option(0.8, "--temperature", "-t", help="0 = greedy."),
    top_k: int = typer.Option(40, "--top-k"),
    top_p: float = typer.Option(0.95, "--top-p"),
    min_p: float = typer.Option(0.05, "--min-p"),
    repeat_penalty: float = typer.Option(1.1, "--repeat-penalty"),
    seed: int = typer.Option(0, "--seed", help="0 = random (the seed used is in the stats)."),
    stop: Optional[List[str]] = typer.Option(None, "--stop", help="Stop string (repeatable)."),
    chat: bool = typer.Option(True, "--chat/--raw", help="Use the model's chat template, or not."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt (chat mode)."),
    n_ctx: int = typer.Option(4096, "--ctx", help="Context size in tokens."),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0 = all cores)."),
    stats: bool = typer.Option(True, "--stats/--no-stats", help="Print stats to stderr at the end."),
    as_json: bool = typer.Option(False, "--json", help="One JSON event per line (NDJSON)."),
) -> None:
    """Stream a completion to stdout as the tokens arrive. Ctrl+C stops it (exit 130)."""
    model_arg, prompt = _split_model_prompt(args)
    if prompt == "-":
        prompt = sys.stdin.read()
    settings = _settings()
    params = SamplerParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                           penalty_repeat=repeat_penalty, seed=seed, stop=list(stop or []))
    request = Request(prompt=prompt, mode="chat" if chat else "raw", system=system,
                      params=params, max_tokens=max_tokens)
    try:
        request.validate()
        from .engine.local import LocalEngine
        from .models.resolve import resolve_model

        path = resolve_model(model_arg, settings.default_model)
        engine = LocalEngine(path, n_ctx=n_ctx, n_parallel=1, n_threads=threads or None)
    except MullamaError as e:
        raise _fail(str(e)) from None
    try:
        try:
            gen = engine.submit(request)
        except MullamaError as e:
            raise _fail(str(e)) from None
        code = _stream_to_stdout(gen, as_json, stats)
    finally:
        engine.close()
    raise typer.Exit(code)


def _stream_to_stdout(gen, as_json: bool, show_stats: bool) -> int:  # type: ignore[no-untyped-def]
    """Print pieces as they come; the first Ctrl+C cancels (and we still print what was
    produced and its stats), a second one exits at once."""
    interrupted = []

    def on_sigint(signum: int, frame: object) -> None:
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        gen.cancel()

    old = signal.signal(signal.SIGINT, on_sigint)
    out = sys.stdout
    final = None
    try:
        for event in gen:
            if as_json:
                out.write(json.dumps(event.to_dict(), ensure_ascii=False) + "\n")
            elif event.text:
                out.write(event.text)
            out.flush()
            if event.done:
                final = event
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    finally:
        signal.signal(signal.SIGINT, old)
    if not as_json:
        out.write("\n")
        out.flush()
    cancelled = final is not None and str(final.finish_reason) == "cancelled"
    if cancelled and not as_json:
        typer.echo("[Generation cancelled]", err=True)
    if final is not None and final.stats is not None:
        if show_stats and not as_json:
            typer.echo("--- Stats ---", err=True)
            for line in final.stats.summary_lines():
                typer.echo(line, err=True)
        if final.stats.error:
            typer.echo(f"error: {final.stats.error}", err=True)
            return 1
    return EXIT_CANCELLED if cancelled else 0


@app.command()
def bench(
    model: Optional[str] = typer.Argument(None, help="Model path (default: configured or bundled)."),
    n_tokens: int = typer.Option(256, "--tokens", "-n", help="Tokens to generate per run."),
    reps: int = typer.Option(3, "--reps", "-r", help="Repetitions of each side."),
    seed: int = typer.Option(42, "--seed"),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0 = all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Engine vs llama-cpp-python's create_completion(stream=True), side by side."""
    from .bench import bench_engine_vs_llama_cpp_python, format_engine_report
    from .models.resolve import resolve_model

    try:
        path = resolve_model(model, _settings().default_model)
        progress = (lambda s: None) if as_json else (lambda s: typer.echo(f"  {s}", err=True))
        report = bench_engine_vs_llama_cpp_python(path, n_tokens=n_tokens, reps=reps, seed=seed,
                                                  n_threads=threads, progress=progress)
    except MullamaError as e:
        raise _fail(str(e)) from None
    typer.echo(json.dumps(report, indent=2) if as_json else format_engine_report(report))


@app.command()
def tui(model: Optional[str] = typer.Argument(None, help="Model path (default: configured or bundled)."),
        theme: Optional[str] = typer.Option(None, "--theme", help="Theme name.")) -> None:
    """Open the terminal UI."""
    try:
        from .tui.app import MullamaApp
    except ImportError as e:  # pragma: no cover - the TUI ships with the package
        raise _fail(f"the TUI is not available: {e}") from None
    MullamaApp(model=model, theme_name=theme).run()


def main() -> None:
    try:
        app()
    except MullamaError as e:  # last line of defence: never a traceback for our own errors
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
