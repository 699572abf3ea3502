"""Downloading models: resumable, verified, atomic.

`hf:` names and aliases go into the shared Hugging Face cache (hf_cache.py: the library's
layout, listing, token and metadata, our resume and checksum); plain URLs, and everything
when a models folder is chosen (`--models-dir`, MULLAMA_TUI_MODELS), go into our own store.

A pull writes to `<file>.part`. After any interruption (Ctrl+C, a dropped connection, a
crash) the next attempt sends `Range: bytes=<have>-` and appends; a dropped connection
is retried at once a few times. When the bytes are in, the size, the sha256 (when the
server tells it: Hugging Face's `X-Linked-Etag`, or the repository listing) and the GGUF
magic are checked, and only then is the file renamed into place, so a half-written or
wrong file never looks like a model. A checksum mismatch deletes the partial file,
since resuming it could never succeed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..engine.errors import MullamaError
from . import hf_cache
from .resolve import Source, hf_endpoint, hf_file_url, parse_name
from .store import ModelStore, StoredModel

# Which file `hf:owner/repo` picks: the usual quality/size sweet spot first.
QUANT_ORDER = ["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q4_0", "IQ4_XS", "Q5_K_S", "Q6_K", "Q8_0", "Q4_1",
               "Q5_0", "Q3_K_L", "Q3_K_M", "IQ4_NL", "Q3_K_S", "Q2_K", "BF16", "F16", "F32"]
CHUNK = 1 << 20
RETRIES = 3

Progress = Callable[[int, "int | None"], None]
Note = Callable[[str], None]


class PullError(MullamaError):
    """A download failed; the message says why and what to do."""


def pick_gguf(files: list[str]) -> str | None:
    """The GGUF to download from a repository's file list: by QUANT_ORDER, skipping
    vision projectors (mmproj) and multi-part files."""
    ggufs = [f for f in files if f.lower().endswith(".gguf") and "mmproj" not in f.lower()
             and not re.search(r"-\d{5}-of-\d{5}\.gguf$", f)]
    for quant in QUANT_ORDER:
        pattern = re.compile(rf"(^|[-_./]){re.escape(quant)}([-_.]|$)", re.IGNORECASE)
        hits = sorted(f for f in ggufs if pattern.search(Path(f).name))
        if hits:
            return hits[0]
    return sorted(ggufs)[0] if ggufs else None


def _headers(token: str | None = None) -> dict[str, str]:
    token = token or os.environ.get("HF_TOKEN")
    headers = {"User-Agent": "mullama-tui"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def _http_error(status: int, url: str) -> PullError:
    if status == 404:
        return PullError(f"not found (HTTP 404): {url}")
    if status in (401, 403):
        hint = ("HF_TOKEN is set but was refused: check that the token is valid and that you have "
                "accepted the model's licence on its page") if os.environ.get("HF_TOKEN") else (
            "this model needs a Hugging Face token: set HF_TOKEN (and accept the model's licence on its page)")
        return PullError(f"access denied (HTTP {status}) for {url}: {hint}")
    return PullError(f"HTTP {status} from {url}")


def _network_error(e: httpx.TransportError, url: str) -> PullError:
    host = httpx.URL(url).host
    if isinstance(e, httpx.ConnectError):
        return PullError(f"no network: cannot reach {host} ({e}). Check the connection, or set "
                         f"HF_ENDPOINT to a mirror")
    if isinstance(e, httpx.TimeoutException):
        return PullError(f"{host} did not answer in time ({type(e).__name__})")
    return PullError(f"network error talking to {host}: {e}")


def list_repo_files(client: httpx.Client, repo: str) -> list[dict[str, Any]]:
    """A Hugging Face repository's files (path, size, sha256 when LFS) via the tree API."""
    url = f"{hf_endpoint()}/api/models/{repo}/tree/main"
    try:
        r = client.get(url, params={"recursive": "true"})
    except httpx.TransportError as e:
        raise _network_error(e, url) from e
    if r.status_code >= 400:
        raise _http_error(r.status_code, f"{hf_endpoint()}/{repo}")
    try:
        items = r.json()
    except ValueError as e:
        raise PullError(f"{url} did not return a file list") from e
    return [i for i in items if isinstance(i, dict) and i.get("type", "file") == "file" and "path" in i]


