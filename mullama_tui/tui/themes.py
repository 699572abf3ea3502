"""Theme files (TOML) -> Textual themes: the ones shipped with the package, then the
user's own in `<config dir>/themes`. A broken file is reported and skipped, never fatal."""

from __future__ import annotations

import sys
from pathlib import Path

from textual.theme import Theme

from ..config import config_dir

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

FIELDS = ("primary", "secondary", "accent", "foreground", "background", "surface", "panel",
          "success", "warning", "error", "dark")


def shipped_theme_dir() -> Path:
    """Installed wheels carry `mullama_tui/themes`; a source checkout has `themes/` at the top."""
    inside = Path(__file__).resolve().parent.parent / "themes"
    return inside if inside.is_dir() else Path(__file__).resolve().parents[2] / "themes"


def load_theme_file(path: Path) -> Theme:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if "primary" not in data:
        raise ValueError("a theme needs at least 'primary'")
    kwargs = {k: data[k] for k in FIELDS if k in data}
    return Theme(name=str(data.get("name", path.stem)), **kwargs)


def load_themes() -> tuple[list[Theme], list[str]]:
    """All themes found, and one message per file that could not be read."""
    themes: list[Theme] = []
    problems: list[str] = []
    for folder in (shipped_theme_dir(), config_dir() / "themes"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.toml")):
            try:
                themes.append(load_theme_file(path))
            except Exception as e:  # any broken file: report, skip, go on
                problems.append(f"theme {path.name} ignored: {e}")
    return themes, problems
