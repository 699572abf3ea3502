"""Where two models disagree: per-token KL divergence and top-1 agreement.

Two files of one model (two quantizations, the same vocabulary) read the same text: the
prompt and the tokens one of them generated (teacher forcing: the text is fixed, each
model only says what it would have predicted at every position). For each generated
token: KL(P_a || P_b) over the whole vocabulary, and whether both put the same token
first. That is what `llama-perplexity --kl-divergence` measures as a batch job over a
corpus; here it is for the user's own prompt, token by token, so a view can show where.

Each model reads the text in one context of its own, a batch of up to 512 tokens per
decode (not the engines' contexts: their scheduler threads own those), on every core:
it is prompt processing, compute-bound, and the comparison has ended when it runs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .llama import LlamaContext, LlamaModel
from .threads import cpu_cores
from .types import Agreement, InvalidParamsError

__all__ = ["Agreement", "agreement", "log_probs"]

CHUNK = 512


def log_probs(model: LlamaModel, prompt: list[int], generated: list[int], n_threads: int | None = None) -> Any:
    """The model's log-probabilities (float64, one row per generated token, the whole
    vocabulary) for the next token at each position of `generated`, the text fixed."""
    if not prompt:
        raise InvalidParamsError("teacher forcing needs a prompt of at least one token")
    seq = prompt + generated[:-1]
    first = len(prompt) - 1  # the position whose logits predict generated[0]
    rows = np.empty((len(generated), model.n_vocab), dtype=np.float64)
    n_ctx = max(64, -(-(len(seq) + 8) // 64) * 64)
    with LlamaContext(model, n_ctx, 1, min(CHUNK, max(1, len(seq))), n_threads or cpu_cores()) as ctx:
        for start in range(0, len(seq), ctx.n_batch):
            batch = ctx.batch
            batch.clear()
            wanted = []
            for pos in range(start, min(start + ctx.n_batch, len(seq))):
                idx = batch.add(seq[pos], pos, 0, pos >= first)
                if pos >= first:
                    wanted.append((pos - first, idx))
            if ctx.decode() != 0:
                raise InvalidParamsError(f"{model.path}: could not read the text back (llama_decode failed)")
            for row, idx in wanted:
                logits = ctx.logits(idx).astype(np.float64)
                top = logits.max()
                rows[row] = logits - top - np.log(np.exp(logits - top).sum())
    return rows


def agreement(a: LlamaModel, b: LlamaModel, prompt: list[int], generated: list[int],
              n_threads: int | None = None) -> Agreement:
    """How far `b` is from `a` on the tokens `a` generated after `prompt`. Raises
    InvalidParamsError when the two do not share a vocabulary (then there is no
    per-token comparison to make)."""
    if a.n_vocab != b.n_vocab or any(a.token_text(t) != b.token_text(t) for t in (prompt[:8] + generated[:8])):
        raise InvalidParamsError(f"{b.path} and {a.path} do not share a vocabulary: per-token agreement needs "
                                 f"two files of the same model (two quantizations, say)")
    if not generated:
        return Agreement(0, 1.0, 0.0)
    pa = log_probs(a, prompt, generated, n_threads)
    pb = log_probs(b, prompt, generated, n_threads)
    kl = (np.exp(pa) * (pa - pb)).sum(axis=1)
    kl = np.maximum(kl, 0.0)  # rounding can leave -1e-12 where the two are equal
    b_top = pb.argmax(axis=1)
    agree = pa.argmax(axis=1) == b_top
    return Agreement(len(generated), float(agree.mean()), float(kl.mean()), [float(k) for k in kl],
                     [bool(x) for x in agree], int(kl.argmax()), [int(t) for t in b_top])
