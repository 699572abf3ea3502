"""GGUF models other tools already downloaded: Ollama's store, the Hugging Face hub cache,
LM Studio's models folder and llama.cpp's cache. Found in place, never copied or moved,
and never deleted by us (`rm` says which tool owns them).

Each source is read by its own layout:
- Ollama: `manifests/<registry>/<namespace>/<model>/<tag>` (JSON) names the model's
  layers; the one of media type `application/vnd.ollama.image.model` is a GGUF blob in
  `blobs/sha256-<hex>`. Projectors and adapters are other layers: skipped, with a note.
  `OLLAMA_MODELS`, else `~/.ollama/models` (and the Linux service's
  `/usr/share/ollama/.ollama/models`).
- Hugging Face: `models--<owner>--<repo>/snapshots/<revision>/**/*.gguf` under
  `HF_HUB_CACHE`, else `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub`, else
  `~/.cache/huggingface/hub`; the revision `refs/main` points to, else the newest.
- LM Studio: `<publisher>/<repo>/<file>.gguf` under `~/.lmstudio/models`, the older
  `~/.cache/lm-studio/models`, and the `downloadsFolder` of `~/.lmstudio/settings.json`.
- llama.cpp (`-hf` downloads): `*.gguf` under `LLAMA_CACHE`, else
  `$XDG_CACHE_HOME/llama.cpp` or `~/.cache/llama.cpp` (`~/Library/Caches/llama.cpp` on macOS).

Anything broken (a manifest that is not JSON, a blob that is missing or not a GGUF, a
dangling link, a folder that cannot be read) becomes one line in `problems` and the rest
is still listed.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .gguf import is_gguf

SOURCES = ("ollama", "hf", "lmstudio", "llama.cpp")
OWNERS = {"ollama": "Ollama", "hf": "the Hugging Face cache", "lmstudio": "LM Studio", "llama.cpp": "llama.cpp"}
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"


@dataclass(frozen=True)
class Found:
    """A GGUF another tool downloaded: the name to run it by, its file, and whose it is."""

    name: str  # "ollama:llama3.2:1b", "hf:owner/repo:file.gguf", "lmstudio:pub/repo/file.gguf", "llama.cpp:f.gguf"
    path: Path
    source: str  # one of SOURCES

    @property
    def short(self) -> str:
        """The name without its source (what a plain name matches when it is unique)."""
        return self.name.split(":", 1)[1]

    @property
    def owner(self) -> str:
        return OWNERS[self.source]


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def _xdg_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or _home() / ".cache")


def ollama_dirs() -> list[Path]:
    if os.environ.get("OLLAMA_MODELS"):
        return [Path(os.environ["OLLAMA_MODELS"]).expanduser()]
    dirs = [_home() / ".ollama" / "models"]
    if sys.platform.startswith("linux"):
        dirs.append(Path("/usr/share/ollama/.ollama/models"))  # the systemd service's home
    return dirs


def hf_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return _xdg_cache() / "huggingface" / "hub"


def lmstudio_dirs() -> list[Path]:
    dirs = [_home() / ".lmstudio" / "models", _home() / ".cache" / "lm-studio" / "models"]
    settings = _home() / ".lmstudio" / "settings.json"
    try:
        folder = json.loads(settings.read_text(encoding="utf-8")).get("downloadsFolder")
        if isinstance(folder, str) and folder:
            dirs.insert(0, Path(folder).expanduser())
    except (OSError, ValueError, AttributeError):
        pass
    return list(dict.fromkeys(dirs))


def llama_cpp_dir() -> Path:
    if os.environ.get("LLAMA_CACHE"):
        return Path(os.environ["LLAMA_CACHE"]).expanduser()
    if sys.platform == "darwin":
        return _home() / "Library" / "Caches" / "llama.cpp"
    return _xdg_cache() / "llama.cpp"


def _ollama_name(parts: tuple[str, ...]) -> str:
    """registry/namespace/model/tag -> Ollama's own name: `llama3.2:1b` for the library,
    `namespace/model:tag` for others, the registry first when it is not Ollama's."""
    *where, model, tag = parts
    if len(where) == 2 and where[0] == "registry.ollama.ai":
        return f"{model}:{tag}" if where[1] == "library" else f"{where[1]}/{model}:{tag}"
    return "/".join([*where, model]) + f":{tag}"


