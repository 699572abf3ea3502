"""Sequence states on disk: a conversation's KV cache saved when a turn ends and restored
when the conversation goes on, in this process or the next one.

Why: a follow-up to a 4000-token conversation re-processes the whole transcript (about
20 s on a 2-core CPU with the bundled model, minutes with the 1B-8B models people run
on CPUs); reading its KV back takes a fraction of a second.

The store is plain files in a folder the caller chooses (the engine knows no config):
- `<key>.kv`: magic, version, a JSON header (the model's identity, the tokens whose KV
  it holds, the payload's length and CRC-32), then `llama_state_seq_get_data`'s bytes;
- `index.json`: what is stored (key, tokens, bytes, last use, the caller's metadata), a
  cache of the headers: a lost or broken index is rebuilt from the files.

Nothing wrong ever reaches llama.cpp: a file is used only if its magic, version, length,
checksum, model identity (file, shape, llama.cpp build, context settings) and tokens all
match; anything else is removed with a warning and the conversation is processed from
its text. Files are written to a temporary name and renamed (a kill -9 mid-save leaves
the previous state or none), off the scheduler thread, and the folder is kept under a
byte budget by evicting the least recently used.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

log = logging.getLogger("mullama_tui.session")

MAGIC = b"MTKV"
VERSION = 1
SUFFIX = ".kv"


class SessionError(Exception):
    """A saved state that cannot be used (says why); the caller re-processes the text."""


@dataclass
class SavedState:
    """One stored sequence state, as the index lists it."""

    key: str
    identity: str
    tokens: list[int]
    bytes: int
    saved_at: float
    last_used: float
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens `a` and `b` share (the scheduler's KV reuse, and this store's)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def safe_key(key: str) -> str:
    """A key usable as a file name (letters, digits, - _ .), or SessionError."""
    if not key or len(key) > 100 or not all(c.isalnum() or c in "-_." for c in key) or key.startswith("."):
        raise SessionError(f"conversation name {key!r}: use letters, digits, '-', '_' or '.' (up to 100)")
    return key


class SessionStore:
    """Saved sequence states in `folder`, at most `budget_bytes` of them (LRU evicted)."""

    def __init__(self, folder: str | os.PathLike[str], budget_bytes: int = 2 << 30) -> None:
        self.folder = Path(folder)
        self.budget_bytes = budget_bytes
        self._lock = threading.RLock()
        self._entries: dict[str, SavedState] = {}
        self._writes: queue.Queue[tuple[SavedState, bytes] | None] = queue.Queue()
        self._writer: threading.Thread | None = None
        self.notices: list[str] = []  # one line each: what was ignored or removed, and why
        self._load_index()

    # -- the index ------------------------------------------------------------------
    @property
    def _index_path(self) -> Path:
        return self.folder / "index.json"

    def _load_index(self) -> None:
        try:
            data = json.loads(self._index_path.read_text(encoding="utf-8"))
            rows = data["states"] if data.get("version") == VERSION else None
            self._entries = {r["key"]: SavedState(**r) for r in rows} if rows is not None else {}
            if rows is None:
                raise ValueError("another version")
        except FileNotFoundError:
            self._entries = {}
            if self.folder.is_dir() and any(self.folder.glob("*" + SUFFIX)):
                self._rebuild()
        except (OSError, ValueError, KeyError, TypeError):
            self._rebuild()
        # files gone behind our back are gone from the index too
        for key in [k for k in self._entries if not self._file(k).exists()]:
            del self._entries[key]

    def _rebuild(self) -> None:
        """The index from the files' own headers (a lost or broken index costs nothing)."""
        self._entries = {}
        for path in sorted(self.folder.glob("*" + SUFFIX)):
            try:
                with path.open("rb") as f:
                    header = self._read_header(f)
                st = path.stat()
                self._entries[header["key"]] = SavedState(
                    header["key"], header["identity"], list(header["tokens"]), st.st_size,
                    float(header.get("saved_at", st.st_mtime)), st.st_mtime, dict(header.get("meta") or {}))
            except (SessionError, OSError, KeyError, TypeError, ValueError) as e:
                self._drop_file(path, f"unreadable saved state {path.name} removed ({e})")

    def _save_index(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = self._index_path.with_suffix(".tmp")
            rows = [asdict(e) for e in self._entries.values()]
            tmp.write_text(json.dumps({"version": VERSION, "states": rows}), encoding="utf-8")
            tmp.replace(self._index_path)
        except OSError as e:
            log.warning("could not write %s: %s", self._index_path, e)

    def _file(self, key: str) -> Path:
        return self.folder / (key + SUFFIX)

    def _drop_file(self, path: Path, notice: str) -> None:
        log.warning("%s", notice)
        self.notices.append(notice)
        try:
            path.unlink()
        except OSError:
            pass

    # -- reading ----------------------------------------------------------------------
    def entries(self) -> list[SavedState]:
        """What is stored, most recently used first."""
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: -e.last_used)

    def get(self, key: str) -> SavedState | None:
        with self._lock:
            return self._entries.get(key)

    @property
    def total_bytes(self) -> int:
        with self._lock:
            return sum(e.bytes for e in self._entries.values())

    def best_prefix(self, tokens: list[int], identity: str) -> tuple[SavedState | None, int]:
        """The stored state of this model holding the longest prefix of `tokens`."""
        best, n = None, 0
        with self._lock:
            for e in self._entries.values():
                if e.identity != identity:
                    continue
                k = common_prefix(e.tokens, tokens)
                if k > n:
                    best, n = e, k
        return best, n

    @staticmethod
    def _read_header(f: BinaryIO) -> dict[str, Any]:
        """The header of the state file open in `f` (left at its payload); SessionError if
        the file is not one of ours or is cut short."""
        head = f.read(12)
        if len(head) < 12 or head[:4] != MAGIC:
            raise SessionError("not a saved state (bad magic)")
        version = int.from_bytes(head[4:8], "little")
        if version != VERSION:
            raise SessionError(f"saved by another version ({version})")
        n = int.from_bytes(head[8:12], "little")
        raw = f.read(n)
        if len(raw) != n:
            raise SessionError("cut short in its header")
        try:
            header = json.loads(raw)
        except ValueError as e:
            raise SessionError(f"corrupt header ({e})") from None
        if not isinstance(header, dict):
            raise SessionError("corrupt header")
        return header

    def load(self, entry: SavedState, identity: str) -> bytes:
        """The payload of `entry`, checked (length, CRC-32, identity, tokens) before anyone
        hands it to llama.cpp. A bad file is removed (SessionError says why)."""
        path = self._file(entry.key)
        try:
            with path.open("rb") as f:  # one open, one read of the header and the payload
                header = self._read_header(f)
                if header.get("identity") != identity:
                    raise SessionError("written for another model file, build or context setting")
                if list(header.get("tokens", [])) != entry.tokens:
                    raise SessionError("its tokens do not match the index")
                payload = f.read()
            if len(payload) != header.get("payload_bytes"):
                raise SessionError(f"truncated ({len(payload)} of {header.get('payload_bytes')} bytes)")
            if zlib.crc32(payload) != header.get("crc32"):
                raise SessionError("corrupt (checksum mismatch)")
        except (SessionError, OSError) as e:
            self.forget(entry.key, f"saved state of {entry.key!r} not used: {e}; processed from its text")
            raise SessionError(str(e)) from None
        with self._lock:
            entry.last_used = time.time()
        return payload

    # -- writing ----------------------------------------------------------------------
    def save(self, key: str, identity: str, tokens: list[int], payload: bytes,
             meta: dict[str, Any] | None = None, wait: bool = False) -> None:
        """Queue `payload` (the sequence's state holding `tokens`) to be written under
        `key`, replacing what was there; written by a background thread (`wait`: now)."""
        safe_key(key)
        now = time.time()
        entry = SavedState(key, identity, list(tokens), 0, now, now, dict(meta or {}))
        if wait:
            self._write(entry, payload)
            return
        with self._lock:
            if self._writer is None or not self._writer.is_alive():
                self._writer = threading.Thread(target=self._write_loop, name="mullama-kv-writer", daemon=True)
                self._writer.start()
        self._writes.put((entry, payload))

    def update_meta(self, key: str, meta: dict[str, Any]) -> None:
        """Change what the index says of `key` (not the state itself)."""
        with self._lock:
            e = self._entries.get(key)
            if e is not None:
                e.meta.update(meta)
                self._save_index()

    def _write_loop(self) -> None:
        while True:
            item = self._writes.get()
            try:
                if item is None:
                    return
                self._write(*item)
            finally:
                self._writes.task_done()

    def _write(self, entry: SavedState, payload: bytes) -> None:
        header = json.dumps({"key": entry.key, "identity": entry.identity, "tokens": entry.tokens,
                             "payload_bytes": len(payload), "crc32": zlib.crc32(payload),
                             "saved_at": entry.saved_at, "meta": entry.meta}).encode()
        path = self._file(entry.key)
        tmp = path.with_name(f".{entry.key}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tmp.open("wb") as f:
                f.write(MAGIC + VERSION.to_bytes(4, "little") + len(header).to_bytes(4, "little"))
                f.write(header)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(path)  # atomic: the old state or the new one, never half of one
        except OSError as e:  # a full disk, a read-only folder: the conversation still works
            self._drop_file(tmp, f"could not save the conversation's KV cache ({e.strerror or e}); "
                                 f"it is processed from its text")
            return
        with self._lock:
            entry.bytes = path.stat().st_size
            self._entries[entry.key] = entry
            self._evict(keep=entry.key)
            self._save_index()

    def _evict(self, keep: str) -> None:
        """Least recently used states out until the store fits its budget (never `keep`)."""
        for e in sorted(self._entries.values(), key=lambda e: e.last_used):
            if self.total_bytes <= self.budget_bytes:
                return
            if e.key == keep:
                continue
            self.forget(e.key)

    def forget(self, key: str, notice: str | None = None) -> bool:
        """Delete a saved state (True if there was one)."""
        with self._lock:
            had = self._entries.pop(key, None) is not None
            path = self._file(key)
            if notice:
                self._drop_file(path, notice)
            else:
                try:
                    path.unlink()
                    had = True
                except OSError:
                    pass
            self._save_index()
        return had

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until every queued save is on disk."""
        deadline = time.monotonic() + timeout
        while self._writes.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self, timeout: float = 30.0) -> None:
        """Finish the queued saves, then stop the writer."""
        self.flush(timeout)
        writer = self._writer
        if writer is not None and writer.is_alive():
            self._writes.put(None)
            writer.join(timeout)
