"""The only module that speaks ctypes to llama.cpp (through llama-cpp-python's low-level API).

It loads models, tokenizes, turns tokens into byte pieces, renders chat templates,
creates contexts and batches, and builds C sampler chains. The decode loop itself lives
in `scheduler.py`, which calls the small wrappers here.

llama.cpp objects are not thread-safe: a `LlamaModel` may be shared for read-only work
(tokenize, pieces, metadata), but each context belongs to one scheduler thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import llama_cpp as C
import numpy as np

from .text import MAGISTRAL_TAGS, THINK_TAGS, ReasoningTags
from .types import (
    Device,
    EngineClosedError,
    InvalidParamsError,
    ModelInfo,
    ModelLoadError,
    ModelNotFoundError,
    Placement,
    SamplerParams,
    is_whole,
    require_whole,
)

log = logging.getLogger("mullama_tui.llama")

GGUF_MAGIC = b"GGUF"

# ggml log levels -> Python logging levels (CONT continues the previous message).
_LEVELS = {1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_recent_errors: deque[str] = deque(maxlen=8)
_last_level = [logging.INFO]


@C.llama_log_callback  # type: ignore[untyped-decorator]  # a ctypes callback type
def _log_callback(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    """llama.cpp and ggml log here instead of stderr (which would corrupt a TUI)."""
    try:
        msg = text.decode("utf-8", errors="replace").rstrip("\n")
        py_level = _LEVELS.get(level, _last_level[0])
        _last_level[0] = py_level
        if not msg:
            return
        if py_level >= logging.WARNING:
            _recent_errors.append(msg)
        log.log(py_level, msg)
    except Exception:  # a callback must never raise into C
        pass


_backend_lock = threading.Lock()
_backend_ready = False


def init_backend() -> None:
    """Initialise llama.cpp once per process and route its logs to Python logging."""
    global _backend_ready
    with _backend_lock:
        if _backend_ready:
            return
        C.llama_log_set(_log_callback, ctypes.c_void_p(0))
        C.llama_backend_init()
        _backend_ready = True


def amx_kernels_allowed() -> bool:
    """Whether weights may go into llama.cpp's extra CPU buffer types on this build.

    A llama.cpp compiled on a CPU that advertises AMX (Sapphire Rapids and newer) puts
    quantized weights into AMX tile buffers. Some virtual machines advertise AMX, and
    the kernel grants the tile permission, but `ldtilecfg` still faults: the first
    decode is a segfault (seen on this project's CI machine, with llama-cpp-python's
    own `Llama` too). That cannot be probed safely in-process, so on AMX builds the
    weights stay in plain CPU buffers (`use_extra_bufts = False`) unless
    `MULLAMA_TUI_AMX=1` says the hardware is trusted. Builds without AMX keep the extra
    buffers, which repack Q4_0/Q4_K/IQ4_NL weights for faster AVX2 kernels.
    """
    if os.environ.get("MULLAMA_TUI_AMX") == "1":
        return True
    return b"AMX_INT8 = 1" not in C.llama_print_system_info()


def model_params(n_gpu_layers: int = 0) -> Any:
    """llama.cpp's default model parameters, made safe for this machine (see above)."""
    params = C.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    if not amx_kernels_allowed():
        params.use_extra_bufts = False
    return params


def supports_gpu_offload() -> bool:
    """Whether this llama.cpp build can put layers on a GPU at all."""
    return bool(C.llama_supports_gpu_offload())


def default_gpu_layers() -> int:
    """What `--gpu-layers` means when not given: every layer where the build can offload
    (as Ollama does without being asked), none on a CPU-only build."""
    return -1 if supports_gpu_offload() else 0


_DEVICE_KINDS = {0: "cpu", 1: "gpu", 2: "igpu", 3: "accel"}


