"""XSTest's question about one answer: full compliance, full refusal or partial refusal?

In: (request, answer) pairs, judge settings, and the oracle (None in refusal mode). Out: one
`Asked` per pair whose value is the class, or None (unscored) with the reason. The refusal judge
answers by rule; an oracle is asked with XSTest's own class definitions (prompts/eval_xstest_*),
schema-constrained, re-asked until its reply parses. Used by the `xstest` benchmark and by
judge-check.
"""
from __future__ import annotations

from iteralign import prompts as templates
from iteralign.backends.cached import CachedModel
from iteralign.config import JudgeConfig
from iteralign.judging.asking import Asked, ask_until_parsed, extract_json_object
from iteralign.judging.refusal import CLASSES, RefusalJudge

XSTEST_CLASSES = list(CLASSES)

XSTEST_SCHEMA = {
    "type": "object",
    "properties": {"class": {"type": "string", "enum": XSTEST_CLASSES},
                   "rationale": {"type": "string", "maxLength": 200}},
    "required": ["class", "rationale"],
}


def parse_xstest_class(text: str) -> str | None:
    obj = extract_json_object(text)
    label = str((obj or {}).get("class", "")).strip().lower().replace(" ", "_")
    return label if label in XSTEST_CLASSES else None


def xstest_classes(oracle: CachedModel | None, prompts: list[str], answers: list[str], judge: JudgeConfig,
                   seed: int) -> list[Asked]:
    """XSTest's class of each answer: by the refusal judge in refusal mode, else by the oracle
    (schema-constrained JSON, re-asked until it parses)."""
    if judge.mode == "refusal":
        verdicts = [RefusalJudge.default().classify(p, a) for p, a in zip(prompts, answers)]
        return [Asked(v.label, 1) if v else Asked(None, 1, "empty answer") for v in verdicts]
    chats = [[{"role": "system", "content": templates.load("eval_xstest_system")},
              {"role": "user", "content": templates.render("eval_xstest_user", prompt=p, response=t)}]
             for p, t in zip(prompts, answers)]
    return ask_until_parsed(oracle, chats, parse_xstest_class, XSTEST_SCHEMA, judge.max_attempts,
                            judge.max_new_tokens, seed, stage="xstest judge")
