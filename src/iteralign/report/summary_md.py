"""report.md: the short Markdown summary beside report.html, for a terminal, a pull request or a
chat message.

In: a `RunData` (run_reader.py). Out: Markdown with the run's status and anything unfinished, the
violation rates per iteration, the evaluation of the base model against the last evaluated
model (values with 95% intervals), the constitution's size, and total time and model calls.
"""
from __future__ import annotations

from iteralign.report import formatting as fmt
from iteralign.report.headline import build_headline
from iteralign.report.run_reader import RunData, Step


def constitution_size(run: RunData) -> str:
    """'3 principles (2 active, 1 merged)', from constitution.json when there is one."""
    if run.constitution is not None:
        counts: dict[str, int] = {}
        for p in run.constitution:
            counts[str(p.get("status", "?"))] = counts.get(str(p.get("status", "?")), 0) + 1
        detail = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        return _count(len(run.constitution), "principle") + (f" ({detail})" if detail else "")
    return _count(len(run.principles_added()), "principle") + " written"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def evaluated_steps(run: RunData) -> tuple[Step | None, Step | None]:
    """(the base model's evaluation, the last iteration's) where the run has them."""
    base = run.baseline if run.baseline and run.baseline.evaluation else None
    last = next((s for s in reversed(run.iterations) if s.evaluation), None)
    return base, last


def rate_rows(run: RunData) -> list[str]:
    lines = ["| model | answers | revisions (accepted) | held-out probe | principles added | training (loss) | status |",
             "|---|---|---|---|---|---|---|"]
    for step in run.steps:
        accepted = (step.revisions or {}).get("accepted")
        added = len((step.principles or {}).get("added") or []) if step.principles is not None else ""
        status = "finished" if step.finished else f"stopped in {step.stopped_in}"
        lines.append(f"| {step.label} | {fmt.tally(step.answers)} | {fmt.tally(step.revisions)}"
                     f"{f' ({accepted})' if accepted is not None else ''} | {fmt.tally(step.probe)} | {added} | "
                     f"{fmt.md_cell(fmt.training(step.summary or {}))} | {status} |")
    return lines


def reference_rows(run: RunData) -> list[str]:
    """The oracle's rate beside the reference judge's and their agreement, where the run has one."""
    rows = []
    for step in run.steps:
        for what, counts in (("answers", step.answers), ("probe", step.probe)):
            if counts and counts.get("reference_n") is not None:
                kappa = counts.get("reference_kappa")
                rows.append(f"| {step.label} | {what} | {fmt.rate(counts.get('violation_rate'))} | "
                            f"{fmt.rate(counts.get('reference_violation_rate'))} | "
                            f"{fmt.rate(counts.get('reference_agreement'))} | "
                            f"{'n/a' if kappa is None else f'{kappa:.3f}'} | {counts['reference_n']} |")
    if not rows:
        return []
    return ["", "The judge against the reference judge (the same answers judged twice):", "",
            "| model | answers | judge's rate | reference's rate | agreement | kappa | n both scored |",
            "|---|---|---|---|---|---|---|", *rows]


def render_summary(run: RunData, html_name: str = "report.html") -> str:
    models = run.manifest.get("models") or {}
    status = (f"Finished {run.manifest['finished']}" if run.finished else "**Not finished**")
    e = fmt.md_text
    lines = [f"# IterAlign run `{e(run.name)}`", "",
             f"{e(status)}; stopped because: {e(run.manifest.get('stop_reason') or 'n/a')}. "
             f"Base model `{e(models.get('base'))}`, oracle `{e(models.get('oracle'))}`.", ""]
    lines += [f"> **Note:** {e(note)}" for note in run.notes] + ([""] if run.notes else [])
    lines += ["## Headline", "", *[f"- {fmt.md_text(line)}" for line in build_headline(run).lines()], ""]
    lines += ["## Violation rates", "", *rate_rows(run), *reference_rows(run), ""]
    base, last = evaluated_steps(run)
    shown = [s for s in (base, last) if s is not None]
    if shown:
        lines += ["## Evaluation (95% intervals)", "", "| benchmark | metric | " + " | ".join(s.label for s in shown) + " |",
                  "|---|---|" + "---|" * len(shown)]
        names: list[tuple[str, str]] = []
        for s in shown:
            for bench, result in s.evaluation.items():
                names += [(bench, m) for m in (result.get("metrics") or {}) if (bench, m) not in names]
        for bench, metric in names:
            lines.append(f"| {fmt.md_cell(e(bench))} | {fmt.md_cell(e(metric))} | "
                         + " | ".join(fmt.metric(s.metric(bench, metric)) for s in shown) + " |")
        lines.append("")
    totals = run.totals()
    lines += ["## Constitution, time and calls", "",
              f"- Constitution: {constitution_size(run)}.",
              f"- Total stage time: {fmt.seconds(totals['seconds'])}.",
              f"- Model calls: {int(totals['calls_made'])} made, {int(totals['calls_cached'])} served from the cache, "
              f"{int(totals['calls_failed'])} failed.", "",
              f"Plots, per-stage times, principles and before/after examples: [{html_name}]({html_name}).", ""]
    return "\n".join(lines)
