"""How the model commands look in a terminal: the pull progress bar and the tables."""

from __future__ import annotations

import shutil
import textwrap
import unicodedata
from datetime import datetime
from typing import TYPE_CHECKING

from .catalog import FROM, LocalModel
from .resolve import Alias
from .store import ModelStore, StoredModel

if TYPE_CHECKING:  # Rich loads only where the pull bar is drawn: the tables are plain text
    from rich.console import Console


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


def cell_width(text: str) -> int:
    """Columns `text` takes in a terminal (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def fold(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` columns: at spaces where it has them, else (a
    URL, a long file name) anywhere."""
    if cell_width(text) <= width:
        return [text]
    lines = textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)
    return lines or [""]


def plain_table(header: list[str], rows: list[list[str]], *, right: frozenset[str] = frozenset(),
                fold_last: bool = True, width: int | None = None, bold: bool = False) -> str:
    """Aligned columns two spaces apart, as `ollama list` prints them; when they do not fit
    `width`, the first column folds (long names, URLs), and the last with it if `fold_last`.
    Plain text: no Rich, so `models` answers in a tenth of a second less."""
    width = width or shutil.get_terminal_size((100, 24)).columns
    n = len(header)
    widths = [max([cell_width(header[i]), *(cell_width(r[i]) for r in rows)]) for i in range(n)]
    foldable = [0, n - 1] if fold_last and n > 1 else [0]
    while sum(widths) + 2 * (n - 1) > width and any(widths[i] > 12 for i in foldable):
        i = max(foldable, key=lambda k: widths[k])
        widths[i] -= 1

    def line(cells: list[str]) -> list[str]:
        parts = [fold(c, widths[i]) if i in foldable else [c] for i, c in enumerate(cells)]
        out = []
        for k in range(max(len(p) for p in parts)):
            row = []
            for i, p in enumerate(parts):
                c = p[k] if k < len(p) else ""
                pad = " " * (widths[i] - cell_width(c))
                row.append(pad + c if header[i] in right else c + pad)
            out.append("  ".join(row).rstrip())
        return out

    head = "  ".join(h.rjust(widths[i]) if h in right else h.ljust(widths[i]) for i, h in enumerate(header)).rstrip()
    return "\n".join([f"\x1b[1m{head}\x1b[0m" if bold else head, *(x for r in rows for x in line(r))])


def models_table(rows: list[LocalModel], *, width: int | None = None, bold: bool = False) -> str:
    """`models`: name, where it is from, size, quantization, parameters, context, marks."""
    body = []
    for r in rows:
        i = r.info
        marks = ", ".join(m for m, on in (("default", r.is_default),
                                          (f"unreadable: {r.error}", bool(r.error))) if on)
        body.append([r.name, FROM.get(r.kind, r.kind), _size(r.path.stat().st_size if r.path.exists() else None),
                     i.quantization if i else "?", i.params_label if i else "?",
                     f"{i.context_length:,}" if i and i.context_length else "?", marks])
    return plain_table(["NAME", "FROM", "SIZE", "QUANT", "PARAMS", "CONTEXT", ""], body,
                       right=frozenset({"SIZE", "CONTEXT"}), width=width, bold=bold)


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


def aliases_table(table_: dict[str, Alias], store: ModelStore, *, width: int | None = None,
                  bold: bool = False) -> str:
    """`models --available`: each alias, its size, whether it is pulled, what it is."""
    body = [[a.name, f"~{_size(a.size_mb * 1_000_000)}" if a.size_mb else "?",
             "yes" if store.find(a.name) is not None else "", a.description] for a in table_.values()]
    return plain_table(["ALIAS", "SIZE", "PULLED", "DESCRIPTION"], body, right=frozenset({"SIZE"}), width=width,
                       bold=bold)
