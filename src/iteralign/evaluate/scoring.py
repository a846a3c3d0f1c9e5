"""Shared log-likelihood scoring for the multiple-choice benchmarks: the hot path.

In: a backend with `supports_loglikelihood` and a list of `ChoiceItem(context, continuations)`.
Out: `score_choices(...)[i][j]` = log P(items[i].continuations[j] | items[i].context), summed
over the continuation's tokens (tokenised as lm-evaluation-harness does; see HFBackend).

The work is shared before anything reaches the model:
- identical (context, continuation) pairs are scored once, across items (TruthfulQA's mc1
  answers are all among its mc2 answers, so scoring both costs little more than mc2 alone);
- pairs are grouped by context, and a backend with `loglikelihood_choices` (HFBackend) reads
  each context and each continuation once (backends/hf_scoring.py); any other backend gets the
  flat, de-duplicated pair list through its `loglikelihood`;
- given a `CachedModel` (what `evaluate()` passes), every chunk of groups is one call in the
  call cache, so a repeated or resumed evaluation of the same model is served from it.

Run a protocol (hhh.py, truthfulqa.py) rather than calling this directly.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from iteralign import progress
from iteralign.backends.base import Backend
from iteralign.backends.cached import CachedModel, score_groups
from iteralign.errors import UserError

log = logging.getLogger(__name__)

# Contexts per backend call: small enough for a progress bar that moves, large enough that the
# backend can sort by length and batch well (and share a common prefix across the chunk).
CHUNK_CONTEXTS = 256


@dataclass(frozen=True)
class ChoiceItem:
    context: str
    continuations: list[str]


Scorer = Backend | CachedModel  # a CachedModel caches each chunk; a bare backend just scores


def require_loglikelihood(backend: Scorer, benchmark: str) -> None:
    """Fail with a message the user can act on, before any data is read or work is done."""
    if not getattr(backend, "supports_loglikelihood", False):
        raise UserError(
            f"benchmark {benchmark} scores answers by log-likelihood, which model {backend.spec_id or backend!r} "
            "cannot do; evaluate an hf or llamacpp model instead"
        )


def score_choices(backend: Scorer, items: list[ChoiceItem], *, benchmark: str = "scoring") -> list[list[float]]:
    require_loglikelihood(backend, benchmark)
    pairs = distinct_pairs(items)  # in first-seen order, so the backend sees a stable request
    slots = {pair: k for k, pair in enumerate(pairs)}
    total = sum(len(item.continuations) for item in items)
    log.info("%s: %d continuations, %d distinct pairs, %d distinct contexts", benchmark, total, len(pairs),
             len({c for c, _ in pairs}))

    values = _score_pairs(backend, pairs, benchmark)
    if len(values) != len(pairs):  # a misaligned answer would silently mis-score every later pair
        raise RuntimeError(f"{backend.spec_id} returned {len(values)} scores for {len(pairs)} pairs")
    bad = [p for p, v in zip(pairs, values) if not math.isfinite(v)]
    if bad:
        log.warning("%s: %d pairs scored as non-finite (e.g. continuation %r)", benchmark, len(bad), bad[0][1][:40])
    return [[values[slots[(item.context, c)]] for c in item.continuations] for item in items]


def distinct_pairs(items: list[ChoiceItem]) -> list[tuple[str, str]]:
    """Each distinct (context, continuation) once, in first-seen order."""
    return list(dict.fromkeys((item.context, c) for item in items for c in item.continuations))


def context_chunks(pairs: list[tuple[str, str]]) -> list[list[tuple[str, list[str]]]]:
    """The pairs grouped by context (first-seen order), CHUNK_CONTEXTS contexts per backend call."""
    by_context: dict[str, list[str]] = {}
    for context, continuation in pairs:
        by_context.setdefault(context, []).append(continuation)
    groups = list(by_context.items())
    return [groups[start:start + CHUNK_CONTEXTS] for start in range(0, len(groups), CHUNK_CONTEXTS)]


def _score_pairs(backend: Scorer, pairs: list[tuple[str, str]], benchmark: str) -> list[float]:
    scored: dict[tuple[str, str], float] = {}
    with progress.track(f"{benchmark}: scoring", len(pairs)) as task:
        for chunk in context_chunks(pairs):
            if isinstance(backend, CachedModel):
                chunk_scores = backend.loglikelihood_groups(chunk)
            else:
                chunk_scores = score_groups(backend, chunk)
            for (context, conts), cont_scores in zip(chunk, chunk_scores, strict=True):
                for continuation, value in zip(conts, cont_scores, strict=True):
                    scored[(context, continuation)] = float(value)
            task.advance(sum(len(conts) for _, conts in chunk))
    return [scored[p] for p in pairs]
