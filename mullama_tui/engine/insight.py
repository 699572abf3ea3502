"""Why each token was chosen: the model's distribution and the sampler's, per token.

Opt-in per request (`Request.logprobs = N`); off costs nothing. For each sampled token,
computed from the logits buffer of that step (a numpy view, no copy, no Python loop over
the vocabulary) before the next decode overwrites it:

- the model's distribution: log-softmax of the raw logits, as llama-cpp-python's and
  OpenAI's `logprobs` report it; the chosen token's log-probability, the top N, and the
  entropy (nats);
- the sampler's distribution: the one the token was actually drawn from, after
  penalties, top-k, typical, top-p, min-p and temperature (llama.cpp's server calls it
  `post_sampling_probs`). It is obtained by running the same samplers as the request's
  chain, one at a time, over the same logits (and the same penalty history), so each of
  the model's top candidates is known to be kept, or cut by which stage. Greedy decoding
  draws from a point mass: the chosen token has probability 1.
"""

from __future__ import annotations

import ctypes
import math
from typing import TYPE_CHECKING, Any

import llama_cpp as C
import numpy as np

from .types import Candidate, SamplerParams, TokenInsight

if TYPE_CHECKING:
    from .llama import LlamaContext, LlamaModel

MAX_LOGPROBS = 20
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])  # llama_token_data


def _softmax(logits: Any) -> Any:
    """Probabilities from logits, also where a tiny temperature made some of them
    infinite: the mass is then shared by the +inf ones (NaN logits count as -inf)."""
    z = np.nan_to_num(logits.astype(np.float64), nan=-np.inf)
    top = np.isposinf(z)
    if top.any():
        p = top.astype(np.float64)
    elif np.isfinite(z.max()):
        p = np.exp(z - z.max())
    else:  # every logit -inf: nothing to prefer
        p = np.ones_like(z)
    return p / p.sum()


class InsightProbe:
    """The per-sequence measuring kit: the request's samplers minus the draw, as separate
    C samplers (so the candidates each one removes can be seen), and its own penalty history."""

    def __init__(self, model: LlamaModel, params: SamplerParams, n: int) -> None:
        self.model = model
        self.n = max(1, min(n, MAX_LOGPROBS))
        self.greedy = params.is_greedy
        from .llama import constraint_samplers

        # logit biases, penalties and a grammar: they keep every candidate in place (a
        # grammar or a bias of -inf marks one impossible), so what they cut is seen by id
        self._stages: list[tuple[str, Any]] = constraint_samplers(model, params)
        self._accepting = [s for name, s in self._stages if name in ("penalties", "grammar")]
        if not self.greedy:
            if params.top_k > 0:
                self._stages.append(("top-k", C.llama_sampler_init_top_k(params.top_k)))
            if params.typical_p < 1.0:
                self._stages.append(("typical", C.llama_sampler_init_typical(params.typical_p, 1)))
            if params.top_p < 1.0:
                self._stages.append(("top-p", C.llama_sampler_init_top_p(params.top_p, 1)))
            if params.min_p > 0:
                self._stages.append(("min-p", C.llama_sampler_init_min_p(params.min_p, 1)))
            self._stages.append(("temperature", C.llama_sampler_init_temp(params.temperature)))
        self._data = (C.llama_token_data * model.n_vocab)()
        self._view = np.frombuffer(self._data, dtype=_TOKEN_DATA)
        self._ids = np.arange(model.n_vocab, dtype=np.int32)

    def accept(self, token: int) -> None:
        """A token joined the sequence (sampled, or forced): the penalty history moves on."""
        for sampler in self._accepting:
            C.llama_sampler_accept(sampler, token)

    def measure(self, ctx: LlamaContext, idx: int, token: int) -> TokenInsight:
        """The distributions at batch index `idx`, of which `token` was drawn."""
        logits = ctx.logits(idx)
        best = float(logits.max())
        shifted = np.exp(logits - best, dtype=np.float32)
        total = float(shifted.sum(dtype=np.float64))
        log_total = best + math.log(total)
        entropy = log_total - float(np.dot(shifted, logits)) / total
        head = self._head(logits, best)
        model_top = [self._candidate(int(t), float(logits[t]) - log_total) for t in head]

        # the sampler's side: the same stages over all the logits, watching the head
        view = self._view
        view["id"] = self._ids
        view["logit"] = logits
        cur = C.llama_token_data_array(self._data, len(view), -1, False)
        watched = {c.token_id for c in model_top} | {token}
        cut_by: dict[int, str] = {}
        for name, sampler in self._stages:
            C.llama_sampler_apply(sampler, ctypes.byref(cur))
            if name in ("logit-bias", "grammar"):  # in place, in vocabulary order: -inf is cut
                for t in watched - cut_by.keys():
                    if view["logit"][t] == -np.inf:
                        cut_by[t] = name
            elif name != "penalties":
                kept_now = set(view["id"][:cur.size].tolist()) if cur.size < 4096 else None
                if kept_now is not None:
                    for t in watched - kept_now - cut_by.keys():
                        cut_by[t] = name
        kept = view[:cur.size]
        if self.greedy:  # a point mass on the best (penalised) logit
            best_kept = int(kept["id"][int(np.argmax(kept["logit"]))])
            probs = {best_kept: 1.0}
            for t in watched - {best_kept}:
                cut_by.setdefault(t, "greedy")
        else:
            p = _softmax(kept["logit"])
            order = np.argsort(-p)[:self.n]
            probs = {int(kept["id"][i]): float(p[i]) for i in order}
            if token not in probs:
                where = np.flatnonzero(kept["id"] == token)
                probs[token] = float(p[where[0]]) if len(where) else 0.0
        sampled_top = [Candidate(t, self._text(t), math.log(q) if q > 0 else -math.inf)
                       for t, q in sorted(probs.items(), key=lambda kv: -kv[1])[:self.n]]
        chosen = next((c for c in model_top if c.token_id == token), None)
        logprob = chosen.logprob if chosen else float(logits[token]) - log_total
        for c in model_top:
            c.cut_by = cut_by.get(c.token_id)
        return TokenInsight(token_id=token, piece=self._text(token), logprob=logprob, top=model_top[:self.n],
                            sampled_prob=probs.get(token, 0.0), sampled_top=sampled_top, entropy=entropy,
                            kept=1 if self.greedy else int(cur.size))

    def _head(self, logits: Any, best: float) -> list[int]:
        """The top candidates by logit, best first: a threshold below the best widened until
        it holds enough (cheap), then an exact sort of those few."""
        want = max(self.n, 10)
        d = 4.0
        while True:
            head = np.flatnonzero(logits >= best - d)
            if len(head) >= want or d > 1e4:
                break
            d *= 2
        order = head[np.argsort(-logits[head], kind="stable")][:want]
        return [int(t) for t in order]

    def _candidate(self, token: int, logprob: float) -> Candidate:
        return Candidate(token, self._text(token), logprob)

    def _text(self, token: int) -> str:
        return self.model.piece(token).decode("utf-8", errors="replace")

    def free(self) -> None:
        for _, sampler in self._stages:
            C.llama_sampler_free(sampler)
        self._stages = []
        self._accepting = []
