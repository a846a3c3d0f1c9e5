"""The live models of a run: built on first use, rebuilt only when the spec changes.

In: the call cache and the oracle's spec. `get(spec)` returns a `CachedModel`; asking for a new
model being aligned (the next iteration's adapter) unloads the previous one, but the oracle stays
loaded for the whole run. `counts()` sums the calls of every model ever built (made, cached,
failed, retried), for the stage statistics.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

from iteralign.backends.cached import CachedModel, CallCounts
from iteralign.backends.registry import build_backend, spec_id
from iteralign.store.call_cache import CallCache

log = logging.getLogger(__name__)


@dataclass
class ModelPool:
    cache: CallCache
    oracle_spec: object
    _live: dict[str, CachedModel] = field(default_factory=dict)
    _retired: CallCounts = field(default_factory=CallCounts)  # calls of models already unloaded

    def get(self, spec) -> CachedModel:
        sid = spec_id(spec)
        if sid not in self._live:
            if spec is not self.oracle_spec:  # keep the oracle, drop the previous base model
                for key in [k for k in self._live if k != spec_id(self.oracle_spec)]:
                    self._retire(self._live.pop(key))
            log.info("loading model %s", sid)
            self._live[sid] = CachedModel(build_backend(spec), self.cache)
        return self._live[sid]

    def _retire(self, model: CachedModel) -> None:
        self._retired = self._retired.plus(model.counts)
        model.backend.close()

    def counts(self) -> CallCounts:
        total = self._retired
        for model in self._live.values():
            total = total.plus(model.counts)
        return total

    def close(self) -> None:
        for model in self._live.values():
            self._retire(model)
        self._live.clear()
