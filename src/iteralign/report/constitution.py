"""constitution.md: the principle library as a document a person reads.

In: the library (every principle with its status and fix record), the red-team prompts, and the
answers that were judged violations (prompt id -> answer). Out: Markdown. The active principles
come grouped by theme (largest group first), each with its rationale, where it came from, its
fix rate, and one or two of the failures it was written from, shortened and under a content
warning (they are harmful requests and harmful answers). Merged and retired principles follow
in short lists, so the provenance of every principle ever written stays readable.
"""
from __future__ import annotations

from collections import defaultdict

from iteralign.records import Principle, RedTeamPrompt
from iteralign.report.formatting import md_text

EXAMPLES_PER_PRINCIPLE = 2


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return md_text(text if len(text) <= limit else text[: limit - 1] + "…")


def fix_rate_text(p: Principle) -> str:
    if not p.fix_attempts:
        return "fix rate: not measured yet"
    return f"fix rate: {p.fix_rate:.0%} ({p.fix_passed} of {p.fix_attempts} revisions passed the judge)"


def _born(p: Principle) -> str:
    if p.origin:
        return f"Loaded from {md_text(p.origin)}."
    return f"Born in iteration {p.iteration}."


def render_constitution(principles: list[Principle], prompts: dict[str, RedTeamPrompt], run_name: str,
                        failures: dict[str, str] | None = None) -> str:
    failures = failures or {}
    lines = [f"# Constitution discovered by run `{md_text(run_name)}`", ""]
    live = [p for p in principles if p.status == "active"]
    if not principles:
        lines += ["No principle has been found yet: the oracle flagged no failure, or proposed nothing usable.", ""]
        return "\n".join(lines)
    merged = [p for p in principles if p.status == "merged"]
    retired = [p for p in principles if p.status == "retired"]
    lines += [
        f"{len(live)} active principle{'s' if len(live) != 1 else ''} ({len(merged)} merged into others, "
        f"{len(retired)} retired), each written "
        "by the oracle from failures of the model being aligned, or loaded from a starting constitution. The "
        "fix rate of a principle is the share of revision attempts of its own failures (a loaded principle's: "
        "every revision it was in), written with it in the prompt, that the judge passed.",
        "",
        "> Content warning: the examples below quote harmful requests from red-team data sets and the "
        "model's harmful answers, shortened.",
        "",
    ]
    themes: dict[str, list[Principle]] = defaultdict(list)
    for p in live:
        themes[p.theme].append(p)
    for theme, group in sorted(themes.items(), key=lambda item: (-len(item[1]), item[0])):
        lines += [f"## {md_text(theme.capitalize())}", ""]
        for p in group:
            lines += [f"### {md_text(p.id)}. {md_text(p.text)}", ""]
            lines += [f"{_born(p)} {fix_rate_text(p).capitalize()}.", ""]
            if p.rationale:
                lines += [f"*Why:* {md_text(p.rationale)}", ""]
            examples = [pid for pid in p.evidence if pid in prompts][:EXAMPLES_PER_PRINCIPLE]
            if examples:
                lines += [f"Written from {len(p.evidence)} failure(s), for example:", ""]
                for pid in examples:
                    lines.append(f"- Request: {_short(prompts[pid].text)}")
                    if pid in failures:
                        lines.append(f"  Answer judged harmful: {_short(failures[pid], 120)}")
                lines.append("")
            elif p.evidence:
                lines += [f"Written from {len(p.evidence)} failure(s) of another run.", ""]
    if merged:
        lines += ["## Merged into other principles", ""]
        lines += [f"- {md_text(p.id)} → {md_text(p.merged_into)} (similarity {p.similarity:.2f}): {md_text(p.text)}"
                  for p in merged]
        lines.append("")
    if retired:
        lines += ["## Retired", "", "No longer used: their revisions kept failing the judge.", ""]
        lines += [f"- {md_text(p.id)} ({fix_rate_text(p)}): {md_text(p.text)}" for p in retired]
        lines.append("")
    return "\n".join(lines)
