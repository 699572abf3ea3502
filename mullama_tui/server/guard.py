"""What every request passes before a route sees it: who may call, from where, with what.

A pure ASGI middleware (not Starlette's `BaseHTTPMiddleware`, which wraps every streamed
chunk in a task and queue): the checks cost a few header lookups, and a streamed
response passes through untouched.

Why each check:
- **Host** (DNS rebinding): a page on `evil.example` can make its own name resolve to
  127.0.0.1 and then talk to a loopback server as a same-origin page. Bound to a
  loopback address, the server answers only loopback Host names (as Ollama does).
- **Origin** (cross-site requests): with no API key (the default), any web page could
  start generations. A browser's request from another site carries its Origin; it is
  allowed from the server's own origin and the configured list (`--cors-origin`,
  `MULLAMA_TUI_ORIGINS`), answered 403 otherwise. Tools that are not browsers send none.
  WebSockets get the same check: browsers do not apply CORS to them.
- **Content type**: a browser can POST `text/plain` cross-site without a preflight (a
  CORS "simple request"), never `application/json`, so bodies must say JSON (415).
- **API key** (401), and a declared body over the limit (413) before any of it is read.

The CORS middleware sits outside this one, so even its 401s and 403s carry the CORS
headers an allowed origin needs to read them.
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ORIGINS_ENV = "MULLAMA_TUI_ORIGINS"  # comma-separated, like OLLAMA_ORIGINS; "*" allows any
OPEN_PATHS = ("/health",)  # answered without a key (load balancers, the TUI's checks)


def configured_origins(cli: list[str] | None = None) -> list[str]:
    """`--cors-origin` values and the environment's, without trailing slashes."""
    env = [o.strip() for o in os.environ.get(ORIGINS_ENV, "").split(",") if o.strip()]
    return [o.rstrip("/") for o in [*(cli or []), *env]]


def is_loopback(host: str) -> bool:
    """Whether an address or name to bind (or a Host header's name) is this machine only."""
    name = host.strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def key_matches(api_key: str | None, header: str | None, token: str | None = None) -> bool:
    """The one API-key check (HTTP here, the WebSocket in app.py): `Authorization: Bearer
    KEY`, or for a WebSocket `?token=KEY`; always true without a key."""
    import hmac

    if not api_key:
        return True
    given = token or ""
    if header and header.lower().startswith("bearer "):
        given = header[7:].strip()
    return hmac.compare_digest(given.encode(), api_key.encode())


def _host_name(host_header: str) -> str:
    """The name of a Host header, without its port ('[::1]:3000' -> '::1')."""
    if host_header.startswith("["):
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class Guard:
    def __init__(self, app: ASGIApp, *, api_key: str | None, origins: list[str], loopback_only: bool,
                 max_body: int) -> None:
        self.app = app
        self.api_key = api_key
        self.origins = set(origins)
        self.any_origin = "*" in self.origins
        self.loopback_only = loopback_only
        self.max_body = max_body
        self.own_names = {"localhost", socket.gethostname().lower()}

    # -- the checks ----------------------------------------------------------------------
    def host_ok(self, host: str) -> bool:
        if not self.loopback_only:
            return True
        name = _host_name(host).lower()
        return is_loopback(name) or name in self.own_names

    def origin_ok(self, origin: str, host: str) -> bool:
        """Same origin as the page this server serves, or a configured one."""
        if self.any_origin or origin.rstrip("/") in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()

    # -- ASGI ----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        host = headers.get("host", "")
        refusal = None
        if not self.host_ok(host):
            refusal = 403, (f"Host {host!r} is not this machine: a server bound to a loopback address answers "
                            f"only loopback names (a guard against DNS rebinding)"), "forbidden"
        elif "origin" in headers and not self.origin_ok(headers["origin"], host):
            refusal = 403, (f"origin {headers['origin']!r} is not allowed: start the server with --cors-origin "
                            f"{headers['origin']} (or set {ORIGINS_ENV}) to let that page call it"), "forbidden"
        elif kind == "http" and scope["method"] != "OPTIONS":
            refusal = self._http_refusal(scope, headers)
        if refusal is None:
            return await self.app(scope, receive, send)
        status, message, kind_name = refusal
        if kind == "websocket":
            # before accept: the handshake is answered with an HTTP 403
            await send({"type": "websocket.close", "code": 4403, "reason": message[:120]})
            return
        await _json_response(send, status, {"error": {"message": message, "type": kind_name}})

    def _http_refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        path = scope.get("path", "")
        if path not in OPEN_PATHS and not key_matches(self.api_key, headers.get("authorization")):
            return 401, "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error"
        length = headers.get("content-length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_body:
            return 413, f"request body over {self.max_body} bytes", "invalid_request_error"
        if scope["method"] in ("POST", "PUT", "PATCH"):
            ctype = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if ctype != "application/json":
                return 415, (f"send the body as JSON with Content-Type: application/json (got "
                             f"{ctype or 'none'!r})"), "invalid_request_error"
        return None


async def _json_response(send: Send, status: int, body: dict[str, Any]) -> None:
    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})
