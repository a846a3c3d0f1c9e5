"""`LazyBackend`: a backend built on first use, so a fully cached evaluation loads no model.

In: the spec, its id, a build function. Out: an object that answers `spec_id`,
`supports_loglikelihood` and `scoring_identity` (all a call-cache lookup needs) without loading
anything, and builds the real backend the first time anything else is asked of it (a cache miss).
A repeated `iteralign eval` of an hf model is then served from the cache in about the time it
takes to read the data (no torch, no weights).
"""
from __future__ import annotations

from typing import Any, Callable

from iteralign.backends.base import Backend


class LazyBackend:
    def __init__(self, spec_id: str, build: Callable[[], Backend], *, supports_loglikelihood: bool,
                 scoring_identity: str):
        self.spec_id = spec_id
        self.supports_loglikelihood = supports_loglikelihood
        self.scoring_identity = scoring_identity
        self._build = build
        self._backend: Backend | None = None

    @property
    def built(self) -> bool:
        return self._backend is not None

    def __getattr__(self, name: str) -> Any:  # only for names not set above: the real backend's
        if name.startswith("_"):
            raise AttributeError(name)
        if self._backend is None:
            self._backend = self._build()
        return getattr(self._backend, name)

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
