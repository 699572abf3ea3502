"""The FastAPI app: routes turn HTTP into engine requests and events into bytes, nothing else.

Why it cannot block and cannot leak:
- generations run on the engine's scheduler thread; routes only await `Generation.atake()`,
  which parks on an asyncio future, so the event loop never blocks on decoding;
- concurrent requests share the scheduler's batch (up to `max_concurrency` sequences);
  more wait in its bounded queue; beyond that `QueueFullError` becomes a 503 with
  Retry-After;
- backpressure: a response body is produced only as fast as the client reads it, and a
  generation's event channel is bounded, so a slow reader pauses its own sequence;
- a client that goes away (SSE disconnect, WebSocket close, an aborted fetch) cancels its
  generation: the async generator is closed and its `finally` calls `cancel()`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from .. import version
from ..engine.generation import Generation
from ..engine.local import LocalEngine
from ..engine.types import EngineClosedError, FinishReason, MullamaError, QueueFullError, Request, TokenEvent
from .guard import Guard, configured_origins, is_loopback, key_matches
from .schemas import (
    BodyError,
    ChatCompletionRequest,
    CompletionRequest,
    StreamRequest,
    load_json,
    validate_body,
    validation_message,
)

STATIC = Path(__file__).parent / "static"
MAX_BODY = 1_000_000  # bytes
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


class APIError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_body(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": kind}}


def engine_error(e: MullamaError) -> APIError:
    if isinstance(e, QueueFullError):
        return APIError(503, f"server busy: {e}; try again shortly", {"Retry-After": "1"})
    if isinstance(e, EngineClosedError):
        return APIError(503, "the server is shutting down", {"Retry-After": "5"})
    return APIError(400, str(e))


def finish_for_openai(reason: FinishReason | None) -> str:
    return "length" if reason is FinishReason.LENGTH else "stop"


def create_app(engine: LocalEngine, model_name: str, api_key: str | None = None,
               cors_origins: list[str] | None = None, max_body: int = MAX_BODY,
               host: str = "127.0.0.1", stall_timeout: float | None = 30.0) -> FastAPI:
    """`host`: the address the server is bound to (a loopback one answers loopback Host
    names only); `cors_origins`: browser origins allowed besides the server's own (the
    `MULLAMA_TUI_ORIGINS` environment variable adds more); see `guard.py`.
    `stall_timeout`: a generation whose client has read nothing for this many seconds is
    cancelled and its slot freed (None: never)."""
    engine.scheduler.stall_timeout = stall_timeout
    app = FastAPI(title="mullama-tui", version=version(), docs_url="/docs", redoc_url=None)
    origins = configured_origins(cors_origins)
    app.add_middleware(Guard, api_key=api_key, origins=origins, loopback_only=is_loopback(host),
                       max_body=max_body)
    if origins:  # outside the guard: its refusals carry CORS headers too
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"],
                           allow_headers=["*"])
    started = int(time.time())

    @app.exception_handler(APIError)
    async def _api_error(request: HTTPRequest, exc: APIError) -> JSONResponse:
        return JSONResponse(error_body(exc.message), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: HTTPRequest, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(validation_message(exc)), status_code=400)

    async def parse(request: HTTPRequest, model: type[BaseModel]) -> Any:
        chunks, size = [], 0
        try:
            async for chunk in request.stream():  # counted as it comes: a chunked body has no length
                size += len(chunk)
                if size > max_body:
                    raise APIError(413, f"request body over {max_body} bytes")
                chunks.append(chunk)
        except ClientDisconnect:  # gone before the whole body came: nobody to answer, no traceback
            raise APIError(400, "the client closed the connection before sending the whole body") from None
        try:
            return validate_body(b"".join(chunks), model, engine.n_ctx)
        except BodyError as e:
            raise APIError(400, str(e)) from None

    async def submit(req: Request) -> Generation:
        if req.max_tokens >= engine.n_ctx:
            raise APIError(400, f"max_tokens={req.max_tokens} is beyond the context size {engine.n_ctx}")
        try:
            return await run_in_threadpool(engine.submit, req)
        except MullamaError as e:
            raise engine_error(e) from None

    async def cancel_when_gone(request: HTTPRequest, gen: Generation) -> None:
        """Cancel `gen` as soon as its client disconnects (polled: an ASGI server says so
        only when asked for the next message)."""
        while not gen.finished:
            if await request.is_disconnected():
                gen.cancel()
                return
            await asyncio.sleep(0.25)

    async def events(gen: Generation) -> AsyncIterator[TokenEvent]:
        """Every event of `gen`; if the consumer goes away first, cancel it."""
        try:
            async for ev in gen.aiter():
                yield ev
        finally:
            gen.cancel()

    # -- health and the page ---------------------------------------------------------
    @app.get("/health")
    async def health() -> dict[str, Any]:
        sched = engine.scheduler
        return {"status": "ok", "model": model_name, "state": "ready", "active": sched.active,
                "queued": sched.queued, "max_concurrency": sched.n_parallel,
                "queue": sched.max_queue, "n_ctx": engine.n_ctx,
                "placement": engine.model.placement.summary, "sampling": sched.sampling_mode,
                "threads": sched.thread_choice().to_dict(), "stalled": sched.stalled}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # -- the tutorial's SSE format -----------------------------------------------------
    @app.post("/stream")
    async def stream(request: HTTPRequest) -> StreamingResponse:
        body: StreamRequest = await parse(request, StreamRequest)
        if body.prompt is None and not body.messages:
            raise APIError(400, "give a prompt or messages")
        gen = await submit(body.to_request())

        async def sse() -> AsyncIterator[str]:
            i = 0
            async for ev in events(gen):
                if ev.text or ev.thinking or ev.insight:  # empty pieces (held-back bytes) only with insight
                    yield _sse({"token": ev.text, "index": i, "done": False, **channel_fields(ev),
                                **insight_fields(ev)})
                    i += 1
                if ev.done:
                    yield _sse({"token": "", "index": i, "done": True,
                                "finish_reason": str(ev.finish_reason),
                                "stats": ev.stats.to_dict() if ev.stats else None})

        return StreamingResponse(sse(), media_type="text/event-stream", headers=SSE_HEADERS)

    # -- WebSocket -----------------------------------------------------------------------
    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        if not key_matches(api_key, websocket.headers.get("authorization"), websocket.query_params.get("token")):
            await websocket.close(code=4401, reason="missing or wrong API key")
            return
        await websocket.accept()
        running: dict[str, Any] = {"gen": None, "task": None}

        async def send_tokens(gen: Generation) -> None:
            async for ev in events(gen):
                if ev.text or ev.thinking or ev.insight:
                    await websocket.send_json({"type": "token", "content": ev.text, **channel_fields(ev),
                                               **insight_fields(ev)})
                if ev.done:
                    await websocket.send_json({"type": "done", "finish_reason": str(ev.finish_reason),
                                               "stats": ev.stats.to_dict() if ev.stats else None})

        async def error(message: str) -> None:
            await websocket.send_json({"type": "error", "message": message})

        try:
            while True:
                frame = await websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                raw = frame.get("text")
                if raw is None:  # a binary frame: answer it, keep the connection
                    await error("send text frames with JSON objects, not binary frames")
                    continue
                try:
                    data = load_json(raw.encode("utf-8", "surrogatepass"), max_body)
                except BodyError as e:
                    await error(str(e))
                    continue
                task = running["task"]
                busy = task is not None and not task.done()
                if data.get("type") == "cancel":
                    if busy:
                        running["gen"].cancel()
                    else:
                        await error("nothing to cancel")
                    continue
                if busy:
                    await error("a generation is running on this connection: cancel it or wait for done")
                    continue
                try:
                    body = validate_body(data, StreamRequest, engine.n_ctx)
                    if body.prompt is None and not body.messages:
                        raise APIError(400, "give a prompt or messages")
                    gen = await submit(body.to_request())
                except BodyError as e:
                    await error(str(e))
                    continue
                except APIError as e:
                    await error(e.message)
                    continue
                running["gen"] = gen
                running["task"] = asyncio.create_task(send_tokens(gen))
        except WebSocketDisconnect:
            pass
        finally:
            if running["gen"] is not None:
                running["gen"].cancel()
            if running["task"] is not None:
                running["task"].cancel()

    # -- OpenAI-compatible ----------------------------------------------------------------
    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": started,
                                            "owned_by": "mullama-tui"}]}

    def usage(ev: TokenEvent) -> dict[str, int]:
        st = ev.stats
        p, c = (st.prompt_tokens, st.generated_tokens) if st else (0, 0)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    async def openai(request: HTTPRequest, schema: type[BaseModel], chat: bool) -> Any:
        body = await parse(request, schema)
        try:
            req = body.to_request()
        except BodyError as e:
            raise APIError(400, str(e)) from None
        if body.max_tokens is None and body.max_completion_tokens is None:
            req.max_tokens = min(req.max_tokens, engine.n_ctx - 1)  # not asked for: what fits
        gen = await submit(req)
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        created = int(time.time())
        obj = "chat.completion" if chat else "text_completion"
        want = body.n_logprobs
        post = body.post_sampling_probs
        offset = [0]  # text_offset of the legacy completions format

        def logprobs_of(evs: list[TokenEvent]) -> dict[str, Any] | None:
            """OpenAI's logprobs object for these tokens (chat or legacy completions form)."""
            items = [ev.insight for ev in evs if ev.insight is not None]
            if not want:
                return None
            if chat:
                return {"content": [chat_logprob(i, want, post) for i in items]}
            out: dict[str, Any] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
            for i in items:
                out["tokens"].append(i.piece)
                out["token_logprobs"].append(_prob(i.sampled_prob) if post else i.logprob)
                top = i.sampled_top if post else i.top
                out["top_logprobs"].append({c.text: (c.prob if post else c.logprob) for c in top[:want]})
                out["text_offset"].append(offset[0])
                offset[0] += len(i.piece)
            return out

        if not body.stream:
            text, thinking, final, evs = [], [], None, []
            # nothing is sent before the end, so nothing else notices a client that gave up
            watch = asyncio.create_task(cancel_when_gone(request, gen))
            try:
                async for ev in events(gen):
                    text.append(ev.text)
                    thinking.append(ev.thinking)
                    if ev.done:
                        final = ev
                    else:
                        evs.append(ev)
            finally:
                watch.cancel()
            assert final is not None
            if final.finish_reason is FinishReason.CANCELLED and gen.cancelled:
                raise APIError(499, "the client closed the connection")  # nobody reads this
            if final.finish_reason is FinishReason.ERROR:
                raise APIError(500, (final.stats.error if final.stats else None) or "generation failed")
            choice: dict[str, Any] = {"index": 0, "finish_reason": finish_for_openai(final.finish_reason),
                                      "logprobs": logprobs_of(evs)}
            if chat:
                choice["message"] = {"role": "assistant", "content": "".join(text)}
                if any(thinking):
                    choice["message"]["reasoning_content"] = "".join(thinking)
            else:
                choice["text"] = "".join(text)
            return {"id": rid, "object": obj, "created": created, "model": model_name,
                    "choices": [choice], "usage": usage(final)}

        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        chunk_obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(piece: str | None, finish: str | None, first: bool = False,
                  ev: TokenEvent | None = None) -> str:
            lp = logprobs_of([ev]) if ev is not None else None
            if chat:
                delta: dict[str, Any] = {"role": "assistant", "content": ""} if first else (
                    {"content": piece} if piece else {})
                if ev is not None and ev.thinking:
                    delta["reasoning_content"] = ev.thinking
                c: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": lp}
            else:
                c = {"index": 0, "text": piece or "", "logprobs": lp, "finish_reason": finish}
            d: dict[str, Any] = {"id": rid, "object": chunk_obj, "created": created, "model": model_name,
                                 "choices": [c]}
            if include_usage:
                d["usage"] = None
            return _sse(d)

        async def sse() -> AsyncIterator[str]:
            if chat:
                yield chunk(None, None, first=True)
            async for ev in events(gen):
                if ev.text or (ev.thinking and chat) or (ev.insight is not None and want):
                    yield chunk(ev.text, None, ev=ev)
                if ev.done:
                    yield chunk(None, finish_for_openai(ev.finish_reason))
                    if include_usage:
                        yield _sse({"id": rid, "object": chunk_obj, "created": created, "model": model_name,
                                    "choices": [], "usage": usage(ev)})
                    yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers=SSE_HEADERS)

    @app.post("/v1/completions")
    async def completions(request: HTTPRequest) -> Any:
        return await openai(request, CompletionRequest, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: HTTPRequest) -> Any:
        return await openai(request, ChatCompletionRequest, chat=True)

    _document_bodies(app, {"/stream": StreamRequest, "/v1/completions": CompletionRequest,
                           "/v1/chat/completions": ChatCompletionRequest}, max_tokens=engine.n_ctx - 1)
    return app


