"""What each import loads: the engine's vocabulary and the remote backend stay cheap (no
llama.cpp, no numpy), `--help` never loads llama.cpp, and the package's face is lazy.

Each check runs in a fresh interpreter (this one has loaded everything long ago). The
layers themselves are checked by import-linter (`lint-imports`, contracts in
pyproject.toml), which .ci/run runs before the tests."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("llama_cpp", "numpy", "textual", "fastapi")


def loaded_after(code: str) -> dict[str, bool]:
    """Which of HEAVY are in sys.modules after running `code` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps({{m: m in sys.modules for m in {HEAVY!r}}}))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", ["mullama_tui.engine.types", "mullama_tui.engine.api",
                                    "mullama_tui.engine.remote", "mullama_tui.engine.generation",
                                    "mullama_tui.backends", "mullama_tui"])
def test_the_engine_vocabulary_and_remote_backend_load_neither_llama_cpp_nor_numpy(module):
    loaded = loaded_after(f"import {module}")
    assert not loaded["llama_cpp"] and not loaded["numpy"], loaded


def test_a_remote_engine_opens_without_loading_llama_cpp():
    loaded = loaded_after("from mullama_tui.backends import BackendChoice, open_engine\n"
                          "e = open_engine(BackendChoice('openai', 'http://127.0.0.1:9/v1'), None)\n"
                          "assert e.model.placement is None and e.thread_choice() is None\n"
                          "e.close()")
    assert not loaded["llama_cpp"] and not loaded["numpy"], loaded


def test_the_cli_module_loads_no_model_library_and_no_ui():
    loaded = loaded_after("import mullama_tui.cli")
    assert loaded == dict.fromkeys(HEAVY, False), loaded


def test_the_package_face_is_lazy_and_still_gives_the_tutorial_api():
    loaded = loaded_after("import mullama_tui\nassert mullama_tui.SamplerParams")
    assert not loaded["llama_cpp"]
    loaded = loaded_after("from mullama_tui import Model, Context\nassert Model.load and Context")
    assert loaded["llama_cpp"]  # loaded when asked for, not before


def test_the_version_is_read_from_the_package_metadata():
    from importlib.metadata import version

    import mullama_tui

    assert mullama_tui.__version__ == version("mullama-tui") != ""
    with pytest.raises(AttributeError):
        mullama_tui.no_such_name  # noqa: B018


def _modules_after_cli(*args: str) -> set[str]:
    """The modules loaded once `mullama-tui ARGS` has run (its output thrown away)."""
    probe = (f"import sys, json\nfrom mullama_tui import cli\nsys.argv = ['mullama-tui', *{list(args)!r}]\n"
             "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
             "print(json.dumps(sorted(sys.modules)), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return set(json.loads(out.stderr.strip().splitlines()[-1]))


def test_help_models_and_show_answer_without_rich_or_the_engines_vocabulary(home, model_path):
    """What keeps `--help`, `models` and `show` under 0.2 s (`bench --startup`): plain help
    and plain tables, none of the engine's dataclasses built, only the command run built."""
    for args in (["--help"], ["show", str(model_path)], ["run", "--help"], ["models"]):
        loaded = _modules_after_cli(*args)
        assert not {m for m in loaded if m == "rich" or m.startswith("rich.")}, (args, "rich")
        assert "mullama_tui.engine.types" not in loaded and "llama_cpp" not in loaded, args
