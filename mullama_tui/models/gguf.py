"""Read a GGUF file's header (metadata and tensor shapes) in pure Python.

`models`, `show` and the TUI's model picker describe files without loading them into
llama.cpp: reading the header takes milliseconds and no memory, where loading a model
takes seconds and its whole size. The file is memory-mapped and only the header pages
are touched (large arrays such as the vocabulary are skipped, not decoded).
"""

from __future__ import annotations

import json
import mmap
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..engine.errors import ModelLoadError, ModelNotFoundError

MAGIC = b"GGUF"


def is_gguf(path: str | Path) -> bool:
    """The file starts as a GGUF does (False too when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False

# llama.cpp's `llama_ftype` (general.file_type): the quantization a file was made with.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS",
    23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S",
    29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}

# value type -> struct format, for the fixed-size scalar types
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF says about itself."""

    path: str
    file_bytes: int
    version: int
    name: str
    architecture: str
    quantization: str
    n_params: int
    context_length: int
    has_chat_template: bool
    size_label: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def params_label(self) -> str:
        """"135M", "1.2B": the parameter count as people say it."""
        n = self.n_params
        if n <= 0:
            return self.size_label or "?"
        if n >= 1e9:
            return f"{n / 1e9:.1f}B"
        return f"{n / 1e6:.0f}M"


_U64 = struct.Struct("<Q")


class _Reader:
    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def _take(self, n: int) -> memoryview | bytes:
        end = self.pos + n
        if n < 0 or end > len(self.buf):
            raise ModelLoadError(f"{self.path} is truncated or corrupt (its GGUF header ends early)")
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def scalar(self, kind: int) -> Any:
        fmt = _SCALARS[kind]
        return struct.unpack(fmt, self._take(struct.calcsize(fmt)))[0]

    def u32(self) -> int:
        return int(self.scalar(4))

    def u64(self) -> int:
        return int(self.scalar(10))

    def string(self) -> str:
        return bytes(self._take(self.u64())).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        n = self.u64()
        self.pos += n  # a length past the end is caught by the next read

    def skip_strings(self, count: int) -> None:
        """Step over `count` strings (a vocabulary: 50k-250k of them) without reading them:
        one length read in place each, no slices (this loop is most of `models`' time)."""
        buf, pos, end, length = self.buf, self.pos, len(self.buf), _U64.unpack_from
        for _ in range(count):
            if pos + 8 > end:  # a length cut off: the file ends inside the array
                pos = end + 1
                break
            pos += 8 + length(buf, pos)[0]
        if pos > end:
            raise ModelLoadError(f"{self.path} is truncated or corrupt (its GGUF header ends early)")
        self.pos = pos

    def value(self, kind: int) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.u32(), self.u64()
            if item == _STRING:
                self.skip_strings(count)
                return None
            if item in _SCALARS:
                self._take(count * struct.calcsize(_SCALARS[item]))
                return None
            return [self.value(item) for _ in range(count)]
        if kind in _SCALARS:
            return self.scalar(kind)
        raise ModelLoadError(f"{self.path}: unknown GGUF value type {kind} (corrupt header?)")


def read_gguf(path: str | Path) -> GGUFInfo:
    """The header of a GGUF file; typed errors for a missing, non-GGUF or truncated file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFoundError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelLoadError(f"{p} is a directory, not a .gguf model file")
    try:
        with p.open("rb") as f:
            size = p.stat().st_size
            if size < 24:
                raise ModelLoadError(f"{p} is not a GGUF file (too small)")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(_Reader(buf, p), p, size)
    except OSError as e:
        raise ModelLoadError(f"cannot read {p}: {e.strerror or e}") from e


def _parse(r: _Reader, p: Path, size: int) -> GGUFInfo:
    if bytes(r._take(4)) != MAGIC:
        raise ModelLoadError(f"{p} is not a GGUF file (it does not start with the GGUF magic bytes)")
    version = r.u32()
    if version < 2:
        raise ModelLoadError(f"{p}: GGUF version {version} is too old (llama.cpp reads 2 and 3)")
    n_tensors, n_kv = r.u64(), r.u64()
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = r.string()
        meta[key] = r.value(r.u32())
    n_params = 0
    for _ in range(n_tensors):
        r.skip_string()
        dims = [r.u64() for _ in range(r.u32())]
        r.u32(), r.u64()  # type, offset
        r._take(0)
        count = 1
        for d in dims:
            count *= d
        n_params += count
    arch = str(meta.get("general.architecture") or "?")
    ftype = meta.get("general.file_type")
    return GGUFInfo(
        path=str(p), file_bytes=size, version=version,
        name=str(meta.get("general.name") or p.stem), architecture=arch,
        quantization=FILE_TYPES.get(ftype, f"type {ftype}") if ftype is not None else "?",
        n_params=n_params, context_length=int(meta.get(f"{arch}.context_length") or 0),
        has_chat_template=bool(meta.get("tokenizer.chat_template")),
        size_label=str(meta.get("general.size_label") or ""),
    )


class HeaderCache:
    """GGUF headers read before, by file, kept while the file's size and modification
    time stay the same: `models` and `show` read each header once, not on every run (a
    header with a 150k-token vocabulary takes tens of milliseconds to step over). Best
    effort: a cache that cannot be read or written is simply not used."""

    VERSION = 1

    def __init__(self, path: Path) -> None:
        self.path = path
        self._changed = False
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._rows: dict[str, dict[str, Any]] = data["files"] if data.get("version") == self.VERSION else {}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._rows = {}

    @staticmethod
    def _stamp(p: Path) -> list[int]:
        st = p.stat()
        return [st.st_size, st.st_mtime_ns]

    def read(self, path: str | Path) -> GGUFInfo:
        """The header of `path`: from the cache if the file is unchanged, else read (and kept)."""
        p = Path(path).expanduser()
        key = str(p.resolve()) if p.exists() else str(p)
        row = self._rows.get(key)
        try:
            stamp = self._stamp(p)
        except OSError:
            return read_gguf(p)  # missing or unreadable: the reader says why
        if isinstance(row, dict) and row.get("stamp") == stamp:
            try:
                return GGUFInfo(**row["info"])
            except (TypeError, KeyError):
                pass
        info = read_gguf(p)
        self._rows[key] = {"stamp": stamp, "info": info.to_dict()}
        self._changed = True
        return info

    def save(self) -> None:
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"version": self.VERSION, "files": self._rows}), encoding="utf-8")
            tmp.replace(self.path)
            self._changed = False
        except OSError:
            pass
