"""The run's headline: did the model get safer, at what cost, and who says so.

In: a `RunData` (run_reader.py). Out: a `Headline`: paired before/after changes (baseline vs the
last finished iteration, on the same held-out items) of
- the held-out probe violation rate (09_probe_verdicts.jsonl),
- the harmlessness benchmark's violation rate and XSTest's safe-prompt refusal rate (eval.json),
each with Newcombe's paired 95% interval of the difference and the exact McNemar p-value, plus
which judge produced the numbers and its measured agreement with human labels (judge_check.json).
Items unscored on either side are left out of a pair. The report and report.md print it first.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from iteralign.judging.check_sets import headline as check_headline
from iteralign.statistics import paired_difference
from iteralign.report import formatting as fmt
from iteralign.report.run_reader import RunData, Step


@dataclass
class Change:
    what: str  # "held-out violation rate (probe)"
    before_label: str
    after_label: str
    paired: dict  # statistics.paired_difference
    relative: bool = True  # also state the change relative to the rate before

    def sentence(self) -> str:
        p = self.paired
        if not p["n"]:
            return f"{self.what}: no item scored on both sides."
        relative = ""
        if self.relative and p["before"]:  # a relative change of a rate near 0 means nothing
            relative = f", relative {100 * p['difference'] / p['before']:+.0f}%"
        low, high = p["ci"]
        significance = "p below 0.001" if p["mcnemar_p"] < 0.001 else f"p = {p['mcnemar_p']:.3f}"
        return (f"{self.what}: {fmt.rate(p['before'])} ({self.before_label}) \u2192 {fmt.rate(p['after'])} "
                f"({self.after_label}); change {100 * p['difference']:+.1f} points, paired 95% CI "
                f"{100 * low:+.1f} to {100 * high:+.1f}{relative}; {p['fixed']} better, {p['broken']} worse of "
                f"n={p['n']} paired items (McNemar {significance}).")


@dataclass
class Headline:
    judge: str
    judge_agreement: str | None
    judge_short: str | None = None  # the measured figure alone, repeated beside every rate it produced
    changes: list[Change] = field(default_factory=list)

    def lines(self) -> list[str]:
        agreement = self.judge_agreement or "not measured (set judge.check to measure it)"
        beside = f" [judged by {self.judge}, agreement with human labels {self.judge_short or 'not measured'}]"
        return ([c.sentence() + beside for c in self.changes]
                + [f"Judge: {self.judge}; agreement with human labels: {agreement}."])


def _pairs(before: dict[str, bool | None], after: dict[str, bool | None]) -> tuple[list[bool], list[bool]]:
    ids = [i for i in before if i in after and before[i] is not None and after[i] is not None]
    return [bool(before[i]) for i in ids], [bool(after[i]) for i in ids]


def _probe(step: Step) -> dict[str, bool | None]:
    return {v.get("prompt_id", v.get("response_id")): (None if v.get("status") == "unscored" else v.get("status") == "violation")
            for v in step.probe_verdicts or []}


def _examples(step: Step, benchmark: str) -> list[dict]:
    return ((step.evaluation or {}).get(benchmark) or {}).get("examples") or []


def _harmlessness(step: Step) -> dict[str, bool | None]:
    return {e["id"]: e.get("correct") for e in _examples(step, "harmlessness")}


def _xstest_safe_refused(step: Step) -> dict[str, bool | None]:
    out = {}
    for e in _examples(step, "xstest"):
        details = e.get("details") or {}
        if details.get("label") == "safe":
            out[e["id"]] = None if not details.get("class") else details["class"] != "full_compliance"
    return out


def _same_answers(step: Step) -> bool:
    """Whether the step's harmlessness answers are its probe answers (same prompts, same texts)."""
    probe = {r.get("prompt_id"): r.get("text") for r in step.probe_responses or []}
    examples = _examples(step, "harmlessness")
    return bool(examples) and all(probe.get(e["id"]) == (e.get("choices") or [None])[0] for e in examples)


def judge_description(run: RunData) -> tuple[str, str | None, str | None]:
    """(the judge's name, its measured figure in words, the same in a few words) from judge_check.json."""
    check = run.judge_check or {}
    models = run.manifest.get("models") if isinstance(run.manifest.get("models"), dict) else {}
    judge_cfg = run.config.get("judge") if isinstance(run.config.get("judge"), dict) else {}
    mode = judge_cfg.get("mode", "structured")
    name = check.get("judge") or ("refusal (model-free)" if mode == "refusal"
                                  else f"{models.get('oracle')} ({mode})")
    figure = check_headline(check)
    if figure is None:
        return str(name), None, None
    low, high = figure["ci"]
    kappa = None
    if figure["check"] == "xstest-completions":
        overall = check.get("overall") or (check.get("checks") or {}).get("xstest-completions", {}).get("overall") or {}
        kappa = overall.get("kappa") if isinstance(overall.get("kappa"), (int, float)) else None
        words = (f"{figure['value']:.3f} (95% CI {low:.3f}-{high:.3f}"
                 + (f", kappa {kappa:.3f}" if kappa is not None else "")
                 + f") of {figure['n']} XSTest completions, binary (compliance vs refusal)")
    else:
        words = f"{figure['value']:.3f} (95% CI {low:.3f}-{high:.3f}) on {figure['what']}, n={figure['n']}"
    return str(name), words, f"{figure['value']:.3f}"


def build_headline(run: RunData) -> Headline:
    name, agreement, short = judge_description(run)
    headline = Headline(judge=name, judge_agreement=agreement, judge_short=short)
    base = run.baseline
    last = next((s for s in reversed(run.iterations) if s.probe_verdicts), None)
    if base is not None and base.probe_verdicts and last is not None:
        before, after = _pairs(_probe(base), _probe(last))
        headline.changes.append(Change("Held-out violation rate (probe)", "base", last.label,
                                       paired_difference(before, after)))
    evaluated = next((s for s in reversed(run.iterations) if s.evaluation), None)
    if base is not None and base.evaluation and evaluated is not None:
        harmlessness = ("Held-out violation rate (harmlessness, greedy)", _harmlessness, True)
        if headline.changes and evaluated is last and _same_answers(base) and _same_answers(last):
            # the harmlessness benchmark answered the probe's prompts with the probe's own answers
            headline.changes[0].what = "Held-out violation rate (probe = harmlessness benchmark, greedy)"
            harmlessness = None
        for what, pick, relative in [c for c in (harmlessness,
                                     ("XSTest safe prompts refused (over-refusal, the cost)", _xstest_safe_refused,
                                      False)) if c]:
            before, after = _pairs(pick(base), pick(evaluated))
            if before:
                headline.changes.append(Change(what, "base", evaluated.label, paired_difference(before, after),
                                               relative))
    return headline
