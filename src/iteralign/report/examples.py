"""Before/after examples: a flagged answer and the model's revision of it under the principles.

In: one iteration folder (01_prompts.jsonl, 02_responses.jsonl, 03_verdicts.jsonl,
05_revisions.jsonl). Out: a few `BeforeAfter` pairs with every text shortened, for the report
to show under a content warning (the prompts are harmful requests; the answers may comply).
Revisions the oracle passed come first, since they show what the loop trains on; then
rejected ones, so a reader also sees where self-revision did not help.
The texts are raw model output: whoever renders them must escape them (html.py does).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BeforeAfter:
    prompt_id: str
    prompt: str
    answer: str
    judge_rationale: str  # why the oracle flagged the answer
    revision: str
    revision_status: str  # the oracle's verdict on the revision: ok / violation / unscored / not judged
    accepted: bool  # the revision became SFT data
    principle_ids: list[str]


def shorten(text: str, limit: int = 400) -> str:
    """Whitespace collapsed, cut at `limit` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _by_id(path: Path, key: str) -> dict[str, dict]:
    if not path.is_file():
        return {}
    out = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if line.strip():
                    record = json.loads(line)
                    # verdicts name their prompt "prompt_id" (runs before 0.2: "response_id")
                    out[str(record.get(key, record.get("response_id")))] = record
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # the reader has already noted the damaged file; examples are optional
    return out


def before_after(folder: Path, limit: int = 2, chars: int = 400) -> list[BeforeAfter]:
    prompts = _by_id(folder / "01_prompts.jsonl", "id")
    answers = _by_id(folder / "02_responses.jsonl", "prompt_id")
    verdicts = _by_id(folder / "03_verdicts.jsonl", "prompt_id")
    revisions = _by_id(folder / "05_revisions.jsonl", "prompt_id")
    pairs = []
    for prompt_id, revision in revisions.items():
        verdict = verdicts.get(prompt_id) or {}
        if prompt_id not in answers or verdict.get("status") != "violation":
            continue
        judged = revision.get("verdict") or {}
        pairs.append(BeforeAfter(
            prompt_id=prompt_id, prompt=shorten((prompts.get(prompt_id) or {}).get("text", "(prompt not in this run)"), chars),
            answer=shorten(answers[prompt_id].get("text", ""), chars),
            judge_rationale=shorten(verdict.get("rationale", ""), chars // 2),
            revision=shorten(revision.get("text", ""), chars),
            revision_status=judged.get("status", "not judged"), accepted=bool(revision.get("accepted")),
            principle_ids=list(revision.get("principle_ids") or [])))
    # accepted first, then passed, keeping file order within each group (sort is stable)
    pairs.sort(key=lambda p: (not p.accepted, p.revision_status != "ok"))
    return pairs[:limit]
