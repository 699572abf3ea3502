"""The folder of pulled models and its index (what was pulled, from where, under which name).

Layout: `<models dir>/<source folder>/<file>.gguf` (`owner--repo` for Hugging Face files, the
host name for URLs, so two repositories' files of the same name never collide), plus
`index.json` at the top. The index is rewritten atomically (temp file + rename), and a
file the user deleted by hand simply drops out of listings.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..config import models_dir


@dataclass
class StoredModel:
    """One pulled model, as recorded in the index."""

    name: str  # what the user pulled: "llama3.2:1b", "hf:owner/repo:file.gguf" or a URL
    file: str  # path relative to the models dir, or absolute in the Hugging Face cache
    url: str
    size: int
    sha256: str | None = None
    repo: str | None = None
    pulled_at: float = field(default_factory=time.time)

    @property
    def filename(self) -> str:
        return Path(self.file).name


class ModelStore:
    """Pulled models under one folder (the platformdirs cache dir unless overridden)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or models_dir()
        self.index_path = self.root / "index.json"

    def path_of(self, entry: StoredModel) -> Path:
        return self.root / entry.file

    def destination(self, folder: str, filename: str) -> Path:
        return self.root / _safe(folder) / _safe(filename)

    # -- index ------------------------------------------------------------------------
    def _read(self) -> list[StoredModel]:
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError):
            return []  # a damaged index loses the names, never the files: `pull` rebuilds it
        known = {f.name for f in fields(StoredModel)}
        return [StoredModel(**{k: v for k, v in e.items() if k in known})
                for e in data.get("models", []) if isinstance(e, dict) and "name" in e and "file" in e]

    def _write(self, entries: list[StoredModel]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.index_path.with_name(f"index.json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"models": [asdict(e) for e in entries]}, indent=2), encoding="utf-8")
        tmp.replace(self.index_path)

    def entries(self) -> list[StoredModel]:
        """Pulled models whose file is still there, in pull order."""
        return [e for e in self._read() if self.path_of(e).is_file()]

    def find(self, name: str) -> StoredModel | None:
        """The entry pulled as `name`, or whose file name is `name`."""
        entries = self.entries()
        for e in entries:
            if e.name == name:
                return e
        for e in entries:
            if name in (e.filename, Path(e.filename).stem, e.file):
                return e
        return None

    def add(self, entry: StoredModel) -> None:
        """Record a pull (replacing an entry of the same name or file)."""
        rest = [e for e in self._read() if e.name != entry.name and e.file != entry.file]
        self._write(rest + [entry])

    def forget(self, entry: StoredModel) -> None:
        """Drop the index entry alone (the file is someone else's to delete: hf_cache.remove)."""
        self._write([e for e in self._read() if e.name != entry.name])

    def remove(self, entry: StoredModel) -> int:
        """Delete the file (and any partial download) and its index entry; bytes freed."""
        path = self.path_of(entry)
        freed = delete_files(path, path.with_name(path.name + ".part"))
        self.forget(entry)
        try:
            path.parent.rmdir()  # only if now empty
        except OSError:
            pass
        return freed


def delete_files(*paths: Path) -> int:
    """Delete the files that exist of `paths`; the bytes freed."""
    freed = 0
    for p in paths:
        try:
            freed += p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            pass
    return freed


def _safe(part: str) -> str:
    """A single path component: no separators, no `..`, nothing hidden."""
    cleaned = part.replace("/", "--").replace("\\", "--").replace(":", "_").strip(". ")
    return cleaned or "model"