def _document_bodies(app: FastAPI, bodies: dict[str, type[BaseModel]], max_tokens: int) -> None:
    """Put the request bodies into the OpenAPI schema. The routes parse their bodies
    themselves (so bad JSON, a body over the limit or a wrong shape is a 4xx in our words),
    which FastAPI cannot see: without this, /openapi.json (and every client generator and
    fuzzer reading it) would not know what the endpoints take. `max_tokens` is this
    server's real limit (its context size less one)."""
    from fastapi.openapi.utils import get_openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for path, model in bodies.items():
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(body.pop("$defs", {}))
            for name in ("max_tokens", "max_completion_tokens"):
                prop = body["properties"].get(name)
                if prop is not None:
                    for variant in prop.get("anyOf", [prop]):
                        if variant.get("type") == "integer":
                            variant["maximum"] = max_tokens
            components[model.__name__] = body
            schema["paths"][path]["post"]["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _prob(p: float) -> float:
    return round(p, 6)


def channel_fields(ev: TokenEvent) -> dict[str, Any]:
    """What /stream and /ws token events say of a thinking model's channels (nothing for
    other models): the token's channel, and its thinking text."""
    if not ev.thinking and ev.channel == "answer":
        return {}
    return {"channel": ev.channel, "thinking": ev.thinking}


def insight_fields(ev: TokenEvent) -> dict[str, Any]:
    """What /stream and /ws token events add with "logprobs": N (nothing without)."""
    i = ev.insight
    if i is None:
        return {}
    return {"token_id": i.token_id, "logprob": i.logprob, "sampled_prob": _prob(i.sampled_prob),
            "entropy": i.entropy, "top_logprobs": [{"token": c.text, "logprob": c.logprob} for c in i.top]}


def chat_logprob(i: Any, want: int, post: bool) -> dict[str, Any]:
    """One token in OpenAI's chat `logprobs.content` form; with post_sampling_probs, as
    llama.cpp's server: `prob` and `top_probs` from the sampler's distribution."""
    if post:
        return {"token": i.piece, "prob": _prob(i.sampled_prob), "bytes": list(i.piece.encode()),
                "top_probs": [{"token": c.text, "prob": _prob(c.prob), "bytes": list(c.text.encode())}
                              for c in i.sampled_top[:want]]}
    return {"token": i.piece, "logprob": i.logprob, "bytes": list(i.piece.encode()),
            "top_logprobs": [{"token": c.text, "logprob": c.logprob, "bytes": list(c.text.encode())}
                             for c in i.top[:want]]}


def _sse(data: dict[str, Any]) -> str:
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"

