"""A model's name as a person recognises it, for titles, history rows and pickers.

A GGUF's own `general.name` is often a training-run label ("Smollm2 135M 8k Lc100K Mix1
Ep2") and its file name can be a hash (Ollama's blobs). So: the name the model was asked
for when it is a short one (an alias `llama3.2:1b`, `ollama:qwen3:0.6b`); else the file's
base name with its size label and quantization ("SmolLM2-135M-Instruct Q4_1"); for a
file named by its hash, the GGUF's name with the same two.
"""

from __future__ import annotations

import re
from pathlib import Path

# the quantization names llama.cpp writes into file names (longest first, so Q4_K_M beats Q4_K)
QUANTS = sorted(["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q6_K", "Q2_K", "Q4_K",
                 "Q5_K", "Q3_K", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "IQ4_XS", "IQ4_NL", "IQ3_XXS", "IQ3_XS",
                 "IQ3_S", "IQ3_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ1_S", "IQ1_M", "TQ1_0", "TQ2_0",
                 "MXFP4", "BF16", "F16", "F32"], key=len, reverse=True)
_QUANT = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(QUANTS) + r")(?![A-Za-z0-9])", re.IGNORECASE)
_SIZE = re.compile(r"(?<![A-Za-z0-9.])\d+(\.\d+)?[xX]?\d*[BbMmKk](?![A-Za-z])")
_HASHLIKE = re.compile(r"(sha256[-:])?[0-9a-f]{32,}", re.IGNORECASE)
SHORT_ENOUGH = 28  # a name asked for up to this long is shown as it is


def size_label(n_params: int) -> str:
    """135M, 1.2B, 7B."""
    if n_params >= 1e9:
        b = n_params / 1e9
        return f"{b:.0f}B" if b >= 10 or abs(b - round(b)) < 0.05 else f"{b:.1f}B"
    return f"{n_params / 1e6:.0f}M" if n_params >= 1e6 else str(n_params)


def quant_of(text: str) -> str | None:
    """The quantization named in a file name or llama.cpp's model description."""
    k = re.search(r"\b(Q\d_K) - (Medium|Small|Large)\b", text)  # llama.cpp's "Q4_K - Medium"
    if k:
        return f"{k.group(1)}_{k.group(2)[0]}".upper()
    found = _QUANT.findall(text)
    return found[-1].upper() if found else None


def display_name(path: str | Path | None, *, asked_as: str | None = None, gguf_name: str = "",
                 description: str = "", n_params: int = 0) -> str:
    """See the module docstring. `asked_as`: the MODEL the user gave (or the configured
    default); `description`: llama.cpp's ("llama 135M Q4_1"), where the quantization is
    found when the file name lacks it."""
    if asked_as and not _is_pathlike(asked_as) and len(asked_as) <= SHORT_ENOUGH and asked_as != "bundled":
        return asked_as
    stem = Path(path).name if path else ""
    stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    quant = quant_of(stem) or quant_of(description)
    if not stem or _HASHLIKE.fullmatch(stem):  # an Ollama blob: its file name says nothing
        base = gguf_name.strip() or "model"
    else:
        base = _QUANT.sub("", stem)
        base = re.sub(r"[-_. ]{2,}", "-", base).strip("-_. ") or stem
    if n_params and not _SIZE.search(base):
        base += f" {size_label(n_params)}"
    return f"{base} {quant}" if quant and quant.lower() not in base.lower() else base


def _is_pathlike(name: str) -> bool:
    return name.endswith(".gguf") or "/" in name and not name.startswith(("hf:", "ollama:", "lmstudio:"))
