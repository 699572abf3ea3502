"""The `mullama-tui` command: one thin function per subcommand, no logic of its own.

Errors from the engine are typed; they are turned into one readable line here
(`error: ...` on stderr, exit 1), never a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .config import Settings
from .engine.types import MullamaError, Request, SamplerParams

app = typer.Typer(add_completion=False, no_args_is_help=False,
                  help="Watch local GGUF models generate, token by token.",
                  context_settings={"help_option_names": ["-h", "--help"]})

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
    temps: Optional[str] = typer.Option(None, "--temps",
                                        help="Compare temperatures in one batch, e.g. 0.1,0.7,1.2."),
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
    raise typer.Exit(_run(model_arg, request, temps, n_ctx, threads, as_json, stats, settings))


def _run(model_arg: str | None, request: Request, temps: str | None, n_ctx: int, threads: int,
         as_json: bool, stats: bool, settings: Settings) -> int:
    """`run` and `compare --no-tui`: one stream, or one batch of temperature panes."""
    from .console import compare_requests, parse_temps, print_compare, stream_to_stdout

    try:
        request.validate()
        temp_list = parse_temps(temps) if temps else None
        from .engine.local import LocalEngine
        from .models.resolve import resolve_model

        path = resolve_model(model_arg, settings.default_model)
        engine = LocalEngine(path, n_ctx=n_ctx, n_parallel=len(temp_list or [1]),
                             n_threads=threads or None)
    except MullamaError as e:
        raise _fail(str(e)) from None
    try:
        try:
            if temp_list:
                gens = [engine.submit(r) for r in compare_requests(request, temp_list)]
            else:
                gen = engine.submit(request)
        except MullamaError as e:
            raise _fail(str(e)) from None
        if temp_list:
            return print_compare(gens, temp_list, as_json, stats)
        return stream_to_stdout(gen, as_json, stats)
    finally:
        engine.close()


@app.command()
def bench(
    model: Optional[str] = typer.Argument(None, help="Model path (default: configured or bundled)."),
    n_tokens: int = typer.Option(256, "--tokens", "-n", help="Tokens to generate per run."),
    reps: int = typer.Option(3, "--reps", "-r", help="Repetitions of each side."),
    seed: int = typer.Option(42, "--seed"),
    threads: int = typer.Option(0, "--threads", help="CPU threads (0 = all cores)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ui: bool = typer.Option(False, "--ui", help="The TUI: end-to-end tok/s, cost growth, Esc latency."),
    ui_mode: str = typer.Option("chat", "--ui-mode", help="chat (Markdown pane) or raw (plain text)."),
    batched: bool = typer.Option(False, "--batched", help="Compare panes: batched vs one after another."),
    server: bool = typer.Option(False, "--server", help="8 concurrent streaming clients vs one."),
) -> None:
    """Benchmarks, measured side by side in one run. Default: the engine vs
    llama-cpp-python's create_completion(stream=True)."""
    from . import bench as b
    from .models.resolve import resolve_model

    try:
        path = resolve_model(model, _settings().default_model)
        progress = (lambda s: None) if as_json else (lambda s: typer.echo(f"  {s}", err=True))
        if ui:
            report = b.bench_ui(path, mode=ui_mode, progress=progress)
            text = b.format_ui_report(report)
        elif server:
            report = b.bench_server(path, progress=progress)
            text = b.format_server_report(report)
        elif batched:
            report = b.bench_batched(path, n_tokens=n_tokens, seed=seed, progress=progress)
            text = b.format_batched_report(report)
        else:
            report = b.bench_engine_vs_llama_cpp_python(path, n_tokens=n_tokens, reps=reps, seed=seed,
                                                        n_threads=threads, progress=progress)
            text = b.format_engine_report(report)
    except MullamaError as e:
        raise _fail(str(e)) from None
    typer.echo(json.dumps(report, indent=2) if as_json else text)


@app.command()
def compare(
    args: List[str] = typer.Argument(None, metavar="[MODEL] [PROMPT]",
                                     help="Optional model path, then an optional prompt."),
    temps: str = typer.Option("0.1,0.7,1.2", "--temps", help="2 to 6 temperatures."),
    seed: int = typer.Option(0, "--seed", help="One seed for every pane (0 = random)."),
    max_tokens: int = typer.Option(256, "--max-tokens", "-n"),
    chat: bool = typer.Option(True, "--chat/--raw"),
    no_tui: bool = typer.Option(False, "--no-tui", help="Print the panes to the console instead."),
    as_json: bool = typer.Option(False, "--json", help="With --no-tui: one JSON object per pane."),
    stats: bool = typer.Option(True, "--stats/--no-stats"),
) -> None:
    """The same prompt at several temperatures, side by side, generated in one batch."""
    from .console import parse_temps

    args = list(args or [])
    if len(args) > 2:
        raise _fail("expected [MODEL] [PROMPT]", 2)
    if len(args) == 1 and args[0].endswith(".gguf"):
        args.append("")
    model_arg = args[0] if len(args) == 2 else None
    prompt = (args[-1] if args else None) or None
    try:
        temp_list = parse_temps(temps)
    except MullamaError as e:
        raise _fail(str(e), 2) from None
    settings = _settings()
    if no_tui:
        if not prompt:
            raise _fail("--no-tui needs a PROMPT", 2)
        request = Request(prompt=prompt, mode="chat" if chat else "raw", max_tokens=max_tokens,
                          params=SamplerParams(seed=seed))
        raise typer.Exit(_run(model_arg, request, temps, settings.n_ctx, settings.threads, as_json,
                              stats, settings))
    from .tui.app import MullamaApp

    MullamaApp(model=model_arg, compare=(temp_list, prompt)).run()


@app.command()
def serve(
    model: Optional[str] = typer.Argument(None, help="Model path (default: configured or bundled)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told)."),
    port: int = typer.Option(3000, "--port"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="MULLAMA_TUI_API_KEY",
                                          help="Require Authorization: Bearer KEY (not on /health)."),
    max_concurrency: int = typer.Option(4, "--max-concurrency", help="Sequences decoded in one batch."),
    queue: int = typer.Option(16, "--queue", help="Requests that may wait; more get a 503."),
    cors_origin: Optional[List[str]] = typer.Option(None, "--cors-origin", help="Allowed origin (repeatable)."),
    n_ctx: int = typer.Option(4096, "--ctx", help="Context size per sequence."),
    threads: int = typer.Option(0, "--threads"),
) -> None:
    """Serve SSE (/stream), WebSocket (/ws) and OpenAI-compatible (/v1) streaming."""
    try:
        import uvicorn

        from .server.app import create_app
    except ImportError:
        raise _fail("the server needs its extra:  pip install 'mullama-tui[server]'") from None
    from .engine.local import LocalEngine
    from .models.resolve import resolve_model

    try:
        path = resolve_model(model, _settings().default_model)
        engine = LocalEngine(path, n_ctx=n_ctx, n_parallel=max_concurrency, max_queue=queue,
                             n_threads=threads or None)
    except MullamaError as e:
        raise _fail(str(e)) from None
    name = engine.model.info.name
    api = create_app(engine, name, api_key=api_key, cors_origins=list(cors_origin or []))
    typer.echo(f"mullama-tui serving {name} ({path}) on http://{host}:{port}  (Ctrl+C stops)", err=True)
    try:
        uvicorn.run(api, host=host, port=port, log_level="warning", timeout_graceful_shutdown=3)
    finally:
        engine.close()  # cancels whatever is still running
    typer.echo("stopped", err=True)


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