def devices() -> list[Device]:
    """Every device of this build, CPU included (llama-cpp-python binds none of these
    ggml calls, so they are looked up in the loaded library)."""
    init_backend()
    from llama_cpp.llama_cpp import _lib as lib
    count = lib.ggml_backend_dev_count
    count.restype = ctypes.c_size_t
    get = lib.ggml_backend_dev_get
    get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    name = lib.ggml_backend_dev_name
    name.restype, name.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    desc = lib.ggml_backend_dev_description
    desc.restype, desc.argtypes = ctypes.c_char_p, [ctypes.c_void_p]
    kind = lib.ggml_backend_dev_type
    kind.restype, kind.argtypes = ctypes.c_int, [ctypes.c_void_p]
    memory = lib.ggml_backend_dev_memory
    memory.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)]
    out = []
    for i in range(count()):
        dev = get(i)
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        memory(dev, ctypes.byref(free), ctypes.byref(total))
        out.append(Device((name(dev) or b"?").decode(errors="replace"), (desc(dev) or b"").decode(errors="replace"),
                          _DEVICE_KINDS.get(kind(dev), "other"), free.value, total.value))
    return out


def system_report() -> list[tuple[str, str]]:
    """What `show --system` prints: the llama.cpp build and the devices it can use."""
    init_backend()
    info = C.llama_print_system_info().decode(errors="replace").strip(" |")
    rows = [("llama-cpp-python", getattr(C, "__version__", "?")),
            ("llama.cpp build", info),
            ("GPU offload", "yes" if supports_gpu_offload() else "no (a CPU-only build: see the README to "
                                                               "install a CUDA, Metal, Vulkan or ROCm one)")]
    for d in devices():
        mem = f", {d.memory_free / 2**30:.1f} of {d.memory_total / 2**30:.1f} GiB free" if d.memory_total else ""
        rows.append((f"device ({d.kind})", f"{d.label}{mem}"))
    rows.append(("default --gpu-layers", f"{default_gpu_layers()} ({'all' if default_gpu_layers() < 0 else 'none'})"))
    return rows


