"""A small Hugging Face look-alike on loopback, for the pull tests.

It is a real HTTP server (the client under test speaks real HTTP to it) serving real
bytes: `/{owner}/{repo}/resolve/{revision}/{file}` (GET and HEAD) with Range support,
answered like the Hub does for LFS files (a 302 carrying `X-Repo-Commit`, `X-Linked-Etag` =
sha256 and `X-Linked-Size`, then the bytes from a "CDN" on another origin, as the Hub's
are, so `huggingface_hub` stops at the redirect and reads its headers), and
`/api/models/{owner}/{repo}/tree/{revision}` listing files as the Hub does (path, oid,
size, lfs). `huggingface_hub` itself talks to it when HF_ENDPOINT points here. Switches
make it misbehave on purpose the way a real network does now and then: cut a response
halfway, send slowly, demand a token, lie about the checksum, advertise a file too big for
the disk, claim Xet storage with no Xet server behind it.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse


class Hub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}  # "owner/repo" -> {file: bytes}
        self.requests: list[dict] = []  # every request: method, path, range, auth
        self.cut_next_at: int | None = None  # the next file response stops after this many bytes
        self.slow_next: float = 0.0  # seconds of sleep per 64 KB in the next file response
        self.token: str | None = None  # when set, requests without "Bearer <token>" get 401
        self.wrong_sha: bool = False  # advertise a sha256 that does not match
        self.fake_size: int | None = None  # advertise this size instead of the real one
        self.xet: bool = False  # say files are stored with Xet (there is no Xet server behind it)
        self.commit = hashlib.sha1(b"main").hexdigest()  # what `main` points at
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                hub._handle(self)

            def do_HEAD(self) -> None:  # noqa: N802
                hub._handle(self)

        self.servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]  # the Hub, its CDN
        self.server = self.servers[0]
        self.url = f"http://127.0.0.1:{self.servers[0].server_address[1]}"
        self.cdn = f"http://127.0.0.1:{self.servers[1].server_address[1]}"
        for server in self.servers:
            server.daemon_threads = True
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def add(self, repo: str, file: str, data: bytes) -> str:
        self.repos.setdefault(repo, {})[file] = data
        return f"{self.url}/{repo}/resolve/main/{file}"

    def close(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()

    def file_requests(self) -> list[dict]:
        return [r for r in self.requests if r["path"].startswith("/cdn/")]

    # -- serving ---------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        path = unquote(urlparse(h.path).path)
        self.requests.append({"method": h.command, "path": path, "range": h.headers.get("Range"),
                              "auth": h.headers.get("Authorization")})
        cdn = path.startswith("/cdn/")  # signed URLs on the real CDN: no token asked there
        if self.token and not cdn and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, b'{"error": "Invalid credentials"}')
        if m := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/[^/]+/?", path):
            files = self.repos.get(m.group(1))
            if files is None:
                return self._send(h, 404, b'{"error": "Repository not found"}', error_code="RepoNotFound")
            listing = [{"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest(),
                        "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}
                       for name, data in files.items()]
            listing.append({"type": "file", "path": "README.md", "size": 10, "oid": "0" * 40})
            return self._send(h, 200, json.dumps(listing).encode(), "application/json")
        if m := re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path):
            if m.group(1) not in self.repos:
                return self._send(h, 404, b"Repository not found", error_code="RepoNotFound")
            data = self.repos[m.group(1)].get(m.group(3))
            if data is None or m.group(2) not in ("main", self.commit):
                return self._send(h, 404, b"Entry not found", error_code="EntryNotFound")
            sha = hashlib.sha256(data).hexdigest()
            h.send_response(302)
            h.send_header("Location", f"{self.cdn}/cdn/{m.group(1)}/{m.group(3)}")
            h.send_header("X-Repo-Commit", self.commit)
            h.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            h.send_header("X-Linked-Etag", f'"{"0" * 64 if self.wrong_sha else sha}"')
            h.send_header("X-Linked-Size", str(self.fake_size or len(data)))
            if self.xet:
                h.send_header("X-Xet-Hash", hashlib.sha256(b"xet" + data).hexdigest())
                h.send_header("X-Xet-Refresh-Route", f"/api/models/{m.group(1)}/xet-read-token/{self.commit}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if m := re.fullmatch(r"/cdn/([^/]+/[^/]+)/(.+)", path):
            data = self.repos.get(m.group(1), {}).get(m.group(2))
            if data is None:
                return self._send(h, 404, b"gone")
            if h.command == "HEAD":
                return self._send(h, 200, b"")
            return self._send_file(h, data)
        self._send(h, 404, b"not found")

    def _send(self, h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "text/plain",
              error_code: str | None = None) -> None:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        if error_code:
            h.send_header("X-Error-Code", error_code)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _send_file(self, h: BaseHTTPRequestHandler, data: bytes) -> None:
        with self._lock:
            cut, self.cut_next_at = self.cut_next_at, None
            slow, self.slow_next = self.slow_next, 0.0
        start = 0
        rng = h.headers.get("Range")
        if rng and (m := re.fullmatch(r"bytes=(\d+)-", rng)):
            start = int(m.group(1))
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            h.send_response(206)
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(len(data) - start))
        h.send_header("Accept-Ranges", "bytes")
        h.end_headers()
        end = len(data) if cut is None else min(len(data), start + cut)
        step = 1 << 16 if slow else 1 << 20
        try:
            for i in range(start, end, step):
                h.wfile.write(data[i:min(i + step, end)])
                if slow:
                    time.sleep(slow)
        except (BrokenPipeError, ConnectionResetError):
            return
        if cut is not None:
            h.wfile.flush()
            h.close_connection = True  # the rest never comes: the client sees a dropped connection
