"""Where mullama-tui keeps things, and the user's settings (TOML under the config dir).

Every path comes from platformdirs, unless `MULLAMA_TUI_HOME` is set: then config, data
and cache all live under that one folder (tests point it at a temporary directory so
they never touch the real user's files). Pulled models go to the cache dir's `models`
folder, or wherever `MULLAMA_TUI_MODELS` (the `--models-dir` option) says.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs

from .engine.errors import is_whole

if TYPE_CHECKING:  # requests are built on first use: `show` and `models` read settings only
    from .engine.session import SessionStore
    from .engine.types import Request, SamplerParams

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "mullama-tui"


def _dir(kind: str) -> Path:
    home = os.environ.get("MULLAMA_TUI_HOME")
    if home:
        return Path(home) / kind
    return Path(getattr(platformdirs, f"user_{kind}_dir")(APP))


def config_dir() -> Path:
    return _dir("config")


def data_dir() -> Path:
    return _dir("data")


def sessions_dir() -> Path:
    """Saved conversations' KV states (data: they spare minutes of prompt processing)."""
    return _dir("data") / "kv"


def session_store(settings: Settings) -> SessionStore | None:
    """The store of saved conversations, within the configured budget (None: saving is off)."""
    if settings.kv_cache_max_mb <= 0:
        return None
    from .engine.session import SessionStore

    return SessionStore(sessions_dir(), settings.kv_cache_max_mb << 20)


def cache_dir() -> Path:
    """What can always be made again (model headers read before, pulled models)."""
    return _dir("cache")


def models_dir() -> Path:
    """Where `pull` stores models (a cache: they can always be downloaded again)."""
    override = os.environ.get("MULLAMA_TUI_MODELS")
    if override:
        return Path(override).expanduser()
    return _dir("cache") / "models"


def config_path() -> Path:
    return config_dir() / "config.toml"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)




def _text_or_none(v: Any) -> bool:
    return v is None or isinstance(v, str)


# what each key of config.toml must be: (check, what to say). A value that fails is
# reported in one line naming the key, and the default is used instead.
CHECKS: dict[str, tuple[Any, str]] = {
    "default_model": (_text_or_none, "a model name or path (a string)"),
    "theme": (lambda v: isinstance(v, str), "a theme name (a string)"),
    "mode": (lambda v: v in ("chat", "raw"), '"chat" or "raw"'),
    "system": (lambda v: isinstance(v, str), "a string"),
    "max_tokens": (lambda v: is_whole(v) and v >= 1, "a whole number >= 1"),
    "n_ctx": (lambda v: is_whole(v) and v >= 16, "a whole number of tokens >= 16"),
    "threads": (lambda v: (isinstance(v, str) and v.strip().lower() == "auto") or (is_whole(v) and v >= 0),
                '"auto" or a whole number >= 1'),
    "gpu_layers": (lambda v: v is None or (is_whole(v) and v >= -1), "a whole number: -1 (all), 0 (none) or layers"),
    "temperature": (lambda v: _number(v) and v >= 0, "a number >= 0"),
    "top_k": (lambda v: is_whole(v) and v >= 0, "a whole number >= 0"),
    "top_p": (lambda v: _number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "min_p": (lambda v: _number(v) and 0 <= v <= 1, "a number in [0, 1]"),
    "repeat_penalty": (lambda v: _number(v) and v > 0, "a number > 0"),
    "seed": (lambda v: is_whole(v) and 0 <= v < 2**32, "a whole number in [0, 2**32)"),
    "stop": (lambda v: isinstance(v, list) and all(isinstance(x, str) and x for x in v),
             "a list of non-empty strings"),
    "keymap": (lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
               "a table of action = \"key\" strings"),
    "cursor_blink": (lambda v: isinstance(v, bool), "true or false"),
    "token_view": (lambda v: isinstance(v, bool), "true or false"),
    "show_thinking": (lambda v: isinstance(v, bool), "true or false"),
    "think": (lambda v: v is None or isinstance(v, bool), "true or false"),
    "thinking_budget": (lambda v: v is None or (is_whole(v) and v >= 0), "a whole number of tokens >= 0"),
    "backend": (lambda v: v in ("local", "openai"), '"local" or "openai"'),
    "model_sources": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
                      'a list of "ollama", "hf", "lmstudio", "llama.cpp" (the models other tools downloaded)'),
    "kv_cache_max_mb": (lambda v: is_whole(v) and v >= 0, "a whole number of MB >= 0 (0: save no conversations)"),
    "base_url": (lambda v: isinstance(v, str), "a URL (a string)"),
    "api_key": (lambda v: isinstance(v, str), "a string"),
    "remote_model": (lambda v: isinstance(v, str), "a string"),
    "timeout": (lambda v: _number(v) and v > 0, "a number of seconds > 0"),
    "json_output": (lambda v: isinstance(v, str), '"", "object" or the path of a JSON schema file'),
}