def check_gguf_file(path: str | os.PathLike[str]) -> Path:
    """Fail early and clearly on paths llama.cpp would reject (or crash on)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFoundError(f"model file not found: {p}")
    if p.is_dir():
        raise ModelLoadError(f"{p} is a directory, not a .gguf model file")
    try:
        with p.open("rb") as f:
            magic = f.read(4)
    except OSError as e:
        raise ModelLoadError(f"cannot read {p}: {e.strerror or e}") from e
    if magic != GGUF_MAGIC:
        raise ModelLoadError(f"{p} is not a GGUF file (it does not start with the GGUF magic bytes)")
    return p


class LlamaModel:
    """A loaded GGUF model: weights, vocabulary and chat template."""

    def __init__(self, path: str | os.PathLike[str], n_gpu_layers: int | None = None,
                 on_progress: Callable[[float], None] | None = None) -> None:
        """`n_gpu_layers`: layers to offload to a GPU (-1 all, None: `default_gpu_layers()`).
        `on_progress(fraction)` is called from this thread while the weights load."""
        p = check_gguf_file(path)
        init_backend()
        if n_gpu_layers is None:
            n_gpu_layers = default_gpu_layers()
        if not is_whole(n_gpu_layers, -1):
            raise InvalidParamsError(f"--gpu-layers {n_gpu_layers!r}: give a number of layers, or -1 for all")
        params = model_params(n_gpu_layers)
        if on_progress is not None:
            def report(fraction: float, _user: object) -> bool:
                try:
                    on_progress(fraction)
                except Exception:  # noqa: BLE001 - an exception must not cross into C
                    pass
                return True

            # kept in a local for the whole (synchronous) load: ctypes must not free it early
            callback = C.llama_progress_callback(report)
            params.progress_callback = callback
        _recent_errors.clear()
        ptr = C.llama_model_load_from_file(str(p).encode(), params)
        if not ptr:
            detail = "; ".join(_recent_errors) or "llama.cpp could not load it"
            if n_gpu_layers != 0 and supports_gpu_offload():
                detail += (f" (with --gpu-layers {n_gpu_layers}: if it does not fit in GPU memory, offload "
                           f"fewer layers, e.g. --gpu-layers 10, or none with --gpu-layers 0)")
            raise ModelLoadError(f"cannot load {p}: {detail}")
        self.path = p
        self.ptr = ptr
        self.n_gpu_layers = n_gpu_layers
        n_layers = C.llama_model_n_layer(ptr) + 1  # llama.cpp counts the output layer too
        offloaded = 0
        if supports_gpu_offload():
            offloaded = n_layers if n_gpu_layers < 0 else min(n_gpu_layers, n_layers)
        gpus = [d for d in devices() if d.kind in ("gpu", "igpu")]
        self.placement = Placement(offloaded if gpus else 0, n_layers, gpus[0].label if gpus else None)
        self.vocab = C.llama_model_get_vocab(ptr)
        self.n_vocab = C.llama_vocab_n_tokens(self.vocab)
        self.n_ctx_train = C.llama_model_n_ctx_train(ptr)
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        self._piece_buf = ctypes.create_string_buffer(256)
        self._piece_lock = threading.Lock()
        self.add_bos = bool(C.llama_vocab_get_add_bos(self.vocab))
        self.bos_token = self.token_text(C.llama_vocab_bos(self.vocab))
        self.eos_token = self.token_text(C.llama_vocab_eos(self.vocab))
        self.chat_template = self.meta("tokenizer.chat_template")
        self._template: Any = None
        self._identity: str | None = None

    @property
    def identity(self) -> str:
        """What a saved KV state must have been made with to be valid here: this file (its
        size, modification time and first MiB), its shape and this llama.cpp build. A
        state from anything else is never handed to llama.cpp (see `session.py`)."""
        if self._identity is None:
            import hashlib
            import json

            st = self.path.stat()
            h = hashlib.sha256()
            with self.path.open("rb") as f:
                h.update(f.read(1 << 20))
            build = C.llama_print_system_info().decode(errors="replace")
            h.update(json.dumps([st.st_size, st.st_mtime_ns, self.n_vocab, self.placement.n_layers,
                                 C.llama_model_n_params(self.ptr), C.llama_model_n_embd(self.ptr),
                                 getattr(C, "__version__", "?"), build]).encode())
            self._identity = h.hexdigest()[:32]
        return self._identity

    # -- metadata ---------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        """A GGUF metadata value as a string, or None."""
        size = 1 << 16
        while True:
            buf = ctypes.create_string_buffer(size)
            n = C.llama_model_meta_val_str(self.ptr, key.encode(), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.value.decode("utf-8", errors="replace")
            size = n + 1

    @property
    def info(self) -> ModelInfo:
        desc = ctypes.create_string_buffer(256)
        C.llama_model_desc(self.ptr, desc, 256)
        return ModelInfo(
            path=str(self.path),
            name=self.meta("general.name") or self.path.stem,
            description=desc.value.decode(errors="replace"),
            size_bytes=C.llama_model_size(self.ptr),
            file_bytes=self.path.stat().st_size,
            n_params=C.llama_model_n_params(self.ptr),
            n_ctx_train=self.n_ctx_train,
            n_vocab=self.n_vocab,
            has_chat_template=self.chat_template is not None,
        )

    # -- tokens -----------------------------------------------------------------
    def _check_open(self) -> None:
        """A closed model's vocabulary is freed memory: llama.cpp would crash on it."""
        if not self.ptr:
            raise EngineClosedError(f"the model {self.path.name} is closed")

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        self._check_open()
        data = text.encode("utf-8")
        cap = len(data) + 16
        arr = (C.llama_token * cap)()
        n = C.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, parse_special)
        if n < 0:
            cap = -n
            arr = (C.llama_token * cap)()
            n = C.llama_tokenize(self.vocab, data, len(data), arr, cap, add_special, parse_special)
        return list(arr[:n])

    def piece(self, token: int) -> bytes:
        """The bytes a token stands for (cached: this is on the per-token path)."""
        p = self._pieces.get(token)
        if p is None:
            with self._piece_lock:
                n = C.llama_token_to_piece(self.vocab, token, self._piece_buf, 256, 0, False)
                if n < 0:
                    big = ctypes.create_string_buffer(-n)
                    n = C.llama_token_to_piece(self.vocab, token, big, -n, 0, False)
                    p = big.raw[:n]
                else:
                    p = self._piece_buf.raw[:n]
            self._pieces[token] = p
        return p

    def token_text(self, token: int) -> str:
        """A token's text with special tokens rendered (for bos/eos in chat templates)."""
        if token < 0:
            return ""
        buf = ctypes.create_string_buffer(256)
        n = C.llama_token_to_piece(self.vocab, token, buf, 256, 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", errors="replace")

    def detokenize(self, tokens: list[int]) -> str:
        self._check_open()
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", errors="replace")

    def is_eog(self, token: int) -> bool:
        e = self._eog.get(token)
        if e is None:
            e = self._eog[token] = bool(C.llama_vocab_is_eog(self.vocab, token))
        return e

    # -- prompts ----------------------------------------------------------------
    @property
    def reasoning_tags(self) -> ReasoningTags | None:
        """How this model marks its thinking, from its chat template and vocabulary: `<think>`
        (Qwen3, DeepSeek-R1, SmolLM3, Phi-4-reasoning) or `[THINK]` (Magistral); None for
        models that do not think."""
        template = self.chat_template or ""
        for tags in (THINK_TAGS, MAGISTRAL_TAGS):
            if tags.open in template or tags.close in template or self._is_one_token(tags.close):
                return tags
        return None

    def _is_one_token(self, text: str) -> bool:
        """A special token of the vocabulary (how thinking models carry their tags)."""
        toks = self.tokenize(text, add_special=False, parse_special=True)
        return len(toks) == 1 and self.token_text(toks[0]) == text and self.piece(toks[0]) != text.encode()

    def template_takes(self, name: str) -> bool:
        """Whether the chat template reads this variable (Qwen3's `enable_thinking`)."""
        return name in (self.chat_template or "")

    def render_chat(self, messages: list[dict[str, str]], **variables: Any) -> str:
        """Render a transcript with the GGUF's own Jinja2 chat template (as llama-cpp-python
        does); models without one get ChatML, as llama.cpp falls back to. `variables` go to
        the template too (`enable_thinking=False`)."""
        if self._template is None:
            import jinja2
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            def raise_exception(message: str) -> None:
                raise jinja2.TemplateError(message)

            def strftime_now(fmt: str) -> str:
                import datetime
                return datetime.datetime.now().strftime(fmt)

            env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), trim_blocks=True,
                                                lstrip_blocks=True)
            src = self.chat_template or CHATML_TEMPLATE
            self._template = env.from_string(src)
            self._template.globals.update(raise_exception=raise_exception, strftime_now=strftime_now)
        return str(self._template.render(messages=messages, add_generation_prompt=True,
                                         bos_token=self.bos_token, eos_token=self.eos_token, **variables))

    def prompt_tokens(self, text: str, chat: bool) -> list[int]:
        """Tokens for a raw prompt or a rendered chat transcript (no doubled BOS)."""
        add_bos = self.add_bos and not (chat and self.bos_token and text.startswith(self.bos_token))
        toks = self.tokenize(text, add_special=False, parse_special=True)
        if add_bos:
            bos = C.llama_vocab_bos(self.vocab)
            if bos >= 0 and (not toks or toks[0] != bos):
                toks.insert(0, bos)
        return toks

    def close(self) -> None:
        if self.ptr:
            C.llama_model_free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass


CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class Batch:
    """A reusable llama_batch of `capacity` tokens, one sequence each.

    `add` is on the hot path. It refuses a full batch (llama.cpp's own server does the
    same): the C arrays have no bound of their own, and writing past them corrupts memory.
    """

    def __init__(self, capacity: int, n_seq_max: int) -> None:
        if capacity < 1:
            raise InvalidParamsError(f"n_batch={capacity}: must be at least 1")
        self.capacity = capacity
        self.raw = C.llama_batch_init(capacity, 0, n_seq_max)
        self._token = self.raw.token
        self._pos = self.raw.pos
        self._n_seq_id = self.raw.n_seq_id
        self._seq_id = self.raw.seq_id
        self._logits = self.raw.logits
        self.n = 0

    def clear(self) -> None:
        self.n = 0

    @property
    def room(self) -> int:
        return self.capacity - self.n

    def add(self, token: int, pos: int, seq: int, logits: bool) -> int:
        """Append one token; returns its index in the batch (where its logits will be)."""
        i = self.n
        if i >= self.capacity:
            raise OverflowError(f"the batch is full ({self.capacity} tokens)")
        self._token[i] = token
        self._pos[i] = pos
        self._n_seq_id[i] = 1
        self._seq_id[i][0] = seq
        self._logits[i] = logits
        self.n = i + 1
        return i

    def free(self) -> None:
        if self.raw is not None:
            C.llama_batch_free(self.raw)
            self.raw = None