def _choose_file(client: httpx.Client, source: Source) -> tuple[Source, int | None, str | None]:
    """For `hf:owner/repo` without a file: pick one from the listing (with its size and sha256)."""
    assert source.repo is not None
    items = list_repo_files(client, source.repo)
    chosen = pick_gguf([i["path"] for i in items])
    if chosen is None:
        raise PullError(f"no .gguf file in https://huggingface.co/{source.repo} "
                        f"(files: {', '.join(i['path'] for i in items[:8]) or 'none'})")
    item = next(i for i in items if i["path"] == chosen)
    lfs = item.get("lfs") or {}
    return (Source(source.name, source.folder, source.repo, chosen, hf_file_url(source.repo, chosen),
                   source.description), item.get("size") or lfs.get("size"), lfs.get("oid"))


def pull(name: str, store: ModelStore | None = None, *, progress: Progress | None = None,
         note: Note | None = None, client: httpx.Client | None = None) -> tuple[StoredModel, bool]:
    """Download `name` into the store; returns its entry and whether anything was downloaded
    (False when it was already there)."""
    store = store or ModelStore()
    source = parse_name(name)
    if source is None:
        raise PullError(f"cannot pull {name!r}: use an alias (`mullama-tui models --available`), "
                        f"hf:owner/repo[:file.gguf], or an http(s) URL of a .gguf")
    existing = store.find(name)
    if existing is not None:
        return existing, False
    if source.repo is not None and not os.environ.get("MULLAMA_TUI_MODELS"):
        return _pull_into_hf_cache(name, source, store, progress, note or (lambda s: None), client)
    own_client = client is None
    client = client or _client()
    try:
        size = sha256 = None
        if source.file is None:
            source, size, sha256 = _choose_file(client, source)
            (note or (lambda s: None))(f"picked {source.file} from {source.repo}")
        assert source.url is not None and source.file is not None
        dest = store.destination(source.folder, source.file)
        size, sha256 = download(client, source.url, dest, size=size, sha256=sha256,
                                progress=progress, note=note)
    finally:
        if own_client:
            client.close()
    entry = StoredModel(name=name, file=str(dest.relative_to(store.root)), url=source.url, size=size,
                        sha256=sha256, repo=source.repo)
    store.add(entry)
    return entry, True


def _client(token: str | None = None) -> httpx.Client:
    return httpx.Client(headers=_headers(token), follow_redirects=True, timeout=httpx.Timeout(30.0, read=60.0))