def find_ollama(problems: list[str]) -> list[Found]:
    out: list[Found] = []
    for root in ollama_dirs():
        manifests = root / "manifests"
        if not manifests.is_dir():
            continue
        for manifest in sorted(p for p in manifests.rglob("*") if p.is_file()):
            rel = manifest.relative_to(manifests).parts
            if len(rel) < 3:
                continue
            name = "ollama:" + _ollama_name(rel)
            try:
                layers = json.loads(manifest.read_text(encoding="utf-8"))["layers"]
                digests = [layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER]
                others = [layer.get("mediaType", "?").rsplit(".", 1)[-1] for layer in layers
                          if layer.get("mediaType") != OLLAMA_MODEL_LAYER and
                          layer.get("mediaType", "").endswith(("projector", "adapter"))]
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
                problems.append(f"{name}: its manifest {manifest} cannot be read ({e.__class__.__name__}); skipped")
                continue
            if not digests:
                problems.append(f"{name}: no model layer in its manifest; skipped")
                continue
            blob = root / "blobs" / digests[0].replace(":", "-")
            if not blob.is_file() or not is_gguf(blob):
                problems.append(f"{name}: its model blob {blob.name} is missing or not a GGUF; skipped")
                continue
            if others:
                problems.append(f"{name}: runs without its {', '.join(others)} (not supported here)")
            out.append(Found(name, blob, "ollama"))
    return out


def _hf_revision(repo: Path) -> Path | None:
    """The snapshot `refs/main` names, else the newest snapshot."""
    try:
        ref = (repo / "refs" / "main").read_text(encoding="utf-8").strip()
        if ref and (repo / "snapshots" / ref).is_dir():
            return repo / "snapshots" / ref
    except OSError:
        pass
    snapshots = [p for p in (repo / "snapshots").glob("*") if p.is_dir()]
    return max(snapshots, key=lambda p: p.stat().st_mtime) if snapshots else None


def find_hf(problems: list[str]) -> list[Found]:
    out: list[Found] = []
    root = hf_cache_dir()
    if not root.is_dir():
        return out
    for repo in sorted(root.glob("models--*")):
        owner_repo = repo.name[len("models--"):].replace("--", "/", 1)
        snapshot = _hf_revision(repo)
        if snapshot is None:
            continue
        for file in sorted(snapshot.rglob("*.gguf")):
            name = f"hf:{owner_repo}:{file.relative_to(snapshot).as_posix()}"
            if not file.exists():  # a link whose blob is gone
                problems.append(f"{name}: a dangling link in the Hugging Face cache ({file}); skipped")
                continue
            if not is_gguf(file):
                problems.append(f"{name}: not a GGUF file; skipped")
                continue
            out.append(Found(name, file, "hf"))
    return out


def find_lmstudio(problems: list[str]) -> list[Found]:
    out: list[Found] = []
    seen: set[Path] = set()
    for root in lmstudio_dirs():
        if not root.is_dir():
            continue
        for file in sorted(root.rglob("*.gguf")):
            rel = file.relative_to(root).as_posix()
            if "mmproj" in file.name.lower():
                continue  # a vision projector, not a model
            real = file.resolve()
            if real in seen:
                continue
            seen.add(real)
            if not is_gguf(file):
                problems.append(f"lmstudio:{rel}: not a GGUF file; skipped")
                continue
            out.append(Found(f"lmstudio:{rel}", file, "lmstudio"))
    return out


def find_llama_cpp(problems: list[str]) -> list[Found]:
    root = llama_cpp_dir()
    out: list[Found] = []
    if not root.is_dir():
        return out
    for file in sorted(root.glob("*.gguf")):
        if not is_gguf(file):
            problems.append(f"llama.cpp:{file.name}: not a GGUF file; skipped")
            continue
        out.append(Found(f"llama.cpp:{file.name}", file, "llama.cpp"))
    return out


FINDERS = {"ollama": find_ollama, "hf": find_hf, "lmstudio": find_lmstudio, "llama.cpp": find_llama_cpp}


def discover(sources: list[str] | tuple[str, ...] = SOURCES, problems: list[str] | None = None) -> list[Found]:
    """Every GGUF the enabled `sources` hold; what could not be read goes to `problems`."""
    problems = problems if problems is not None else []
    out: list[Found] = []
    for source in sources:
        finder = FINDERS.get(source)
        if finder is None:
            problems.append(f"model source {source!r} is unknown (known: {', '.join(SOURCES)})")
            continue
        try:
            out += finder(problems)
        except OSError as e:  # an unreadable folder: the other sources still count
            problems.append(f"{OWNERS[source]}: cannot read its folder ({e.strerror or e}); skipped")
    return out


def find_by_name(name: str, found: list[Found]) -> Found | None:
    """`ollama:llama3.2:1b` exactly, or a plain `llama3.2:1b` when one source alone has it."""
    exact = [f for f in found if f.name == name]
    if exact:
        return exact[0]
    plain = [f for f in found if f.short == name]
    return plain[0] if len(plain) == 1 else None
