"""The backend protocol: what every model engine offers the stages.

A backend turns a batch of chats into texts (`generate_batch`) and, where the engine can,
scores continuations (`loglikelihood`). It says what it can do through class attributes, and
names itself with `spec_id`, a stable string that keys the call cache (it never holds a secret).
Stages never see a backend directly: they go through `CachedModel` (cached.py), which batches,
caches, runs requests concurrently and turns transport failures into per-request errors.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Chat = list[dict[str, str]]  # [{"role": "system"|"user"|"assistant", "content": "..."}]


@dataclass(frozen=True)
class GenParams:
    max_new_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    seed: int = 0
    json_schema: dict[str, Any] | None = field(default=None, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The parameters as stored in (and keying) the call cache. Greedy decoding does not
        depend on the seed or top_p, so they are left out of a greedy request: the same question
        asked greedily by two stages (the probe and the harmlessness benchmark) is one call."""
        values = asdict(self)
        if self.temperature == 0:
            values.pop("seed")
            values.pop("top_p")
        return values


class BackendCallError(Exception):
    """A call failed in a way worth recording and moving on from (HTTP error, timeout,
    malformed body), after the backend's own retries. Anything else is a bug and propagates."""


class Backend:
    spec_id: str = ""
    batch_size: int = 1  # chats per engine call: local engines batch, HTTP sends one at a time
    max_concurrency: int = 1  # engine calls in flight at once
    supports_loglikelihood: bool = False
    supports_json_schema: bool = False

    def generate_batch(self, chats: list[Chat], params: GenParams) -> list[str]:
        raise NotImplementedError

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[float]:
        """log P(continuation | context) for each (context, continuation) pair."""
        raise NotImplementedError(f"{self.spec_id} cannot score log-likelihoods")

    def close(self) -> None:
        """Free the engine (model weights, connections)."""
