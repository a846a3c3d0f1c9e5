"""report.html: one self-contained page about a run.

In: a `RunData` (run_reader.py) and its plots (plots.py). Out: an HTML string with inline CSS and
every plot inline as a base64 PNG data URI: no script, no stylesheet, font or image to fetch, so
the page opens offline, from an archive or an e-mail attachment, and shows the same thing.

Every text that comes from the run (prompts, answers, principles, config values) is escaped: the
answers are model output and the prompts are red-team data, both free to contain markup.
"""
from __future__ import annotations

import base64
from html import escape

from iteralign.report import formatting as fmt
from iteralign.report.examples import before_after
from iteralign.report.headline import build_headline
from iteralign.report.plots import EFFECTS, Plot, benchmark_names
from iteralign.report.run_reader import RunData, fix_counts, rejected_repeats

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1100px;padding:1rem 2rem;
color:#1d1d1f;background:#fff;line-height:1.4}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{border-left:5px solid #c77700;background:#fff4e0;padding:.5rem 1rem;margin:.5rem 0}
.ok{color:#1b7f3b}.bad{color:#b3261e}.muted{color:#666;font-size:.85rem}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.85rem;color:#555}
details{border:1px solid #ccc;border-radius:4px;padding:.5rem 1rem;margin:.5rem 0;background:#fafafa}
summary{cursor:pointer;font-weight:600}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1rem;margin:.75rem 0}
.pair div{background:#fff;border:1px solid #ddd;padding:.5rem;white-space:pre-wrap;font-size:.85rem}
code{background:#f3f3f3;padding:0 .2rem}
.headline{border:2px solid #1b7f3b;border-radius:6px;padding:.2rem 1rem;margin:1rem 0;background:#f3fbf5}
.headline h2{border:none;margin-top:.5rem}
"""


def _e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], numeric_from: int = 1) -> str:
    """Cells arrive already escaped/marked up; columns from `numeric_from` are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class=\"num\">{c}</td>" if i >= numeric_from else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(plot: Plot | None) -> str:
    if plot is None:
        return ""
    data = base64.b64encode(plot.png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(plot.alt)}" class="plot" '
            f'data-plot="{_e(plot.name)}"><figcaption>{_e(plot.title)}</figcaption></figure>')


def _header(run: RunData) -> str:
    m = run.manifest
    models = m.get("models") or {}
    status = ('<span class="ok">finished</span>' if run.finished else '<span class="bad">not finished</span>')
    facts = [("run directory", f"<code>{_e(run.root)}</code>"), ("status", status),
             ("base model", _e(models.get("base"))), ("oracle", _e(models.get("oracle"))),
             ("seed", _e(m.get("seed"))), ("started", _e(m.get("started"))), ("finished", _e(m.get("finished"))),
             ("stopped because", _e(m.get("stop_reason"))),
             ("prompts (train / held-out / probe)",
              " / ".join(_e((m.get("data") or {}).get(k, "?")) for k in ("train", "heldout", "probe"))),
             ("versions", _e(", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items())))]
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    notes = "".join(f'<div class="note">{_e(n)}</div>' for n in run.notes)
    headline = "".join(f"<li>{_e(line)}</li>" for line in build_headline(run).lines())
    return (f"<h1>IterAlign run <code>{_e(run.name)}</code></h1>{notes}"
            f'<div class="headline"><h2>Headline</h2><ul>{headline}</ul></div><table>{rows}</table>')


def _calls(stages: dict) -> tuple[int, int, int]:
    return tuple(sum(int(s.get(k) or 0) for s in stages.values()) for k in ("calls_made", "calls_cached", "calls_failed"))


def _overview(run: RunData, plots: dict[str, Plot]) -> str:
    rows = []
    for step in run.steps:
        summary = step.summary or {}
        made, cached, failed = _calls(step.stages)
        seconds = sum(float(s.get("seconds") or 0) for s in step.stages.values())
        accepted = (step.revisions or {}).get("accepted")
        rows.append([_e(step.label), _e(fmt.tally(step.answers)),
                     _e(fmt.tally(step.revisions)) + (f" ({_e(accepted)} accepted)" if accepted is not None else ""),
                     _e(fmt.tally(step.probe)), _e(len((step.principles or {}).get("added") or [])
                                                    if step.principles is not None else ""),
                     _e(summary.get("sft_examples", "")), _e(fmt.training(summary)),
                     _e(fmt.seconds(seconds)).replace(" ", "&nbsp;"), f"{made}&nbsp;/&nbsp;{cached}&nbsp;/&nbsp;{failed}",
                     "finished" if step.finished else f'<span class="bad">stopped in {_e(step.stopped_in)}</span>'])
    header = ["model", "answers: violation rate", "revisions", "held-out probe", "principles added",
              "SFT examples", "train loss", "time", "calls made / cached / failed", "status"]
    explain = ("<p>Violation rates are over the answers the oracle scored; unscored ones are counted, never "
               "taken as a pass or a fail. <em>Answers</em> are this iteration's red-team prompts answered by the "
               "model before training; the <em>probe</em> is a fixed held-out set answered after training.</p>")
    return ("<h2>Violation rates</h2>" + explain + _table(header, rows) + _figure(plots.get("violation_rates"))
            + _reference(run) + _effects(run, plots))


def _reference(run: RunData) -> str:
    rows = []
    for step in run.steps:
        for what, counts in (("answers", step.answers), ("probe", step.probe)):
            if counts and counts.get("reference_n") is not None:
                kappa = counts.get("reference_kappa")
                rows.append([_e(step.label), _e(what), _e(fmt.rate(counts.get("violation_rate"))),
                             _e(fmt.rate(counts.get("reference_violation_rate"))),
                             _e(fmt.rate(counts.get("reference_agreement"))),
                             _e("n/a" if kappa is None else f"{kappa:.3f}"), _e(counts["reference_n"])])
    if not rows:
        return ""
    return ("<h3>The judge against the reference judge</h3><p>The same answers judged a second time by the "
            "model-free refusal judge (<code>judge.reference</code>). Low agreement or a kappa near 0 means "
            "the oracle's verdicts are close to noise.</p>"
            + _table(["model", "answers", "judge's rate", "reference's rate", "agreement", "kappa", "n both scored"],
                     rows, 2))


def _effects(run: RunData, plots: dict[str, Plot]) -> str:
    steps = [s for s in run.iterations if isinstance(s.effects, dict)]
    if not steps:
        return ""
    rows = [[_e(s.label), _e(s.effects.get("n"))] + [_e(fmt.rate(s.effects.get(k))) for k, _ in EFFECTS] for s in steps]
    return ("<h3>Principles in the prompt vs in the weights</h3><p>Held-out probe violation rates: the base "
            "prompt without principles, the constitution in the prompt, and the trained model without principles."
            "</p>" + _table(["iteration", "n"] + [label for _, label in EFFECTS], rows) + _figure(plots.get("effects")))


def _evaluation(run: RunData, plots: dict[str, Plot]) -> str:
    names = benchmark_names(run)
    if not names:
        return ("<h2>Evaluation</h2><p>No eval.json in this run: set <code>eval.benchmarks</code> in the config to "
                "evaluate the base model and the model after each iteration.</p>")
    parts = ["<h2>Evaluation</h2><p>Each value with its 95% interval and the number of examples behind it.</p>",
             _figure(plots.get("tradeoff"))]
    for name in names:
        steps = [s for s in run.steps if s.evaluation and name in s.evaluation]
        metric_names: list[str] = []
        for s in steps:
            metric_names += [k for k in (s.evaluation[name].get("metrics") or {}) if k not in metric_names]
        rows = [[_e(metric)] + [_e(fmt.metric(s.metric(name, metric))) for s in steps] for metric in metric_names]
        protocol = steps[0].evaluation[name].get("protocol", "")
        parts.append(f"<h3>{_e(name)} <span class=\"muted\">{_e(protocol)}</span></h3>"
                     + _table(["metric"] + [_e(s.label) for s in steps], rows) + _figure(plots.get(f"eval_{name}")))
    return "".join(parts)


def _principle_rows(run: RunData) -> tuple[list[str], list[list[str]]]:
    if run.constitution is not None:
        header = ["id", "status", "theme", "principle", "born", "evidence", "fix rate"]
        rows = []
        for p in run.constitution:
            passed, attempts = fix_counts(p)
            fix = fmt.rate(p.get("fix_rate")) + (f" ({passed}/{attempts})" if attempts is not None else "")
            status = _e(p.get("status")) + (f" into {_e(p.get('merged_into'))}" if p.get("merged_into") else "")
            born = "loaded" if p.get("iteration") == -1 else p.get("iteration")  # -1: from a starting constitution
            rows.append([_e(p.get("id")), status, _e(p.get("theme", "")), _e(p.get("text")),
                         _e(born), _e(len(p.get("evidence") or [])), _e(fix)])
        return header, rows
    header = ["id", "principle", "rationale", "born", "evidence"]
    return header, [[_e(p.get("id")), _e(p.get("text")), _e(p.get("rationale")), _e(p.get("iteration")),
                     _e(len(p.get("evidence") or []))] for p in run.principles_added()]


def _constitution(run: RunData, plots: dict[str, Plot]) -> str:
    parts = ["<h2>Constitution</h2>", _figure(plots.get("constitution_growth"))]
    for step in run.iterations:
        doc = step.principles
        if not isinstance(doc, dict):
            parts.append(f"<p><strong>{_e(step.label)}</strong>: no proposal (stage did not finish).</p>")
            continue
        items = [f"<li>added <strong>{_e(p.get('id'))}</strong>: {_e(p.get('text'))}</li>" for p in doc.get("added") or []]
        items += [f"<li>merged into <strong>{_e(m.get('into'))}</strong> (similarity {_e(m.get('similarity'))}): "
                  f"{_e(m.get('new'))}</li>" for m in doc.get("merged") or [] if isinstance(m, dict)]
        items += [f"<li>rejected as a repeat of an existing principle: "
                  f"{_e(d if isinstance(d, str) else d.get('text', d))}</li>" for d in rejected_repeats(doc)]
        items += [f"<li>retired (revisions with it kept failing): <strong>{_e(pid)}</strong></li>"
                  for pid in (step.summary or {}).get("principles_retired") or []]
        parts.append(f"<p><strong>{_e(step.label)}</strong>: {_e(doc.get('failures', '?'))} failures shown to the "
                     "oracle" + (f"</p><ul>{''.join(items)}</ul>" if items else "; nothing added.</p>"))
    header, rows = _principle_rows(run)
    if rows:
        where = "constitution.json" if run.constitution is not None else (
            "the iterations' 04_principles.json (this run has no constitution.json, so no status or fix rate)")
        parts.append(f"<h3>Principles</h3><p class=\"muted\">From {_e(where)}.</p>" + _table(header, rows, len(header)))
    return "".join(parts)


def _examples(run: RunData) -> str:
    parts = []
    for step in run.iterations:
        for pair in before_after(step.folder):
            verdict = f"revision judged {_e(pair.revision_status)}, {'accepted for SFT' if pair.accepted else 'not accepted'}"
            parts.append(
                f"<p><strong>{_e(step.label)}</strong> · <code>{_e(pair.prompt_id)}</code>: {_e(pair.prompt)}</p>"
                f"<div class=\"pair\"><div><strong>answer (flagged)</strong>\n{_e(pair.answer)}\n\n<em>oracle:</em> "
                f"{_e(pair.judge_rationale)}</div><div><strong>revision under "
                f"{_e(', '.join(pair.principle_ids) or 'no principle')}</strong>\n{_e(pair.revision)}\n\n"
                f"<em>{verdict}</em></div></div>")
    if not parts:
        return "<h2>Before and after</h2><p>No flagged answer with a revision in this run.</p>"
    return ("<h2>Before and after</h2><details><summary>Content warning: harmful requests from red-team data "
            "sets and model answers that may comply with them (click to show)</summary>" + "".join(parts)
            + "</details>")


def _time_and_calls(run: RunData, plots: dict[str, Plot]) -> str:
    totals = run.totals()
    rows = []
    for name in run.stage_names():
        cells = []
        for step in run.steps:
            s = step.stages.get(name)
            cells.append(f"{_e(fmt.seconds(s.get('seconds')))}<br><span class=\"muted\">{s.get('calls_made', 0)} made, "
                         f"{s.get('calls_cached', 0)} cached, {s.get('calls_failed', 0)} failed</span>" if s else "")
        rows.append([_e(name)] + cells)
    cache = run.manifest.get("calls_in_cache")
    line = (f"<p>Total stage time {_e(fmt.seconds(totals['seconds']))}; model calls made {int(totals['calls_made'])}, "
            f"served from the cache {int(totals['calls_cached'])}, failed {int(totals['calls_failed'])}"
            + (f"; {_e(cache)} calls stored in calls.sqlite" if cache is not None else "") + ".</p>")
    return ("<h2>Time and model calls</h2>" + line + _figure(plots.get("stage_times"))
            + _table(["stage"] + [_e(s.label) for s in run.steps], rows))


def render_html(run: RunData, plots: dict[str, Plot]) -> str:
    body = "".join([_header(run), _overview(run, plots), _evaluation(run, plots), _constitution(run, plots),
                    _examples(run), _time_and_calls(run, plots)])
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>IterAlign run {_e(run.name)}</title><style>{CSS}</style></head><body>{body}"
            f"<p class=\"muted\">Written by <code>iteralign report</code> from the files of the run directory."
            f"</p></body></html>\n")
