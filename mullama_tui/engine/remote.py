"""The remote backend: an OpenAI-compatible server (llama.cpp's llama-server, vLLM, Ollama,
or `mullama-tui serve` on a bigger box) behind the same interface as `LocalEngine`.

`submit()` returns the same `Generation` handle; a thread per request streams
`/v1/chat/completions` (chat mode) or `/v1/completions` (raw mode) and turns SSE chunks
into the same token events and stats as the local engine, measured on the client.
Cancelling closes the HTTP response at once. Every failure (refused, unresolvable host,
no first byte in time, 401/403, 404, 429/503 after one retry honouring Retry-After, 5xx,
a malformed chunk, a stream that ends without `[DONE]`) ends the generation with finish
reason `error` and one clear sentence; text already received is kept.
"""

from __future__ import annotations

import codecs
import json
import math
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from .generation import DEFAULT_CAPACITY, Generation
from .text import THINK_TAGS, ReasoningSplitter
from .types import (
    Candidate,
    FinishReason,
    InvalidParamsError,
    ModelInfo,
    MullamaError,
    Request,
    Stats,
    TokenEvent,
    TokenInsight,
)

MAX_RETRY_AFTER = 30.0  # seconds we are willing to wait once for a 429/503


class RemoteError(MullamaError):
    """The remote server could not be used (connection, HTTP status, broken stream)."""