def json_output_grammar(spec: str) -> str | None:
    """`run --json-schema` and the `json_output` setting as a grammar: "" none,
    "object" any JSON object, else the path of a JSON schema file."""
    import json

    from .engine.llama import json_grammar
    from .engine.types import InvalidParamsError

    spec = spec.strip()
    if not spec:
        return None
    if spec.lower() in ("object", "json"):
        return json_grammar(None)
    path = Path(spec).expanduser()
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidParamsError(f"JSON schema {path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidParamsError(f"JSON schema {path} is not JSON: {e}") from None
    if not isinstance(schema, dict):
        raise InvalidParamsError(f"JSON schema {path}: a schema is a JSON object")
    return json_grammar(schema)


@dataclass
class Settings:
    """Everything the user can set; saved as TOML. Unknown keys are kept, not lost."""

    default_model: str | None = None
    theme: str = "mullama-dark"
    mode: str = "chat"
    system: str = ""
    max_tokens: int = 512
    n_ctx: int = 4096
    threads: int | str = "auto"  # "auto": chosen while it runs (fewer when the machine is busy); or a fixed count
    gpu_layers: int | None = None  # layers to offload to a GPU: -1 all, 0 none; unset: all where the build can
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    seed: int = 0
    stop: list[str] = field(default_factory=list)
    keymap: dict[str, str] = field(default_factory=dict)
    cursor_blink: bool = True  # false: a steady text cursor (also what the snapshot tests use)
    token_view: bool = False  # replies as tokens coloured by probability (Ctrl+T)
    show_thinking: bool = True  # thinking models: show their thinking above the answer (folded once it ends)
    think: bool | None = None  # thinking models: true/false asks them to think or not; unset: their default
    thinking_budget: int | None = None  # thinking models: close the thinking after this many tokens
    backend: str = "local"  # or "openai": an OpenAI-compatible server at base_url
    base_url: str = ""
    api_key: str = ""
    remote_model: str = ""
    timeout: float = 60.0  # seconds to wait for a remote server's first byte
    json_output: str = ""  # "": free text; "object": any JSON object; else a JSON schema file the answer must match
    # other tools' downloads listed and run in place (never copied, moved or deleted)
    model_sources: list[str] = field(default_factory=lambda: ["ollama", "hf", "lmstudio", "llama.cpp"])
    kv_cache_max_mb: int = 2048  # disk for saved conversations' KV caches (least recently used go first); 0: none
    extra: dict[str, Any] = field(default_factory=dict)
    # what was wrong in the file it was loaded from: one line per bad key (not saved)
    problems: list[str] = field(default_factory=list, repr=False, compare=False)

    def thread_count(self) -> int | None:
        """`threads` as the engine takes it: None for auto (also for a value that is not
        a count), else a fixed count of at most the cores."""
        from .engine.threads import parse_threads

        try:
            return parse_threads(self.threads)[0]
        except ValueError:
            return None

    def sampler(self) -> SamplerParams:
        """The sampler settings as the engine takes them (with `json_output`, the grammar
        that holds the answer to JSON; a schema file that cannot be read raises
        InvalidParamsError)."""
        from .engine.types import SamplerParams

        return SamplerParams(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p,
                             min_p=self.min_p, penalty_repeat=self.repeat_penalty, seed=self.seed,
                             stop=list(self.stop), grammar=json_output_grammar(self.json_output))

    def request(self, *, prompt: str | None = None, messages: list[dict[str, str]] | None = None,
                params: SamplerParams | None = None, ignore_eos: bool = False) -> Request:
        """What the TUI sends for one prompt (raw mode) or transcript (chat mode), with
        these settings; `params` overrides the sampler (a compare pane's temperature)."""
        from .engine.types import Request

        params = params or self.sampler()
        if self.mode == "chat":
            return Request(prompt=prompt if messages is None else None, messages=messages, mode="chat",
                           system=self.system or None, params=params, max_tokens=self.max_tokens,
                           ignore_eos=ignore_eos, think=self.think, thinking_budget=self.thinking_budget)
        return Request(prompt=prompt, mode="raw", params=params, max_tokens=self.max_tokens,
                       ignore_eos=ignore_eos, think=self.think, thinking_budget=self.thinking_budget)

    @classmethod
    def load(cls, path: Path | None = None) -> Settings:
        """Read the config file; a missing file gives defaults, a broken one raises
        ValueError with the file name and what is wrong."""
        path = path or config_path()
        if not path.exists():
            return cls()
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: {e}") from e
        known = {f.name for f in fields(cls)} - {"extra", "problems"}
        good: dict[str, Any] = {}
        problems: list[str] = []
        for k, v in data.items():
            if k not in known:
                continue
            check, what = CHECKS[k]
            if check(v):
                good[k] = v
            else:
                default: Any = {"stop": [], "keymap": {}}.get(k, getattr(cls, k, None))
                problems.append(f"{path.name}: {k} = {v!r} must be {what}; using the default ({default!r})")
        s = cls(**good)
        s.extra = {k: v for k, v in data.items() if k not in known}
        s.problems = problems
        return s

    def save(self, path: Path | None = None) -> None:
        import tomli_w

        path = path or config_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {k: v for k, v in asdict(self).items() if k not in ("extra", "problems") and v is not None}
        data.update(self.extra)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(tomli_w.dumps(data), encoding="utf-8")
        tmp.replace(path)