class Memory:
    """The context's KV cache, by sequence."""

    def __init__(self, ctx: Any) -> None:
        self.mem = C.llama_get_memory(ctx)

    def remove(self, seq: int, p0: int = -1, p1: int = -1) -> bool:
        return bool(C.llama_memory_seq_rm(self.mem, seq, p0, p1))

    def n_tokens(self, seq: int) -> int:
        """Positions sequence `seq` holds (its largest position + 1; 0 when empty)."""
        return int(C.llama_memory_seq_pos_max(self.mem, seq)) + 1

    def copy_prefix(self, src: int, dst: int, n: int) -> None:
        """Make `dst` hold the first `n` positions of `src`. Between KV streams llama.cpp
        can only copy a whole stream (a partial range aborts the process), so copy it
        all, then trim the tail off the copy."""
        C.llama_memory_seq_rm(self.mem, dst, -1, -1)
        C.llama_memory_seq_cp(self.mem, src, dst, -1, -1)
        C.llama_memory_seq_rm(self.mem, dst, n, -1)


class LlamaContext:
    """One llama_context and what belongs to it: its batch, its KV memory and its abort
    flag, created together and freed together by one idempotent `close()`.

    A context is not thread-safe: one thread owns it (the scheduler's). Its parameters
    are checked here, before any C call, because llama.cpp trusts them: a batch smaller
    than the number of sequences that generate together would be written past its end.

    The KV cache is split into one stream per sequence (`kv_unified=False`) on purpose:
    measured here, with a unified cache a sequence's logits depend on where its cells
    sit among other sequences' cells, so a batched compare pane did not reproduce `run`
    with the same seed (`batch_invariance(kv_unified=True)` shows it); with one stream
    each, every sequence sees exactly the layout of a single run, and attention skips
    other sequences' cells entirely.

    Flash attention is off unless asked for: llama.cpp's default (AUTO) turns on its CPU
    flash-attention kernel, which measured here much slower for one-token decode steps
    (bundled model, 2 threads, plain loop: 75 vs 88 tok/s over 256 tokens, 42 vs 68
    tok/s averaged over 2000, the gap growing with the context). It pays off on GPUs.
    """

    def __init__(self, model: LlamaModel, n_ctx: int, n_seq_max: int = 1, n_batch: int = 512,
                 n_threads: int = 1, kv_unified: bool = False, flash_attn: bool = False) -> None:
        for name, value, least in (("n_ctx", n_ctx, 16), ("n_seq_max", n_seq_max, 1), ("n_batch", n_batch, 1),
                                   ("n_threads", n_threads, 1)):
            require_whole(name, value, least)
        if n_batch < n_seq_max:
            raise InvalidParamsError(f"n_batch={n_batch} is smaller than the {n_seq_max} sequences that may "
                                     f"generate together (each needs a place in every batch)")
        self.model = model
        self.n_ctx, self.n_seq_max, self.n_batch = n_ctx, n_seq_max, n_batch
        params = C.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq_max
        params.n_threads = n_threads
        params.n_threads_batch = n_threads
        params.kv_unified = kv_unified
        params.flash_attn_type = (C.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash_attn
                                  else C.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        params.no_perf = True
        _recent_errors.clear()
        self.ptr = C.llama_init_from_model(model.ptr, params)
        if not self.ptr:
            detail = "; ".join(_recent_errors) or "llama.cpp refused the context parameters"
            raise ModelLoadError(f"cannot create a context of {n_ctx} tokens: {detail}")
        self.memory = Memory(self.ptr)
        self.batch = Batch(n_batch, n_seq_max)
        self.abort = AbortFlag(self.ptr)

    def seq_state(self, seq: int) -> bytes:
        """The KV state of sequence `seq` (what `set_seq_state` takes back)."""
        size = C.llama_state_seq_get_size(self.ptr, seq)
        buf = (ctypes.c_uint8 * size)()
        n = C.llama_state_seq_get_data(self.ptr, buf, size, seq)
        return bytes(memoryview(buf)[:n])

    def set_seq_state(self, seq: int, data: bytes) -> bool:
        """Load a state from `seq_state` into sequence `seq` (emptied first); False if
        llama.cpp refused it (the sequence is left empty)."""
        C.llama_memory_seq_rm(self.memory.mem, seq, -1, -1)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if C.llama_state_seq_set_data(self.ptr, buf, len(data), seq) == 0:
            C.llama_memory_seq_rm(self.memory.mem, seq, -1, -1)
            return False
        return True

    def set_threads(self, n_threads: int, n_threads_batch: int | None = None) -> None:
        """The CPU threads the next decodes run on (one-token and many-token batches);
        takes effect at the next `decode`, the context and its KV stay as they are."""
        C.llama_set_n_threads(self.ptr, n_threads, n_threads_batch or n_threads)

    def decode(self) -> int:
        """One llama_decode over the batch. 0 ok, 1 no KV room, 2 aborted, <0 error."""
        batch = self.batch
        batch.raw.n_tokens = batch.n
        return int(C.llama_decode(self.ptr, batch.raw))

    def logits(self, idx: int) -> Any:
        """A numpy view (no copy) of the logits at batch index `idx` after the last decode;
        valid until the next decode."""
        address = ctypes.cast(C.llama_get_logits_ith(self.ptr, idx), ctypes.c_void_p).value
        return np.frombuffer((ctypes.c_float * self.model.n_vocab).from_address(address), dtype=np.float32)

    def close(self) -> None:
        if self.ptr:
            self.batch.free()
            C.llama_free(self.ptr)
            self.ptr = None

    def __enter__(self) -> LlamaContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def json_grammar(schema: dict[str, Any] | None = None) -> str:
    """A GBNF grammar for JSON text: any JSON object (OpenAI's `json_object`), or text that
    matches a JSON schema (`json_schema`), with llama-cpp-python's converter."""
    import json

    from llama_cpp import llama_grammar

    if schema is None:
        return str(llama_grammar.JSON_GBNF)
    try:
        return str(llama_grammar.json_schema_to_gbnf(json.dumps(schema)))
    except Exception as e:  # the converter raises whatever it meets
        raise InvalidParamsError(f"cannot turn this JSON schema into a grammar: {e}") from None


def constraint_samplers(model: LlamaModel, params: SamplerParams) -> list[tuple[str, Any]]:
    """The stages that come before any cut, named as the token view names them: logit
    biases, the repetition penalties, then the grammar (which sets every token it does
    not allow to -inf). Each is a new C sampler the caller owns."""
    out: list[tuple[str, Any]] = []
    if params.logit_bias:
        biases = [(t, b) for t, b in params.logit_bias.items() if t < model.n_vocab]
        if len(biases) != len(params.logit_bias):
            raise InvalidParamsError(f"logit_bias: a token id is beyond the vocabulary ({model.n_vocab})")
        arr = (C.llama_logit_bias * len(biases))(*[C.llama_logit_bias(t, b) for t, b in biases])
        out.append(("logit-bias", C.llama_sampler_init_logit_bias(model.n_vocab, len(biases), arr)))
    if params.penalty_repeat != 1.0 or params.penalty_freq or params.penalty_present:
        out.append(("penalties", C.llama_sampler_init_penalties(model.n_vocab, params.penalty_last_n,
                                                                params.penalty_repeat, params.penalty_freq,
                                                                params.penalty_present)))
    if params.grammar:
        _recent_errors.clear()
        grammar = C.llama_sampler_init_grammar(model.vocab, params.grammar.encode("utf-8"), b"root")
        if not grammar:
            for _, stage in out:
                C.llama_sampler_free(stage)
            detail = "; ".join(_recent_errors) or "llama.cpp could not parse it"
            raise InvalidParamsError(f"the grammar is not valid GBNF: {detail}")
        out.append(("grammar", grammar))
    return out


def free_sampler(sampler: Any) -> None:
    C.llama_sampler_free(sampler)


class SamplerChain:
    """llama.cpp's C sampler chain for one sequence: penalties, top-k, typical, top-p,
    min-p, temperature, then a seeded draw (or greedy when temperature is 0).

    Sampled on the host by default: `llama_sampler_sample` copies the sequence's logits
    into a candidate array and runs the chain over it (about 0.25 ms a token for a
    49k vocabulary on one core here, 0.57 ms for Llama 3's 128k). `attach` instead runs the
    same chain inside llama.cpp's compute graph (backend sampling): the token comes back
    with the decode, and on a GPU the logits never leave it. Measured here, both give the
    same tokens for a seed; on a CPU the graph's sampling costs the compute threads about
    what the host saved (`bench --overhead` shows both), so the engine attaches only where
    the output layer runs on a GPU.
    """

    def __init__(self, model: LlamaModel, params: SamplerParams, seed: int) -> None:
        cp = C.llama_sampler_chain_default_params()
        cp.no_perf = True
        self.ptr = C.llama_sampler_chain_init(cp)
        self._attached: tuple[LlamaContext, int] | None = None

        def add(stage: Any) -> None:
            C.llama_sampler_chain_add(self.ptr, stage)

        for _, stage in constraint_samplers(model, params):
            add(stage)
        if params.is_greedy:
            add(C.llama_sampler_init_greedy())
            return
        if params.top_k > 0:
            add(C.llama_sampler_init_top_k(params.top_k))
        if params.typical_p < 1.0:
            add(C.llama_sampler_init_typical(params.typical_p, 1))
        if params.top_p < 1.0:
            add(C.llama_sampler_init_top_p(params.top_p, 1))
        if params.min_p > 0:
            add(C.llama_sampler_init_min_p(params.min_p, 1))
        add(C.llama_sampler_init_temp(params.temperature))
        add(C.llama_sampler_init_dist(seed))

    def sample(self, ctx: LlamaContext, idx: int) -> int:
        """Sample (and accept) the next token from the logits at batch index `idx` (or
        take the token the graph sampled, when attached)."""
        return int(C.llama_sampler_sample(self.ptr, ctx.ptr, idx))

    def accept(self, token: int) -> None:
        """Count a token that was not sampled here (a branch's reply so far) in the history
        the penalties look at."""
        C.llama_sampler_accept(self.ptr, token)

    @property
    def attached(self) -> bool:
        return self._attached is not None

    def attach(self, ctx: LlamaContext, seq: int) -> bool:
        """Sample sequence `seq` inside llama.cpp's graph from now on (backend sampling);
        False if this chain cannot run there (then `sample` stays on the host)."""
        if C.llama_set_sampler(ctx.ptr, seq, self.ptr):
            self._attached = (ctx, seq)
            return True
        return False

    def detach(self) -> None:
        if self._attached is not None:
            ctx, seq = self._attached
            if ctx.ptr:
                C.llama_set_sampler(ctx.ptr, seq, None)
            self._attached = None

    def free(self) -> None:
        self.detach()
        if self.ptr:
            C.llama_sampler_free(self.ptr)
            self.ptr = None


def batch_invariance(model: LlamaModel, n_threads: int, steps: int = 8, kv_unified: bool = False) -> float:
    """How far a sequence decoded in a batch drifts from the same sequence decoded alone:
    the largest absolute difference of its logits over `steps` greedy steps, in the two
    shapes the scheduler makes: three sequences generating together (compare panes), and
    one generating beside other sequences' prompt chunks of 1 to 64 tokens (a server
    client arriving while another streams).

    0.0 means this machine's kernels give bit-identical results whatever the batch, so a
    compare pane or a concurrent server client reproduces `run` with the same seed
    exactly. Not every machine does: on some CPUs and on GPUs, kernels for several rows
    round differently from the one-row path, and a sampled token can flip where two
    candidates are nearly tied. The tests and `show --system` ask. `kv_unified=True`
    measures the layout the engine avoids (see `LlamaContext`)."""
    prompt = model.prompt_tokens("Once upon a time, in a small village by the sea, there lived", chat=False)
    other = model.prompt_tokens("The history of the printing press begins in the fifteenth century", chat=False)

    def run(n_seq: int, beside: int) -> list[Any]:
        """Sequence 0's logits per step, with `n_seq - 1` copies of it generating in the
        same batch, or `beside` prompt tokens of another sequence in each step's batch."""
        n_seq = max(n_seq, 2 if beside else 1)
        with LlamaContext(model, 512 * n_seq, n_seq, 256, n_threads, kv_unified=kv_unified) as ctx:
            batch = ctx.batch
            copies = 1 if beside else n_seq
            for s in range(copies):
                for i, t in enumerate(prompt):
                    batch.add(t, i, s, i == len(prompt) - 1)
            rows, idx, filler = [], (copies - 1) * len(prompt) + len(prompt) - 1, 0
            for step in range(steps):
                if ctx.decode() != 0:
                    raise ModelLoadError("the batch-invariance probe could not decode")
                rows.append(ctx.logits(idx).copy())
                token = int(np.argmax(rows[-1]))
                batch.clear()
                idx = batch.add(token, len(prompt) + step, 0, True)
                for s in range(1, copies):
                    batch.add(token, len(prompt) + step, s, True)
                for _ in range(beside):
                    batch.add(other[filler % len(other)], filler, 1, False)
                    filler += 1
            return rows

    alone = run(1, 0)
    drift = 0.0
    for n_seq, beside in ((3, 0), (2, 3), (2, 16), (2, 64)):
        drift = max(drift, max(float(np.max(np.abs(a - b))) for a, b in zip(alone, run(n_seq, beside))))
    return drift


QUANT_TYPES = {"Q8_0": C.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_0": C.LLAMA_FTYPE_MOSTLY_Q4_0,
               "Q4_1": C.LLAMA_FTYPE_MOSTLY_Q4_1, "Q5_0": C.LLAMA_FTYPE_MOSTLY_Q5_0,
               "Q4_K_M": C.LLAMA_FTYPE_MOSTLY_Q4_K_M, "Q6_K": C.LLAMA_FTYPE_MOSTLY_Q6_K}


def quantize(src: str | os.PathLike[str], dst: str | os.PathLike[str], kind: str = "Q8_0",
             n_threads: int = 0) -> Path:
    """Write `src` quantized as `kind` to `dst` with llama.cpp's own quantizer (from an
    already quantized file too: a second quantization of one model, e.g. for the arena's
    agreement figures). Raises InvalidParamsError for an unknown kind, ModelLoadError if
    llama.cpp fails."""
    if kind not in QUANT_TYPES:
        raise InvalidParamsError(f"quantization {kind!r}: one of {', '.join(QUANT_TYPES)}")
    check_gguf_file(src)
    init_backend()
    params = C.llama_model_quantize_default_params()
    params.ftype = QUANT_TYPES[kind]
    params.allow_requantize = True
    params.nthread = n_threads
    _recent_errors.clear()
    rc = C.llama_model_quantize(os.fsencode(str(src)), os.fsencode(str(dst)), ctypes.byref(params))
    if rc != 0:
        raise ModelLoadError(f"llama.cpp could not quantize {src} to {kind}: {'; '.join(_recent_errors) or rc}")
    return Path(dst)


class AbortFlag:
    """A flag that llama.cpp polls between graph nodes, with no Python on that path.

    ggml calls `bool abort(void *data)` from its compute thread. A Python callback there
    would need the GIL at every node, and with a busy UI thread holding the GIL, prompt
    processing measured 2-5x slower. Instead the callback is libc's `strlen` on a 2-byte
    buffer: "" (length 0, false) means go on, "x" (length 1, true) means abort. Same
    calling convention (one pointer in, an integer whose low byte is the bool out); it
    never reads past the buffer, which lives as long as this object.
    """

    def __init__(self, ctx: Any) -> None:
        libc = ctypes.CDLL(None)
        self._buf = ctypes.create_string_buffer(2)
        self._callback = C.ggml_abort_callback(ctypes.cast(libc.strlen, ctypes.c_void_p).value)
        C.llama_set_abort_callback(ctx, self._callback, ctypes.cast(self._buf, ctypes.c_void_p))

    def set(self) -> None:
        self._buf[0] = b"x"

    def clear(self) -> None:
        self._buf[0] = b"\0"
