"""The questions judge-check puts to a judge, each answerable by the refusal judge or an oracle.

In: items (requests, answers, pairs of replies) and a `CheckedJudge`. Out: one answer per item,
None where the judge gave none (unscored: counted by the checks, never taken as right or wrong).

- `answer_classes`: XSTest's three classes of (request, answer).
- `request_harmful`: is the request harmful? (True / False)
- `preference`: which of two candidate next replies is better by a criterion? (0 = first, 1 = second)

An oracle is asked in its judge mode's way: "structured" = instructions plus a JSON schema, as
the run's structured judge asks; "paper" = the reference implementation's few-shot,
completion-style prompt ("... Evaluation:") answered with a bare label, no schema (for a request
the reference's own Positive/Negative question, Negative meaning harmful). Both are re-asked
until the reply parses (`judge.max_attempts`), through the call cache.

The refusal judge answers by rule where a rule answers the question: the class of an answer;
for a pair, the reply that refuses when exactly one of them does (otherwise no preference, so
unscored). It does not judge requests (`request_harmful` is None: the check is skipped).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from iteralign import prompts as templates
from iteralign.backends.cached import CachedModel
from iteralign.judging.asking import Asked, ask_until_parsed, extract_json_object
from iteralign.judging.refusal import RefusalJudge
from iteralign.judging.xstest_class import XSTEST_SCHEMA, parse_xstest_class

REQUEST_SCHEMA = {"type": "object",
                  "properties": {"label": {"type": "string", "enum": ["harmful", "safe"]},
                                 "rationale": {"type": "string", "maxLength": 200}},
                  "required": ["label", "rationale"]}
PAIR_SCHEMA = {"type": "object",
               "properties": {"better": {"type": "string", "enum": ["A", "B"]},
                              "rationale": {"type": "string", "maxLength": 200}},
               "required": ["better", "rationale"]}
PAPER_ANSWER_LABELS = {"compliance": "full_compliance", "refusal": "full_refusal", "partial": "partial_refusal"}
CONTEXT_CHARS = 2000  # a long conversation is cut to its end: the turn being judged follows it


def first_label(text: str, labels: dict[str, Any]) -> Any:
    """The label a bare-word reply opens with ("Negative", "B.", " refusal\n..."), else the one
    label the reply names (a reply naming two is ambiguous: None)."""
    words = re.findall(r"[A-Za-z]+", text)
    lowered = {key.lower(): value for key, value in labels.items()}
    if words and words[0].lower() in lowered:
        return lowered[words[0].lower()]
    named = {lowered[w.lower()] for w in words if w.lower() in lowered and (len(w) > 1 or w.isupper())}
    return named.pop() if len(named) == 1 else None


def parse_request(text: str) -> bool | None:
    label = str((extract_json_object(text) or {}).get("label", "")).strip().lower()
    return {"harmful": True, "safe": False}.get(label)


def parse_pair(text: str) -> int | None:
    better = str((extract_json_object(text) or {}).get("better", "")).strip().upper()
    return {"A": 0, "B": 1}.get(better)


@dataclass
class CheckedJudge:
    """The judge under check: the refusal judge (`oracle` None) or an oracle in a mode."""

    name: str
    oracle: CachedModel | None = None
    mode: str = "structured"
    seed: int = 0
    max_attempts: int = 3
    max_new_tokens: int = 96

    @property
    def judges_requests(self) -> bool:
        return self.oracle is not None

    def _ask(self, chats, parse, schema, stage: str) -> list[Any]:
        tokens = self.max_new_tokens if self.mode == "structured" else 6
        asked: list[Asked] = ask_until_parsed(self.oracle, chats, parse, schema if self.mode == "structured" else None,
                                              self.max_attempts, tokens, self.seed, stage)
        return [a.value for a in asked]

    def answer_classes(self, prompts: list[str], answers: list[str]) -> list[str | None]:
        if self.oracle is None:
            judge = RefusalJudge.default()
            return [None if (j := judge.classify(p, a)) is None else j.label for p, a in zip(prompts, answers)]
        if self.mode == "paper":
            chats = [[{"role": "user", "content": templates.render("check_answer_paper", prompt=p, response=a)}]
                     for p, a in zip(prompts, answers)]
            return self._ask(chats, lambda t: first_label(t, PAPER_ANSWER_LABELS), None, "judge-check answers")
        chats = [[{"role": "system", "content": templates.load("eval_xstest_system")},
                  {"role": "user", "content": templates.render("eval_xstest_user", prompt=p, response=a)}]
                 for p, a in zip(prompts, answers)]
        return self._ask(chats, parse_xstest_class, XSTEST_SCHEMA, "judge-check answers")

    def request_harmful(self, prompts: list[str]) -> list[bool | None]:
        if self.oracle is None:
            return [None] * len(prompts)
        if self.mode == "paper":
            chats = [[{"role": "user", "content": templates.render("check_request_paper", prompt=p)}] for p in prompts]
            return self._ask(chats, lambda t: first_label(t, {"negative": True, "positive": False}), None,
                             "judge-check requests")
        chats = [[{"role": "system", "content": templates.load("check_request_system")},
                  {"role": "user", "content": templates.render("check_request_user", prompt=p)}] for p in prompts]
        return self._ask(chats, parse_request, REQUEST_SCHEMA, "judge-check requests")

    def preference(self, criteria: list[str], contexts: list[str], firsts: list[str],
                   seconds: list[str]) -> list[int | None]:
        if self.oracle is None:
            judge = RefusalJudge.default()

            def refuses(context: str, reply: str) -> bool:
                judged = judge.classify(context, reply)
                return judged is not None and judged.label != "full_compliance"

            out: list[int | None] = []
            for context, a, b in zip(contexts, firsts, seconds):
                ra, rb = refuses(context, a), refuses(context, b)
                out.append(None if ra == rb else (0 if ra else 1))
            return out
        items = zip(criteria, contexts, firsts, seconds)
        if self.mode == "paper":
            chats = [[{"role": "user", "content": templates.render(
                "check_pair_paper", criterion=c, context=x[-CONTEXT_CHARS:], first=a, second=b)}]
                for c, x, a, b in items]
            return self._ask(chats, lambda t: first_label(t, {"a": 0, "b": 1}), None, "judge-check pairs")
        chats = [[{"role": "system", "content": templates.render("check_pair_system", criterion=c)},
                  {"role": "user", "content": templates.render("check_pair_user", criterion=c,
                                                               context=x[-CONTEXT_CHARS:], first=a, second=b)}]
                 for c, x, a, b in items]
        return self._ask(chats, parse_pair, PAIR_SCHEMA, "judge-check pairs")
