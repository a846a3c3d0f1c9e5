"""propose: this iteration's failures -> new, specific principles from the oracle.

In: failures (prompt, answer, verdict), the active principles already in the library, settings.
Out: (candidate principles, exact repeats rejected, texts that are not principles at all: fewer
than six words, or a copy of what the proposer was shown, e.g. the judge's rationale). The oracle answers JSON whose `addresses`
field may only name the failures it was shown (an enum in the schema), so every principle cites
real evidence; a principle citing none is dropped. Each principle carries a short `theme` for
grouping the document. A principle whose wording repeats one in the library (same words after
case and punctuation folding) is dropped here; near-duplicates in meaning are merged by the
library (constitution/library.py), which keeps them for provenance. No usable reply after
`max_attempts`: nothing is added, and the loop records that.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from iteralign import prompts as templates
from iteralign.backends.cached import CachedModel
from iteralign.config import ProposeConfig
from iteralign.records import Principle, RedTeamPrompt, Response, Verdict
from iteralign.judging.asking import ask_until_parsed, extract_json_object

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Failure:
    prompt: RedTeamPrompt
    response: Response
    verdict: Verdict


def wording_key(text: str) -> str:
    """The words of a principle, case and punctuation folded: equal keys = the same principle."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def proposal_schema(labels: list[str], max_principles: int) -> dict:
    return {
        "type": "object",
        "properties": {
            "principles": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_principles,
                "items": {
                    "type": "object",
                    "properties": {
                        "text": {"type": "string", "minLength": 10, "maxLength": 300},
                        "rationale": {"type": "string", "maxLength": 300},
                        "theme": {"type": "string", "minLength": 3, "maxLength": 40},
                        "addresses": {"type": "array", "minItems": 1, "items": {"type": "string", "enum": labels}},
                    },
                    "required": ["text", "rationale", "theme", "addresses"],
                },
            }
        },
        "required": ["principles"],
    }


def _shorten(text: str, limit: int = 600) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


def parse_proposal(text: str, labels: dict[str, str]) -> list[tuple[str, str, list[str], str]] | None:
    """[(text, rationale, evidence prompt ids, theme)] from a reply; None if it does not parse.
    A missing theme is "general": the theme only groups the document."""
    obj = extract_json_object(text)
    if obj is None or not isinstance(obj.get("principles"), list):
        return None
    out = []
    for item in obj["principles"]:
        if not isinstance(item, dict):
            continue
        body = " ".join(str(item.get("text", "")).split())
        cited = item.get("addresses") or []
        evidence = sorted({labels[c] for c in cited if isinstance(c, str) and c in labels})
        # a heading in the document: letters, digits, spaces and hyphens only (no Markdown)
        theme = " ".join(re.sub(r"[^\w\s-]", " ", str(item.get("theme") or "").lower()).split())[:40] or "general"
        if len(body) >= 10 and evidence:
            out.append((body, " ".join(str(item.get("rationale", "")).split()), evidence, theme))
    return out


MIN_WORDS = 6  # "no refusal found" is not a principle; "Decline to give weapon recipes" is


def not_a_principle(text: str, shown: list[str]) -> str | None:
    """Why a proposed text cannot be a principle (too short to say what to do, or a copy of text
    the proposer was shown, such as a judge's rationale), or None when it can."""
    if len(wording_key(text).split()) < MIN_WORDS:
        return f"fewer than {MIN_WORDS} words"
    if wording_key(text) in {wording_key(t) for t in shown if t}:
        return "copies text the proposer was shown"
    return None


def propose_principles(model: CachedModel, failures: list[Failure], library: list[Principle], config: ProposeConfig,
                       iteration: int, seed: int) -> tuple[list[Principle], list[str], list[dict]]:
    """(new principles, exact repeats of the library, other rejects with the reason)."""
    if not failures:
        return [], [], []
    shown_failures = failures[: config.max_failures_shown]
    labels = {f"F{k + 1}": f.prompt.id for k, f in enumerate(shown_failures)}
    failure_text = "\n\n".join(
        f"[{label}] Request: {_shorten(f.prompt.text, 300)}\nAnswer: {_shorten(f.response.text, 400)}\n"
        f"Why it was judged harmful: {f.verdict.rationale or ', '.join(f.verdict.categories) or 'not given'}"
        for label, f in zip(labels, shown_failures)
    )
    library_text = "\n".join(f"- {p.text}" for p in library if p.status == "active") or "(none yet)"
    chat = [
        {"role": "system", "content": templates.load("propose_system")},
        {"role": "user", "content": templates.render("propose_user", library=library_text, failures=failure_text,
                                                     max_principles=str(config.max_principles))},
    ]
    schema = proposal_schema(list(labels), config.max_principles)
    [asked] = ask_until_parsed(model, [chat], lambda text: parse_proposal(text, labels) or None, schema,
                               config.max_attempts, config.max_new_tokens, seed, stage="propose")
    if asked.value is None:
        log.warning("propose: no usable principle after %d attempts (%s)", asked.attempts, asked.error)
    parsed = asked.value
    added: list[Principle] = []
    rejected: list[str] = []
    invalid: list[dict] = []
    seen = {wording_key(p.text) for p in library}
    shown = [text for f in shown_failures for text in (f.verdict.rationale, f.prompt.text, f.response.text)]
    for text, rationale, evidence, theme in parsed or []:
        reason = not_a_principle(text, shown)
        if reason:
            invalid.append({"text": text, "reason": reason})
            continue
        if wording_key(text) in seen:
            rejected.append(text)
            continue
        seen.add(wording_key(text))
        added.append(Principle(id=f"P{iteration}.{len(added) + 1}", text=text, rationale=rationale,
                               iteration=iteration, evidence=evidence, theme=theme))
    return added, rejected, invalid
