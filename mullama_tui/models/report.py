"""How the model commands look in a terminal: the pull progress bar and the tables."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from .catalog import FROM, LocalModel
from .resolve import Alias
from .store import ModelStore, StoredModel

if TYPE_CHECKING:  # Rich loads only where a table or a bar is drawn: `show` prints plain lines
    from rich.console import Console
    from rich.table import Table


def pull_with_progress(name: str, *, quiet: bool = False,
                       console: Console | None = None) -> tuple[StoredModel, bool]:
    """`pull` with a Rich progress bar (bytes, speed, ETA) on stderr; its notes alone when
    stderr is not a terminal, nothing with `quiet`. (The downloader, and httpx with it, loads only here:
    `models` and `show` answer without it.)"""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from .pull import pull

    console = console or Console(stderr=True)
    if quiet:
        return pull(name)
    if not console.is_terminal:  # no bar, but what happened still says so, a line each
        return pull(name, note=lambda text: console.print(f"{name}: {text}", highlight=False, markup=False,
                                                          soft_wrap=True))
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        label = name.rsplit("/", 1)[-1] if "://" in name else name  # a URL: just its file name
        task = bar.add_task(label if len(label) <= 40 else label[:39] + "…", total=None)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        def note(text: str) -> None:
            bar.console.print(f"[dim]{name}: {text}[/dim]", highlight=False)

        return pull(name, progress=progress, note=note)


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def models_table(rows: list[LocalModel]) -> Table:
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("NAME", "FROM", "SIZE", "QUANT", "PARAMS", "CONTEXT", ""):
        # long names (URLs) fold onto more lines; the figures never do
        table.add_column(col, no_wrap=col not in ("NAME", ""), overflow="fold",
                         justify="right" if col in ("SIZE", "CONTEXT") else "left")
    for r in rows:
        i = r.info
        marks = ", ".join(m for m, on in (("default", r.is_default),
                                          (f"unreadable: {r.error}", bool(r.error))) if on)
        table.add_row(r.name, FROM.get(r.kind, r.kind), _size(r.path.stat().st_size if r.path.exists() else None),
                      i.quantization if i else "?", i.params_label if i else "?",
                      f"{i.context_length:,}" if i and i.context_length else "?", marks)
    return table


def show_lines(m: LocalModel) -> list[tuple[str, str]]:
    i = m.info
    lines = [("name", m.name)]
    if i is not None:
        lines += [("model", i.name), ("architecture", i.architecture),
                  ("parameters", f"{i.params_label} ({i.n_params:,})"),
                  ("context length", f"{i.context_length:,}"), ("quantization", i.quantization),
                  ("chat template", "yes" if i.has_chat_template else "no (chat mode falls back to ChatML)")]
    else:
        lines.append(("error", m.error or "?"))
    lines += [("size", _size(m.path.stat().st_size if m.path.exists() else None)), ("path", str(m.path))]
    if m.entry is not None:
        lines += [("pulled from", m.entry.url), ("sha256", m.entry.sha256 or "?"),
                  ("pulled", datetime.fromtimestamp(m.entry.pulled_at).strftime("%Y-%m-%d %H:%M"))]
    if m.is_default:
        lines.append(("default", "yes"))
    return lines


def aliases_table(table_: dict[str, Alias], store: ModelStore) -> Table:
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("ALIAS", "SIZE", "PULLED", "DESCRIPTION"):
        table.add_column(col, justify="right" if col == "SIZE" else "left")
    pulled: Callable[[str], bool] = lambda n: store.find(n) is not None  # noqa: E731
    for a in table_.values():
        table.add_row(a.name, f"~{_size(a.size_mb * 1_000_000)}" if a.size_mb else "?",
                      "yes" if pulled(a.name) else "", a.description)
    return table
