"""The Hugging Face hub cache, shared by every HF tool: where `pull` puts `hf:` names and aliases.

Layout (owned by `huggingface_hub`, which this module leans on for what it does well):
`<cache>/models--owner--repo/blobs/<etag>` holds the bytes, `snapshots/<commit>/<file>` is a
relative link to that blob, and `refs/main` names the commit. A file another tool downloaded
is found there without a download; one `pull` downloaded is seen by `hf`, transformers,
llama.cpp's `-hf` readers and `models` of other tools.

What comes from the library: the cache folder's location rules (`HF_HUB_CACHE`, `HF_HOME`),
the token (`HF_TOKEN`, else `hf auth login`'s file), the file metadata (commit, etag, size,
whether the file is stored with Xet), the repository listing and its lock files. What stays
ours: the bytes themselves travel through `pull.download`, into `blobs/<etag>.incomplete`
(the very name the library uses), so an interrupted pull resumes where it stopped instead of
starting over, and the sha256 is checked before the blob gets its name.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .discover import hf_cache_dir
from .resolve import hf_endpoint
from .store import delete_files

SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RemoteFile:
    """One file of a Hub repository at a commit, as its HEAD answer describes it."""

    repo: str
    file: str
    commit: str
    etag: str
    size: int | None
    xet: bool  # stored with Xet: the library's Xet client can fetch it in parallel

    @property
    def sha256(self) -> str | None:
        """LFS files (every GGUF) are named by their sha256."""
        return self.etag if SHA256.fullmatch(self.etag) else None


@dataclass(frozen=True)
class CachePaths:
    """Where one file of one commit lives in the cache."""

    storage: Path  # models--owner--repo
    blob: Path
    pointer: Path  # snapshots/<commit>/<file>
    lock: Path

    @property
    def incomplete(self) -> Path:
        return self.blob.with_name(self.blob.name + ".incomplete")


def cache_root() -> Path:
    """The hub cache, by the library's own rules (read each time: the tests move it)."""
    return hf_cache_dir()


def token() -> str | None:
    """`HF_TOKEN`, else the token `hf auth login` saved."""
    from huggingface_hub import get_token

    return get_token()


def storage_folder(repo: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache_root() / repo_folder_name(repo_id=repo, repo_type="model")


def paths(remote: RemoteFile) -> CachePaths:
    storage = storage_folder(remote.repo)
    return CachePaths(storage, storage / "blobs" / remote.etag,
                      storage / "snapshots" / remote.commit / Path(*remote.file.split("/")),
                      cache_root() / ".locks" / storage.name / f"{remote.etag}.lock")


def file_url(repo: str, file: str, revision: str = "main") -> str:
    from huggingface_hub import hf_hub_url

    return hf_hub_url(repo, file, revision=revision, endpoint=hf_endpoint())


def metadata(repo: str, file: str) -> RemoteFile:
    """Commit, etag, size and storage of `file` on the Hub (one HEAD request). Raises
    the library's errors (see pull.hub_error for what a user is told)."""
    from huggingface_hub import get_hf_file_metadata

    meta = get_hf_file_metadata(file_url(repo, file), token=token(), endpoint=hf_endpoint())
    if not meta.commit_hash or not meta.etag:
        raise ValueError(f"{hf_endpoint()} did not say which commit and blob {repo}/{file} is "
                         f"(no X-Repo-Commit or ETag header): is HF_ENDPOINT a Hugging Face mirror?")
    return RemoteFile(repo, file, meta.commit_hash, meta.etag, meta.size, meta.xet_file_data is not None)


def list_files(repo: str) -> list[dict[str, Any]]:
    """The repository's files: path, size and sha256 (for LFS files)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi(endpoint=hf_endpoint(), token=token())
    out: list[dict[str, Any]] = []
    for item in api.list_repo_tree(repo, recursive=True):
        if isinstance(item, RepoFile):
            out.append({"path": item.path, "size": item.size,
                        "sha256": item.lfs.sha256 if item.lfs is not None else None})
    return out


def cached(repo: str, file: str) -> Path | None:
    """The file at the commit `refs/main` names, if the cache has it (no network)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, file, cache_dir=cache_root())
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


def place(remote: RemoteFile, where: CachePaths) -> Path:
    """Link the snapshot entry to its blob and point `refs/main` at the commit: from now on
    every HF tool sees the file. Where links cannot be made (some Windows setups), the blob
    is moved into the snapshot, as the library itself does."""
    where.pointer.parent.mkdir(parents=True, exist_ok=True)
    if not where.pointer.exists():
        if where.pointer.is_symlink():  # dangling: its blob was deleted by hand
            where.pointer.unlink()
        try:
            os.symlink(os.path.relpath(where.blob, where.pointer.parent), where.pointer)
        except OSError:
            shutil.move(str(where.blob), str(where.pointer))
    refs = where.storage / "refs"
    refs.mkdir(parents=True, exist_ok=True)
    ref = refs / "main"
    if not ref.is_file() or ref.read_text(encoding="utf-8").strip() != remote.commit:
        tmp = ref.with_name(f"main.{os.getpid()}.tmp")
        tmp.write_text(remote.commit, encoding="utf-8")
        tmp.replace(ref)
    return where.pointer


def lock(where: CachePaths) -> Any:
    """The library's lock for this blob: a `hf download` of the same file waits for us, and we for it."""
    from huggingface_hub.utils import WeakFileLock  # type: ignore[attr-defined]  # lazily exported

    where.lock.parent.mkdir(parents=True, exist_ok=True)
    return WeakFileLock(str(where.lock))


def owns(path: Path) -> bool:
    """Whether `path` is inside the hub cache."""
    try:
        path.absolute().relative_to(cache_root().absolute())
        return True
    except ValueError:
        return False


def remove(pointer: Path) -> int:
    """Delete a snapshot entry, and its blob when no other snapshot links to it (what
    `hf cache delete` does for one file); bytes freed."""
    blob = pointer.resolve() if pointer.is_symlink() else None
    if blob is None:  # a copy, not a link (where links cannot be made)
        freed = delete_files(pointer)
    else:
        pointer.unlink()
        freed = 0
    if blob is not None and blob.parent.name == "blobs":
        storage = blob.parent.parent
        still_used = any(p.is_symlink() and p.resolve() == blob
                         for p in (storage / "snapshots").rglob("*"))
        if not still_used:
            freed += delete_files(blob, blob.with_name(blob.name + ".incomplete"))
    try:
        pointer.parent.rmdir()  # an emptied snapshot folder goes too
    except OSError:
        pass
    return freed
