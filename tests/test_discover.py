"""The models other tools downloaded (models/discover.py): real layouts of Ollama's store,
the Hugging Face cache, LM Studio's folder and llama.cpp's cache, made in a temporary home
from the bundled GGUF (linked, not copied); each listed with its source, runnable by its
name, never deleted by `rm`; broken pieces are one note each."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest

from mullama_tui.models.discover import discover, find_by_name

from helpers import run_cli


def link(src: Path, dst: Path) -> None:
    """`dst` as another name of `src` (a hard link: no copy of 98 MB, and a path of its own,
    as another tool's download has), copied where the folders are on different disks."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="session")
def bundled_sha(model_path) -> str:
    return _sha256(model_path)


def make_ollama(root: Path, model_path: Path, sha: str, name: tuple[str, ...] = ("library", "smol", "135m"),
                projector: bool = False) -> Path:
    """Ollama's store: a manifest in its format, the GGUF as a blob named by its sha256."""
    blob = root / "blobs" / f"sha256-{sha}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        link(model_path, blob)
    layers = [{"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{sha}",
               "size": model_path.stat().st_size},
              {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:" + "1" * 64, "size": 10}]
    if projector:
        layers.append({"mediaType": "application/vnd.ollama.image.projector", "digest": "sha256:" + "2" * 64,
                       "size": 10})
    manifest = root / "manifests" / "registry.ollama.ai" / Path(*name)
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({"schemaVersion": 2, "mediaType":
                                    "application/vnd.docker.distribution.manifest.v2+json",
                                    "config": {"digest": "sha256:" + "3" * 64}, "layers": layers}))
    return manifest


def make_hf(root: Path, model_path: Path, sha: str, repo: str = "owner/smol-GGUF",
            file: str = "smol-Q4_1.gguf") -> Path:
    """The Hugging Face cache layout: blobs by hash, a snapshot of links, refs/main."""
    base = root / ("models--" + repo.replace("/", "--"))
    blob = base / "blobs" / sha
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        link(model_path, blob)
    rev = "a" * 40
    snap = base / "snapshots" / rev / file
    snap.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(blob, snap.parent), snap)
    (base / "refs").mkdir(exist_ok=True)
    (base / "refs" / "main").write_text(rev)
    return snap


@pytest.fixture()
def others(home, model_path, bundled_sha) -> dict[str, Path]:
    """One model in each of the four tools' default places under the test's home."""
    user = Path(os.environ["HOME"])
    ollama = Path(os.environ["OLLAMA_MODELS"])
    make_ollama(ollama, model_path, bundled_sha)
    make_hf(user / ".cache" / "huggingface" / "hub", model_path, bundled_sha)
    lms = user / ".lmstudio" / "models" / "pub" / "smol-GGUF" / "smol-Q4_1.gguf"
    lms.parent.mkdir(parents=True)
    link(model_path, lms)
    (lms.parent / "mmproj-smol.gguf").write_bytes(b"GGUF")  # a vision projector: not a model
    llama = user / ".cache" / "llama.cpp" / "owner_smol-GGUF_smol-Q4_1.gguf"
    llama.parent.mkdir(parents=True)
    link(model_path, llama)
    return {"ollama": ollama, "user": user}


def test_each_tools_models_are_found_and_named_as_the_tool_names_them(others):
    problems: list[str] = []
    found = discover(problems=problems)
    names = sorted((f.source, f.name) for f in found)
    assert names == [("hf", "hf:owner/smol-GGUF:smol-Q4_1.gguf"),
                     ("llama.cpp", "llama.cpp:owner_smol-GGUF_smol-Q4_1.gguf"),
                     ("lmstudio", "lmstudio:pub/smol-GGUF/smol-Q4_1.gguf"), ("ollama", "ollama:smol:135m")]
    assert problems == []
    assert find_by_name("smol:135m", found).source == "ollama"  # a plain name, unique
    assert find_by_name("ollama:smol:135m", found).path.name.startswith("sha256-")


def test_models_lists_them_with_their_source_and_run_uses_one_in_place(others):
    r = run_cli("models", "--json")
    assert r.returncode == 0, r.stderr
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    assert rows["ollama:smol:135m"]["from"] == "Ollama" and rows["ollama:smol:135m"]["quantization"] == "Q4_1"
    assert {rows[n]["from"] for n in rows} >= {"Ollama", "HF cache", "LM Studio", "llama.cpp", "bundled"}
    table = run_cli("models")
    assert "Ollama" in table.stdout and "LM Studio" in table.stdout
    run = run_cli("run", "smol:135m", "-n", "4", "-t", "0", "--raw", "Hello")
    assert run.returncode == 0 and run.stdout.strip(), run.stderr
    run = run_cli("run", "hf:owner/smol-GGUF:smol-Q4_1.gguf", "-n", "4", "-t", "0", "--raw", "Hello")
    assert run.returncode == 0 and run.stdout.strip(), run.stderr


def test_rm_never_deletes_another_tools_file(others, model_path):
    r = run_cli("rm", "ollama:smol:135m", "--yes")
    assert r.returncode == 1 and "belongs to Ollama" in r.stderr and "Traceback" not in r.stderr
    assert model_path.exists() and discover()[0].path.exists()


def test_a_source_can_be_turned_off_in_config(others):
    from helpers import configure

    configure(model_sources=["hf"])
    rows = json.loads(run_cli("models", "--json").stdout)
    assert {m["from"] for m in rows} == {"HF cache", "bundled"}
    r = run_cli("run", "ollama:smol:135m", "-n", "2", "hi")
    assert r.returncode == 1 and "Ollama's models are turned off" in r.stderr


def test_broken_pieces_are_one_note_each_and_the_good_models_stay(others, model_path, bundled_sha):
    ollama, user = others["ollama"], others["user"]
    (ollama / "manifests" / "registry.ollama.ai" / "library" / "broken").mkdir(parents=True)
    (ollama / "manifests" / "registry.ollama.ai" / "library" / "broken" / "latest").write_text("{not json")
    make_ollama(ollama, model_path, "9" * 64, ("library", "gone", "1b"))
    (ollama / "blobs" / ("sha256-" + "9" * 64)).unlink()  # its blob is missing
    make_ollama(ollama, model_path, bundled_sha, ("library", "llava", "7b"), projector=True)
    hf = user / ".cache" / "huggingface" / "hub"
    dangling = hf / "models--x--y" / "snapshots" / "b" / "m.gguf"
    dangling.parent.mkdir(parents=True)
    os.symlink("../../blobs/nothing", dangling)
    notgguf = user / ".lmstudio" / "models" / "pub" / "fake" / "fake.gguf"
    notgguf.parent.mkdir(parents=True)
    notgguf.write_text("this is not a model")
    r = run_cli("models", "--verbose")
    assert r.returncode == 0 and "Traceback" not in r.stderr
    notes = [line for line in r.stderr.splitlines() if line.startswith("note:")]
    assert any("ollama:broken:latest" in n and "manifest" in n for n in notes)
    assert any("ollama:gone:1b" in n and "missing" in n for n in notes)
    assert any("llava:7b" in n and "projector" in n for n in notes)
    assert any("dangling" in n for n in notes) and any("fake.gguf" in n and "not a GGUF" in n for n in notes)
    names = {m["name"] for m in json.loads(run_cli("models", "--json").stdout)}
    assert names >= {"ollama:smol:135m", "ollama:llava:7b", "hf:owner/smol-GGUF:smol-Q4_1.gguf",
                     "lmstudio:pub/smol-GGUF/smol-Q4_1.gguf"}  # the good ones are all listed
    quiet = run_cli("models")
    assert "could not be used" in quiet.stderr and "manifest" not in quiet.stderr


def test_listing_hundreds_of_models_stays_fast(home, tmp_path):
    """300 models (Ollama manifests and HF files, each a GGUF with a real header: a small
    random-weight one): the first listing reads each header once, the next ones take them
    from the header cache."""
    from mullama_tui.models.tiny import make_random_gguf

    small = make_random_gguf(tmp_path / "small.gguf", n_vocab=2000)
    sha = _sha256(small)
    user = Path(os.environ["HOME"])
    ollama = Path(os.environ["OLLAMA_MODELS"])
    hf = user / ".cache" / "huggingface" / "hub"
    for i in range(150):
        copy = tmp_path / f"m{i}.gguf"
        link(small, copy)
        make_ollama(ollama, copy, f"{i:064x}", ("library", f"m{i}", "q4"))
        make_hf(hf, copy, sha, f"o/r{i}", "f.gguf")
    t0 = time.perf_counter()
    first = run_cli("models", "--json")
    t1 = time.perf_counter()
    again = run_cli("models", "--json")
    t2 = time.perf_counter()
    rows = json.loads(again.stdout)
    assert first.returncode == 0 and sum(1 for r in rows if r["from"] in ("Ollama", "HF cache")) == 300
    print(f"\n301 models: first listing {t1 - t0:.2f} s, then {t2 - t1:.2f} s (a fresh interpreter each)")
    assert t2 - t1 < t1 - t0  # the header cache did its work (the wall time itself is the benchmark's job)
