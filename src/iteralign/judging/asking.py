"""Asking a model a question whose answer must parse: shared by every LLM judge and the proposer.

In: a `CachedModel`, chats, a pure `parse(reply) -> value | None`, an optional JSON schema.
Out: one `Asked` per chat: the parsed value and the attempts it took, or None with the reason
(transport error or unparseable reply) after `max_attempts`. `extract_json_object` finds the
JSON object in a reply that wraps it in prose or fences.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable

from iteralign.backends.base import GenParams
from iteralign.backends.cached import CachedModel


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in `text` (models sometimes wrap it in prose or ``` fences)."""
    start = text.find("{")
    while start != -1:
        try:
            value, _ = json.JSONDecoder().raw_decode(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        return value if isinstance(value, dict) else None
    return None


@dataclass(frozen=True)
class Asked:
    """The outcome of asking the oracle one question until its reply parsed."""

    value: Any  # what `parse` returned; None when no attempt gave a usable reply
    attempts: int
    error: str = ""
    transport_failed: bool = False  # the last attempt got no reply at all (HTTP error, timeout)


def ask_until_parsed(model: CachedModel, chats: list[list[dict[str, str]]], parse: Callable[[str], Any],
                     schema: dict[str, Any] | None, max_attempts: int, max_new_tokens: int, seed: int,
                     stage: str) -> list[Asked]:
    """Ask every chat; re-ask (in rounds) those whose reply failed or did not parse.

    A retry samples (temperature 0.7, new seed): asking a greedy model the same question again
    would get the same unusable reply. `parse` returns None for an unusable reply."""
    results: dict[int, Asked] = {}
    errors: dict[int, tuple[str, bool]] = {}
    pending = list(range(len(chats)))
    for attempt in range(max_attempts):
        if not pending:
            break
        params = GenParams(max_new_tokens=max_new_tokens, temperature=0.0 if attempt == 0 else 0.7,
                           top_p=1.0 if attempt == 0 else 0.95, seed=seed + attempt, json_schema=schema)
        completions = model.generate([chats[i] for i in pending], params,
                                     stage=stage if attempt == 0 else f"{stage} retry {attempt}")
        still = []
        for i, completion in zip(pending, completions):
            value = parse(completion.text) if completion.ok else None
            if value is None:
                errors[i] = ((f"no reply: {completion.error}", True) if not completion.ok
                             else (f"unparseable reply: {completion.text[:120]!r}", False))
                still.append(i)
            else:
                results[i] = Asked(value, attempt + 1)
        pending = still
    for i in pending:
        error, transport = errors.get(i, ("", False))
        results[i] = Asked(None, max_attempts, error[:300], transport)
    return [results[i] for i in range(len(chats))]