def hub_error(e: Exception, what: str) -> PullError:
    """One line for what huggingface_hub raised while asking the Hub about `what`."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(e, OfflineModeIsEnabled):
        return PullError(f"HF_HUB_OFFLINE is set, so {what} cannot be downloaded (and it is not in the "
                         f"Hugging Face cache)")
    if isinstance(e, HfHubHTTPError) and e.response is not None:
        return _http_error(e.response.status_code, what)
    kind = type(e).__name__
    if "Connect" in kind:
        return PullError(f"no network: cannot reach {httpx.URL(hf_endpoint()).host} ({kind}). Check the "
                         f"connection, or set HF_ENDPOINT to a mirror")
    if "Timeout" in kind:
        return PullError(f"{httpx.URL(hf_endpoint()).host} did not answer in time ({kind})")
    return PullError(f"asking {hf_endpoint()} about {what} failed: {e or kind}")


def _pull_into_hf_cache(name: str, source: Source, store: ModelStore, progress: Progress | None, note: Note,
                        client: httpx.Client | None) -> tuple[StoredModel, bool]:
    """`pull` of a Hub file into the shared cache; see hf_cache.py for who does what."""
    assert source.repo is not None
    repo, file = source.repo, source.file
    size = sha256 = None
    try:
        if file is None:
            items = hf_cache.list_files(repo)
            file = pick_gguf([i["path"] for i in items])
            if file is None:
                raise PullError(f"no .gguf file in {hf_endpoint()}/{repo} "
                                f"(files: {', '.join(i['path'] for i in items[:8]) or 'none'})")
            item = next(i for i in items if i["path"] == file)
            size, sha256 = item["size"], item["sha256"]
            note(f"picked {file} from {repo}")
        remote = hf_cache.metadata(repo, file)
    except PullError:
        raise
    except Exception as e:  # the library's errors, mapped to one line (a cached copy is used offline)
        here = hf_cache.cached(repo, file) if file else None
        if here is None or file is None:
            raise hub_error(e, hf_cache.file_url(repo, file) if file else f"{hf_endpoint()}/{repo}") from e
        note(f"the Hub cannot be asked ({type(e).__name__}): using the copy in the Hugging Face cache")
        return _record(store, name, repo, file, here, None), False
    where = hf_cache.paths(remote)
    sha256 = sha256 or remote.sha256
    downloaded = False
    if where.pointer.is_file():
        note("already in the Hugging Face cache")
    elif (remote.xet and not where.blob.is_file() and not where.incomplete.exists()
          and _xet_download(remote, where, sha256, note)):  # the library takes its own lock
        downloaded = True
    else:
        with hf_cache.lock(where):
            if where.blob.is_file():
                note("its blob is already in the Hugging Face cache")
            else:
                own_client = client is None
                client = client or _client(hf_cache.token())
                try:
                    download(client, hf_cache.file_url(repo, file, remote.commit), where.blob,
                             part=where.incomplete, size=remote.size or size, sha256=sha256,
                             progress=progress, note=note)
                finally:
                    if own_client:
                        client.close()
                downloaded = True
            hf_cache.place(remote, where)
    return _record(store, name, repo, file, where.pointer, sha256), downloaded


def _xet_download(remote: hf_cache.RemoteFile, where: hf_cache.CachePaths, sha256: str | None,
                  note: Note) -> bool:
    """A Xet-stored file through the library's Xet client (parallel, deduplicated); False,
    with a note, when that fails, so the plain resumable download takes over."""
    from huggingface_hub import hf_hub_download

    note("stored with Xet: downloading through huggingface_hub")
    try:
        got = Path(hf_hub_download(remote.repo, remote.file, revision=remote.commit,
                                   cache_dir=hf_cache.cache_root(), endpoint=hf_endpoint(), token=hf_cache.token()))
    except Exception as e:  # noqa: BLE001 - any failure falls back to the path that resumes
        note(f"the Xet download failed ({type(e).__name__}: {str(e)[:120]}); downloading over HTTP instead")
        return False
    def drop() -> None:
        for p in (where.pointer, where.blob):
            p.unlink(missing_ok=True)

    _checked(got, sha256, remote.file, drop)
    return True


def _record(store: ModelStore, name: str, repo: str, file: str, path: Path, sha256: str | None) -> StoredModel:
    entry = StoredModel(name=name, file=str(path), url=hf_cache.file_url(repo, file), size=path.stat().st_size,
                        sha256=sha256, repo=repo)
    store.add(entry)
    return entry


def _expected(responses: list[httpx.Response]) -> tuple[int | None, str | None]:
    """Size and sha256 as Hugging Face reports them (on the redirect, for LFS files)."""
    size = sha = None
    for r in responses:
        linked = r.headers.get("x-linked-etag") or r.headers.get("etag") or ""
        linked = linked.strip().removeprefix("W/").strip('"')
        if re.fullmatch(r"[0-9a-fA-F]{64}", linked):
            sha = linked.lower()
        if r.headers.get("x-linked-size", "").isdigit():
            size = int(r.headers["x-linked-size"])
    return size, sha


def _total(r: httpx.Response, have: int) -> int | None:
    m = re.match(r"bytes \d+-\d+/(\d+)", r.headers.get("content-range", ""))
    if m:
        return int(m.group(1))
    length = r.headers.get("content-length")
    return have + int(length) if length and length.isdigit() else None


def download(client: httpx.Client, url: str, dest: Path, *, size: int | None = None,
             sha256: str | None = None, progress: Progress | None = None,
             note: Note | None = None, part: Path | None = None) -> tuple[int, str]:
    """Fetch `url` to `dest` through `part` (default `dest.part`; see the module docstring);
    returns the final size and sha256."""
    note = note or (lambda s: None)
    part = part or dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        if have:
            note(f"resuming at {have / 1e6:.1f} MB")
        try:
            with client.stream("GET", url, headers=headers) as r:
                if r.status_code == 416 and have:  # nothing left to fetch: verify what we have
                    break
                if r.status_code >= 400:
                    raise _http_error(r.status_code, url)
                if have and r.status_code != 206:
                    note("the server ignored the Range request: starting over")
                    have = 0
                known_size, known_sha = _expected([*r.history, r])
                size = size or known_size or _total(r, have)
                sha256 = sha256 or known_sha
                _check_space(part, (size or 0) - have)
                _receive(r, part, have, size, progress)
            break
        except (httpx.ReadError, httpx.RemoteProtocolError, httpx.ReadTimeout) as e:
            failures += 1
            kept = part.stat().st_size if part.exists() else 0
            if failures > RETRIES:
                raise PullError(f"the connection kept dropping ({e or type(e).__name__}); "
                                f"{kept / 1e6:.1f} MB are kept: run the same pull again to resume") from e
            note(f"connection dropped at {kept / 1e6:.1f} MB; retrying ({failures}/{RETRIES})")
            time.sleep(0.2 * failures)
        except httpx.TransportError as e:
            raise _network_error(e, url) from e
    return _verify_and_place(part, dest, size, sha256, note)


def _check_space(part: Path, needed: int) -> None:
    free = shutil.disk_usage(part.parent).free
    if needed > 0 and free < needed:
        raise PullError(f"disk full: {needed / 1e6:.0f} MB needed in {part.parent}, "
                        f"{free / 1e6:.0f} MB free")


def _receive(r: httpx.Response, part: Path, have: int, size: int | None, progress: Progress | None) -> None:
    try:
        with part.open("ab") as f:  # not "wb": it would truncate before the lock is checked
            _lock(f, part)
            if not have:
                f.truncate(0)
            done = have
            if progress:
                progress(done, size)
            for chunk in r.iter_bytes():  # as received: a drop loses nothing already here
                f.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, size)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise PullError(f"disk full while writing {part}: free some space and run the same "
                            f"pull again to resume") from e
        raise PullError(f"cannot write {part}: {e.strerror or e}") from e


def _lock(f: object, part: Path) -> None:
    """Two pulls writing one .part file would interleave garbage: the second one stops."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # type: ignore[attr-defined]
    except OSError as e:
        raise PullError(f"another pull is writing {part} right now") from e


