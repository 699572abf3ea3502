"""What one compare pane is: its model and its own sampler settings and system prompt.

Apart from any front end, so that the compare screen, the console's `compare`, the history
(a saved comparison and its vote) and the arena's standings (what a vote was for) all
describe a pane the same way. A pane without a model of its own runs the app's model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .engine.types import SamplerParams

# the presets a key away (Ctrl+G cycles them; the pane editor has a button each)
PRESETS: dict[str, SamplerParams] = {"greedy": SamplerParams.greedy(), "precise": SamplerParams.precise(),
                                     "creative": SamplerParams.creative()}

# (field, the short name a title or a standings row uses for it)
KNOBS = [("temperature", "t"), ("top_k", "top-k"), ("top_p", "top-p"), ("min_p", "min-p"),
         ("repeat_penalty", "rep")]
# what a saved pane keeps of its settings (its model is saved by name, with the file as "path")
SETTINGS = ("temperature", "seed", "top_k", "top_p", "min_p", "repeat_penalty", "system")


@dataclass(frozen=True)
class PaneSetup:
    """A pane's model (a GGUF path, `openai:URL`, or None for the app's model) and settings."""

    temperature: float = 0.8
    seed: int = 42
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.1
    system: str = ""
    model: str | None = None
    model_label: str = ""

    @classmethod
    def of(cls, params: SamplerParams, *, system: str = "", seed: int | None = None) -> PaneSetup:
        """The settings of `params` (the app's, a preset's) as a pane's."""
        return cls(temperature=params.temperature, seed=params.seed if seed is None else seed, top_k=params.top_k,
                   top_p=params.top_p, min_p=params.min_p, repeat_penalty=params.penalty_repeat, system=system)

    def sampler(self, base: SamplerParams) -> SamplerParams:
        """`base` (stop strings, grammar and the rest) with this pane's knobs."""
        return replace(base, temperature=self.temperature, seed=self.seed, top_k=self.top_k, top_p=self.top_p,
                       min_p=self.min_p, penalty_repeat=self.repeat_penalty)

    def with_preset(self, name: str) -> PaneSetup:
        """This pane with a preset's sampler settings (its model, seed and system prompt kept)."""
        p = PRESETS[name]
        return replace(self, temperature=p.temperature, top_k=p.top_k, top_p=p.top_p, min_p=p.min_p,
                       repeat_penalty=p.penalty_repeat)

    def preset(self) -> str | None:
        """The preset whose sampler settings these are exactly, if one."""
        return next((name for name in PRESETS if self.with_preset(name) == self), None)

    def differences(self, base: PaneSetup | None = None) -> list[str]:
        """Its settings beyond temperature and seed, in a few words: the preset's name where
        one matches, else the knobs that differ from `base` ("top-k 20"); "sys" for its own
        system prompt."""
        name = self.preset()
        words = [name] if name is not None else [
            f"{short} {getattr(self, f):g}" for f, short in KNOBS[1:]
            if base is None or getattr(self, f) != getattr(base, f)]
        return words + (["sys"] if self.system and (base is None or self.system != base.system) else [])

    def knobs(self, base: PaneSetup | None = None) -> str:
        """Its sampler settings in a few words: "precise", "t 0.7 · top-k 20 · sys"."""
        words = self.differences(base)
        if self.preset() is None:
            words.insert(0, f"t {self.temperature:g}")
        return " · ".join(words)

    def spelled(self) -> str:
        """Every sampler knob: "t 0.2 · top-k 20 · top-p 0.8 · min-p 0.1 · rep 1.05"."""
        return " · ".join(f"{short} {getattr(self, f):g}" for f, short in KNOBS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_saved(self) -> dict[str, Any]:
        """As a comparison saves it (what `from_dict` reads back): the settings, the model's
        name as "model" (None for the app's) and its file or server as "path"."""
        return {**{k: getattr(self, k) for k in SETTINGS}, "model": self.model_label or None, "path": self.model}

    @classmethod
    def from_dict(cls, d: dict[str, Any], default: PaneSetup | None = None) -> PaneSetup:
        """From history (an older record has only temperature, seed and model: the rest is
        `default`'s); unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        got = {k: v for k, v in d.items() if k in names and v is not None}
        if "path" in d and d.get("path"):  # saved panes keep the file apart from its display name
            got["model"], got["model_label"] = d["path"], d.get("model") or ""
        return replace(default or cls(), **got)


def contender(pane: dict[str, Any]) -> str:
    """What a vote is for: the model and the settings it ran with ("Q8_0 · t 0.8",
    "Q8_0 · precise", "Q8_0 · t 0.7 · top-k 20 · sys")."""
    model = pane.get("model") or "model"
    if not any(k in pane for k, _ in KNOBS[1:]):  # a vote saved before panes had more than a temperature
        return f"{model} · t {pane.get('temperature')}"
    setup = PaneSetup.from_dict({k: v for k, v in pane.items() if k not in ("model", "path")})
    return f"{model} · {setup.knobs(PaneSetup())}"