class SSEParser:
    """Incremental Server-Sent Events parser: feed bytes as they arrive, get whole events.

    Handles events split across network chunks, several events in one chunk, CRLF or LF
    line ends, comment lines (`: keep-alive`), `event:`/`id:` fields and multi-line data.
    """

    def __init__(self) -> None:
        self._buf = ""
        self._data: list[str] = []
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def feed(self, chunk: bytes) -> Iterator[str]:
        self._buf += self._decoder.decode(chunk)
        while True:
            nl = self._buf.find("\n")
            if nl == -1:
                return
            line, self._buf = self._buf[:nl].rstrip("\r"), self._buf[nl + 1:]
            if line == "":
                if self._data:
                    yield "\n".join(self._data)
                    self._data = []
            elif line.startswith(":"):
                continue
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)
            # other fields (event:, id:, retry:) carry nothing we use

    def close(self) -> Iterator[str]:
        """End of stream: an event not followed by a blank line still counts."""
        rest = self._buf.rstrip("\r\n")
        if rest.startswith("data:"):
            value = rest[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        self._buf = ""
        if self._data:
            yield "\n".join(self._data)
            self._data = []


@dataclass
class RemoteModel:
    """What the UI shows about a remote model."""

    name: str
    base_url: str

    @property
    def info(self) -> ModelInfo:
        return ModelInfo(path=self.base_url, name=self.name, description=f"remote at {self.base_url}",
                         size_bytes=0, file_bytes=0, n_params=0, n_ctx_train=0, n_vocab=0,
                         has_chat_template=True)

    @property
    def placement(self) -> None:
        """Where the layers run is the server's business."""
        return None


class RemoteEngine:
    """Same interface as LocalEngine: `submit(Request) -> Generation`, `close()`."""

    def __init__(self, base_url: str, *, api_key: str | None = None, model: str | None = None,
                 connect_timeout: float = 10.0, first_byte_timeout: float = 60.0,
                 n_ctx: int = 0, capacity: int = DEFAULT_CAPACITY) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise RemoteError(f"--base-url {base_url!r}: must start with http:// or https://")
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.n_ctx = n_ctx
        self.capacity = capacity
        self.timeout = httpx.Timeout(connect=connect_timeout, read=first_byte_timeout,
                                     write=connect_timeout, pool=connect_timeout)
        self._client = httpx.Client(timeout=self.timeout, headers=self._headers())
        self.model = RemoteModel(model or "", self.base_url)
        self._active: set[Generation] = set()
        self._lock = threading.Lock()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    # -- the LocalEngine interface ---------------------------------------------------
    def submit(self, request: Request) -> Generation:
        request.validate()
        if request.continue_text:
            raise InvalidParamsError("going on from an edited reply needs a local model (an OpenAI-compatible "
                                     "server always starts a new reply)")
        seed = request.params.seed or random.randrange(1, 2**32)
        room = threading.Event()
        holder: dict[str, Any] = {}

        def notify() -> None:  # cancel() or a drained channel
            room.set()
            resp = holder.get("response")
            if gen.cancelled and resp is not None:
                try:
                    resp.close()  # unblocks the reading thread at once
                except Exception:
                    pass

        gen = Generation(request, [], seed, notify, self.capacity)
        with self._lock:
            self._active.add(gen)
        threading.Thread(target=self._run, args=(gen, room, holder), name="mullama-remote",
                         daemon=True).start()
        return gen

    def clear_cache(self) -> None:
        """Nothing to clear on our side (the server manages its own cache)."""

    def thread_choice(self) -> None:
        """No local CPU decodes for a remote backend."""
        return None

    def set_threads(self, n: int | None) -> None:
        """The server chooses its own threads."""

    def list_models(self) -> list[dict[str, Any]]:
        try:
            r = self._client.get(self.base_url + "/models")
        except httpx.HTTPError as e:
            raise RemoteError(describe_transport_error(e, self.base_url)) from None
        if r.status_code != 200:
            raise RemoteError(describe_status(r.status_code, _error_text(r), self.base_url))
        try:
            return list(r.json()["data"])
        except (ValueError, KeyError, TypeError):
            raise RemoteError(f"{self.base_url}/models did not answer with an OpenAI model list") from None

    def close(self) -> None:
        with self._lock:
            gens = list(self._active)
        for g in gens:
            g.cancel()
        self._client.close()

    # -- one request -----------------------------------------------------------------
    def _body(self, req: Request, seed: int) -> tuple[str, dict[str, Any]]:
        p = req.params
        body: dict[str, Any] = {
            "max_tokens": req.max_tokens, "temperature": p.temperature, "top_p": p.top_p,
            "seed": seed, "stream": True, "stream_options": {"include_usage": True},
            # understood by llama.cpp's server, vLLM and mullama-tui; ignored by others
            "top_k": p.top_k, "min_p": p.min_p, "repeat_penalty": p.penalty_repeat,
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if req.ignore_eos:  # benchmarks: llama.cpp's server and mullama-tui honour it
            body["ignore_eos"] = True
        if req.logprobs:  # token insight: llama.cpp's server and vLLM send them, OpenAI too
            if req.mode == "chat":
                body["logprobs"], body["top_logprobs"] = True, req.logprobs
            else:
                body["logprobs"] = req.logprobs
        if self.model.name:
            body["model"] = self.model.name
        if req.mode == "chat":
            body["messages"] = req.chat_messages()
            return "/chat/completions", body
        body["prompt"] = req.prompt or ""
        return "/completions", body

    def _run(self, gen: Generation, room: threading.Event, holder: dict[str, Any]) -> None:
        path, body = self._body(gen.request, gen.seed)
        state = _StreamState(gen)
        try:
            self._stream(path, body, gen, room, holder, state)
        except RemoteError as e:
            state.finish(FinishReason.CANCELLED if gen.cancelled else FinishReason.ERROR,
                         None if gen.cancelled else str(e))
        except httpx.HTTPError as e:
            if gen.cancelled:
                state.finish(FinishReason.CANCELLED)
            else:
                state.finish(FinishReason.ERROR, describe_transport_error(e, self.base_url))
        except Exception as e:  # never leave the consumer hanging
            state.finish(FinishReason.CANCELLED if gen.cancelled else FinishReason.ERROR,
                         None if gen.cancelled else f"{type(e).__name__}: {e}")
        finally:
            with self._lock:
                self._active.discard(gen)

    def _stream(self, path: str, body: dict[str, Any], gen: Generation, room: threading.Event,
                holder: dict[str, Any], state: _StreamState) -> None:
        url = self.base_url + path
        for attempt in (1, 2):
            if gen.cancelled:
                state.finish(FinishReason.CANCELLED)
                return
            with self._client.stream("POST", url, json=body) as resp:
                holder["response"] = resp
                if gen.cancelled:
                    state.finish(FinishReason.CANCELLED)
                    return
                if resp.status_code in (429, 503) and attempt == 1:
                    wait = _retry_after(resp.headers.get("retry-after"))
                    if wait is not None:
                        resp.read()
                        if _sleep_unless_cancelled(gen, wait):
                            state.finish(FinishReason.CANCELLED)
                            return
                        continue
                if resp.status_code != 200:
                    resp.read()
                    raise RemoteError(describe_status(resp.status_code, _error_text(resp), self.base_url))
                parser = SSEParser()
                for chunk in resp.iter_raw():
                    for data in parser.feed(chunk):
                        if state.handle(data):
                            return
                    while not gen.has_room() and not gen.cancelled:  # backpressure
                        room.clear()
                        room.wait(0.1)
                for data in parser.close():
                    if state.handle(data):
                        return
                if gen.cancelled:
                    state.finish(FinishReason.CANCELLED)
                    return
                raise RemoteError("the server's stream ended before [DONE] (the connection was cut?)")


class _StreamState:
    """Turns OpenAI chunks into token events and client-side stats."""

    def __init__(self, gen: Generation) -> None:
        self.gen = gen
        self.pieces = 0
        self.reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.t_first: float | None = None
        self.t_last = 0.0
        self.done = False
        self.insights = 0  # tokens that came with log-probabilities
        # thinking models: `<think>` tags inline in the content are split here too
        self.splitter = ReasoningSplitter(THINK_TAGS) if gen.request.split_thinking else None
        self.thinking_pieces = self.answer_pieces = 0
        self.t_think_start = self.t_think_end = 0.0
        self.t_first_answer: float | None = None

    def handle(self, data: str) -> bool:
        """One SSE data payload; True when the stream is complete."""
        if data.strip() == "[DONE]":
            self.finish(FinishReason.LENGTH if self.reason == "length" else FinishReason.EOS)
            return True
        try:
            obj = json.loads(data)
            if obj.get("usage"):
                self.usage = obj["usage"]
            choices = obj.get("choices") or []
            if not isinstance(choices, list):
                raise TypeError("choices is not a list")
            for c in choices:
                thinking = ""
                if "delta" in c:
                    delta = c.get("delta") or {}
                    text = delta.get("content") or ""
                    # DeepSeek's API, vLLM and llama.cpp's server send the thinking apart
                    thinking = delta.get("reasoning_content") or delta.get("reasoning") or ""
                else:
                    text = c.get("text") or ""
                if c.get("finish_reason"):
                    self.reason = c["finish_reason"]
                tokens = remote_insights(c.get("logprobs")) if self.gen.request.logprobs else []
                if self.splitter is not None and (tokens or text):
                    if tokens and "".join(t.piece for t in tokens) == text:
                        for t in tokens:
                            self._emit_split(t.piece, t)
                    else:
                        self._emit_split(text, tokens[-1] if tokens else None)
                elif tokens and "".join(t.piece for t in tokens) == text:
                    for t in tokens:  # one event per token, each with its insight
                        self._emit(t.piece, t)
                elif text:
                    self._emit(text, tokens[-1] if tokens else None)
                if thinking:
                    self._emit("", None, thinking=thinking)
        except (ValueError, TypeError, AttributeError) as e:
            raise RemoteError(f"malformed chunk from the server ({e}): {data[:120]!r}") from None
        return False

    def _emit_split(self, content: str, insight: TokenInsight | None) -> None:
        """Content that may carry `<think>` tags inline (servers that do not split it)."""
        split = self.splitter.feed(content)  # type: ignore[union-attr]
        self._emit(split.answer, insight, thinking=split.thinking, moved=split.moved,
                   inside=self.splitter.thinking)  # type: ignore[union-attr]

    def _emit(self, text: str, insight: TokenInsight | None = None, thinking: str = "", moved: str = "",
              inside: bool = False) -> None:
        now = time.perf_counter()
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        channel = "thinking" if (thinking or inside) and not text else "answer"
        if channel == "thinking" or moved:
            self.thinking_pieces += 1 + (self.answer_pieces if moved else 0)
            self.answer_pieces = 0 if moved else self.answer_pieces
            self.t_think_start = self.t_think_start or now
            self.t_think_end = now
        elif text:
            self.answer_pieces += 1
            self.t_first_answer = self.t_first_answer or now
        self.gen.push(TokenEvent(text, insight.token_id if insight else -1, self.pieces, insight=insight,
                                 thinking=thinking, moved=moved, channel=channel))
        self.pieces += 1
        self.insights += insight is not None

    def finish(self, reason: FinishReason, error: str | None = None) -> None:
        if self.done:
            return
        self.done = True
        gen = self.gen
        now = time.perf_counter()
        usage = self.usage or {}
        tokens = int(usage.get("completion_tokens") or self.pieces)
        st = Stats(finish_reason=reason, seed=gen.seed, error=error,
                   prompt_tokens=int(usage.get("prompt_tokens") or 0), generated_tokens=tokens,
                   total_time=now - gen.t_submit)
        if self.splitter is not None:
            rest = self.splitter.flush()
            if rest.answer or rest.thinking:
                gen.push(TokenEvent(rest.answer, -1, self.pieces, thinking=rest.thinking))
                self.pieces += 1
        if self.thinking_pieces:
            st.thinking_tokens, st.answer_tokens = self.thinking_pieces, self.answer_pieces
            st.thinking_time = self.t_think_end - self.t_think_start
            if self.t_first_answer is not None:
                st.ttft_answer = self.t_first_answer - gen.t_submit
        if gen.request.logprobs and self.pieces and not self.insights:
            st.notice = ("the server sent no token log-probabilities (llama.cpp's server and vLLM do): "
                         "no token insight for this reply")
        if self.t_first is not None:
            st.ttft = self.t_first - gen.t_submit
            st.prompt_time = st.ttft
            st.gen_time = max(self.t_last - self.t_first, 0.0)
            if tokens > 1 and st.gen_time > 0:
                # count intervals between tokens, as the local engine does from prompt end
                st.gen_time = st.gen_time * tokens / (tokens - 1)
        gen.push(TokenEvent("", -1, self.pieces, reason, st))


def remote_insights(logprobs: Any) -> list[TokenInsight]:
    """OpenAI's logprobs of one choice (chat: {"content": [...]}, completions: {"tokens",
    "token_logprobs", "top_logprobs"}) as token insights. The server's distribution is the
    model's; the sampler's is not sent (llama.cpp's server has it as post_sampling_probs),
    so it is left unknown (NaN)."""
    if not isinstance(logprobs, dict):
        return []
    out = []
    if isinstance(logprobs.get("content"), list):
        for item in logprobs["content"]:
            top = [Candidate(-1, str(t.get("token", "")), float(t.get("logprob", -math.inf)))
                   for t in item.get("top_logprobs") or []]
            out.append(_remote_insight(str(item.get("token", "")), float(item.get("logprob", -math.inf)), top))
    elif isinstance(logprobs.get("tokens"), list):
        tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
        for tok, lp, top in zip(logprobs["tokens"], logprobs.get("token_logprobs") or [], tops):
            cands = [Candidate(-1, str(k), float(v)) for k, v in (top or {}).items()]
            out.append(_remote_insight(str(tok), float(lp if lp is not None else -math.inf), cands))
    return out


def _remote_insight(token: str, logprob: float, top: list[Candidate]) -> TokenInsight:
    top.sort(key=lambda c: -c.logprob)
    return TokenInsight(token_id=-1, piece=token, logprob=logprob, top=top, sampled_prob=math.nan,
                        sampled_top=[], entropy=math.nan, kept=0)


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return 1.0
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER)
    except ValueError:
        return 1.0


def _sleep_unless_cancelled(gen: Generation, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if gen.cancelled:
            return True
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    return gen.cancelled


def _error_text(resp: httpx.Response) -> str:
    try:
        data = resp.json()
        err = data.get("error", data)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    except Exception:
        return resp.text[:200].strip()


def describe_status(status: int, message: str, base_url: str) -> str:
    detail = f": {message}" if message else ""
    if status in (401, 403):
        return f"{base_url} refused the request (HTTP {status}): check --api-key{detail}"
    if status == 404:
        return f"not found at {base_url} (HTTP 404): check --remote-model and --base-url{detail}"
    if status in (429, 503):
        return f"{base_url} is busy (HTTP {status}) even after waiting as it asked{detail}"
    if status >= 500:
        return f"the server at {base_url} failed (HTTP {status}){detail}"
    return f"{base_url} rejected the request (HTTP {status}){detail}"


def describe_transport_error(e: httpx.HTTPError, base_url: str) -> str:
    text = str(e)
    if isinstance(e, httpx.ConnectTimeout):
        return f"cannot connect to {base_url}: timed out"
    if isinstance(e, httpx.ConnectError):
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text \
                or "Temporary failure in name resolution" in text:
            return f"cannot resolve the host of {base_url} (DNS failure)"
        if "refused" in text.lower():
            return f"cannot connect to {base_url}: connection refused (is the server running?)"
        return f"cannot connect to {base_url}: {text}"
    if isinstance(e, httpx.ReadTimeout):
        return f"{base_url} sent nothing within the time limit (raise the timeout, or check the server)"
    if isinstance(e, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"the connection to {base_url} broke mid-stream: {text or type(e).__name__}"
    return f"request to {base_url} failed: {text or type(e).__name__}"