def _verify_and_place(part: Path, dest: Path, size: int | None, sha256: str | None,
                      note: Note) -> tuple[int, str]:
    got = part.stat().st_size
    if size is not None and got != size:
        raise PullError(f"incomplete download: {got} of {size} bytes; run the same pull again to resume")
    note("verifying")
    actual = _checked(part, sha256, dest.name, part.unlink)
    os.replace(part, dest)
    return got, actual


def _checked(path: Path, sha256: str | None, name: str, drop: Callable[[], None]) -> str:
    """The sha256 of a downloaded file, which must match the expected one (when known) and
    start as a GGUF does; otherwise `drop()` deletes what was written (resuming it could
    never succeed) and PullError says why."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        magic = f.read(4)
        f.seek(0)
        for block in iter(lambda: f.read(CHUNK * 4), b""):
            digest.update(block)
    actual = digest.hexdigest()
    if sha256 and actual != sha256.lower():
        drop()
        raise PullError(f"checksum mismatch for {name}: expected sha256 {sha256}, got {actual}; "
                        f"the partial file was deleted, pull again to download it afresh")
    if magic != b"GGUF":
        drop()
        raise PullError(f"the download is not a GGUF model (it starts with {magic!r}, not b'GGUF'); "
                        f"deleted it. Is the URL right?")
    return actual
