"""`CachedModel`: the only way stages call a model.

It splits a list of chats into engine calls of `backend.batch_size` (a fixed partition of the
list, so a re-run asks exactly the same calls), serves each call from `calls.sqlite` when it
was made before, runs the rest up to `backend.max_concurrency` at once, and returns one
`Completion` per chat. A `BackendCallError` becomes an error on that chat's completion; any
other exception is a bug and propagates.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass

from iteralign import failpoints, progress
from iteralign.backends.base import Backend, BackendCallError, Chat, GenParams
from iteralign.errors import OutageError
from iteralign.redact import scrub
from iteralign.store.call_cache import CallCache, request_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Completion:
    text: str | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None


def texts_or_outage(completions: list[Completion], ids: list[str], stage: str) -> list[str]:
    """Every completion's text; the first with none (after every retry) stops the run with one
    line: an answer the model never gave cannot be judged or trained on, only asked again."""
    for item_id, completion in zip(ids, completions, strict=True):
        if not completion.ok:
            raise OutageError(f"{stage}: the model gave no answer to prompt {item_id} after every retry "
                              f"({(completion.error or '')[:160]}); run the same command again to retry")
    return [c.text for c in completions]


def score_groups(backend: Backend, groups: list[tuple[str, list[str]]]) -> list[list[float]]:
    """One backend's scores for (context, continuations) groups: its grouped fast path when it
    has one (hf: every context read once), else the flat pair list."""
    fast = getattr(backend, "loglikelihood_choices", None)
    if fast is not None:
        return [[float(v) for v in row] for row in fast(groups)]
    flat = iter(backend.loglikelihood([(context, cont) for context, conts in groups for cont in conts]))
    return [[float(next(flat)) for _ in conts] for _, conts in groups]


@dataclass
class CallCounts:
    made: int = 0
    cached: int = 0
    failed: int = 0
    retried: int = 0  # made or failed again after failing in an earlier run (a re-run after an outage)

    def plus(self, other: "CallCounts") -> "CallCounts":
        return CallCounts(self.made + other.made, self.cached + other.cached, self.failed + other.failed,
                          self.retried + other.retried)

    def add(self, other: "CallCounts") -> None:
        """`plus`, in place: for a total that a caller handed in and reads afterwards."""
        self.made, self.cached, self.failed, self.retried = astuple(self.plus(other))

    def minus(self, before: "CallCounts") -> "CallCounts":
        return CallCounts(self.made - before.made, self.cached - before.cached, self.failed - before.failed,
                          self.retried - before.retried)


class CachedModel:
    def __init__(self, backend: Backend, cache: CallCache):
        self.backend = backend
        self.cache = cache
        self.counts = CallCounts()

    @property
    def spec_id(self) -> str:
        return self.backend.spec_id

    @property
    def supports_loglikelihood(self) -> bool:
        return bool(getattr(self.backend, "supports_loglikelihood", False))

    def loglikelihood_groups(self, groups: list[tuple[str, list[str]]]) -> list[list[float]]:
        """log P(continuation | context) for each (context, continuations) group, as one call:
        served from the cache when the same model scored the same texts before (key = the
        model's scoring identity + the texts), else scored and stored."""
        identity = getattr(self.backend, "scoring_identity", None) or self.backend.spec_id
        request = {"loglikelihood": [[context, list(conts)] for context, conts in groups]}
        key = request_key(identity, request)
        cached = self.cache.get(key)
        shape = [len(conts) for _, conts in groups]
        if cached is not None and isinstance(cached, list) and [len(row) for row in cached] == shape:
            self.counts.cached += 1
            return cached
        if cached is not None:  # never serve a stored answer that does not fit the question
            log.warning("%s: a cached score list does not fit its request; scoring again", identity)
        start = time.perf_counter()
        scores = score_groups(self.backend, groups)
        if [len(row) for row in scores] != shape:
            raise RuntimeError(f"{identity} returned scores that do not line up with the continuations")
        self.cache.put(key, identity, request, scores, time.perf_counter() - start)
        self.counts.made += 1
        return scores

    def sample(self, chats: list[Chat], params: GenParams, n: int, stage: str) -> list[list[Completion]]:
        """n sampled completions per chat, all asked now, in one batch per engine call: a local
        engine reads each prompt once for its n samples (hf.py), and every sample differs because
        each is a different row of the batch. Only for engines that batch (`upfront_sampling`);
        an HTTP server is asked sample by sample with its own seed by the caller."""
        flat = self.generate([chat for chat in chats for _ in range(n)], params, stage)
        return [flat[i * n:(i + 1) * n] for i in range(len(chats))]

    @property
    def upfront_sampling(self) -> bool:
        """Whether asking for all samples at once is cheap (a local batching engine) rather than
        wasteful (an API billed per request, where sampling stops at the first that passes)."""
        return self.backend.batch_size > 1

    def generate(self, chats: list[Chat], params: GenParams, stage: str) -> list[Completion]:
        """One completion per chat, in order. `stage` names the progress bar and failpoint."""
        size = self.backend.batch_size
        batches = [list(range(i, min(i + size, len(chats)))) for i in range(0, len(chats), size)]
        results: list[Completion | None] = [None] * len(chats)
        todo = []
        with progress.track(stage, len(chats)) as task:
            for idx in batches:
                request = {"chats": [chats[i] for i in idx], "params": params.to_json()}
                key = request_key(self.backend.spec_id, request)
                cached = self.cache.get(key)
                if cached is not None:
                    for i, text in zip(idx, cached):
                        results[i] = Completion(text)
                    self.counts.cached += 1
                    task.advance(len(idx))
                else:
                    todo.append((idx, request, key))

            def call(item):
                idx, request, key = item
                start = time.perf_counter()
                try:
                    texts = self.backend.generate_batch(request["chats"], params)
                except BackendCallError as exc:  # its text reaches verdicts and logs: scrubbed
                    error = scrub(str(exc))
                    return idx, None, error, self.cache.fail(key, self.backend.spec_id, error)
                if len(texts) != len(idx):  # never cache a reply that would misalign the records
                    raise RuntimeError(f"{self.backend.spec_id} returned {len(texts)} texts for {len(idx)} chats")
                retried = self.cache.put(key, self.backend.spec_id, request, texts, time.perf_counter() - start)
                return idx, texts, None, retried

            workers = max(1, min(self.backend.max_concurrency, len(todo)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for idx, texts, error, retried in pool.map(call, todo):
                    self.counts.retried += retried
                    if texts is None:
                        self.counts.failed += 1
                        log.warning("%s: call failed after retries: %s", stage, error)
                        for i in idx:
                            results[i] = Completion(None, error)
                    else:
                        self.counts.made += 1
                        for i, text in zip(idx, texts):
                            results[i] = Completion(text)
                    task.advance(len(idx))
                    failpoints.hit(f"{stage}.call")
        return [r for r in results if r is not None]
