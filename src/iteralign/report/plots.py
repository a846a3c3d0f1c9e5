"""The report's plots, drawn with matplotlib's Agg canvas into PNG bytes.

In: a `RunData` (run_reader.py). Out: `draw_all(run)` -> a list of `Plot` (name, title, PNG bytes,
alt text), only for the data the run has: no eval.json, no evaluation plots; no `effects`, no
effects plot. Every rate is drawn with its 95% interval where the run gives one (Wilson, from
the counts in summary.json; the CIs stored in eval.json), because with a probe of 10 prompts
the interval is the honest part of the number.

The figures are built with `Figure` + `FigureCanvasAgg`, not pyplot: no global state, no GUI
backend, no display needed. matplotlib is imported here only, so the rest of iteralign runs
without it.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from iteralign.errors import UserError
from iteralign.statistics import wilson_interval
from iteralign.report.run_reader import RunData, Step, rejected_repeats

# metrics where a smaller number is the better model; the legend says so
LOWER_IS_BETTER = {"violation_rate", "complied", "safe_refused", "safe_full_refusal", "unsafe_complied", "unscored"}
EFFECTS = [("without_principles", "base prompt, no principles"), ("in_context", "constitution in the prompt"),
           ("in_weights", "after SFT, no principles")]


@dataclass
class Plot:
    name: str  # stable id, used as the <img>'s data-plot attribute
    title: str
    png: bytes
    alt: str


def _figure(width: float = 7.5, height: float = 3.6):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("the report's plots need matplotlib, which is not installed; run `make setup` or "
                        "`pip install -r requirements.lock`") from None
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    # no "Software" stamp: the same run gives byte-identical images
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def _wilson(tally: dict | None) -> tuple[float, float, float] | None:
    """(rate, low, high) from a summary tally, or None when nothing was scored."""
    if not tally or tally.get("violation_rate") is None:
        return None
    bad, scored = int(tally.get("violation") or 0), int(tally.get("violation") or 0) + int(tally.get("ok") or 0)
    low, high = wilson_interval(bad, scored)
    return float(tally["violation_rate"]), low, high


def _rate_axis(axes, labels: list[str]) -> None:
    axes.set_xticks(range(len(labels)), labels)
    axes.set_ylim(-0.03, 1.03)
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.grid(axis="y", alpha=0.3)


def violation_rates(run: RunData) -> Plot | None:
    steps = run.steps
    series = [("answers", "red-team answers (before training)", "o"),
              ("revisions", "revisions under the principles", "s"),
              ("probe", "held-out probe (after training)", "D")]
    figure = _figure()
    axes = figure.add_subplot()
    drawn = 0
    for offset, (attribute, label, marker) in zip((-0.08, 0.0, 0.08), series):
        points = [(x + offset, _wilson(getattr(step, attribute))) for x, step in enumerate(steps)]
        points = [(x, p) for x, p in points if p is not None]
        if not points:
            continue
        drawn += 1
        xs, values = [x for x, _ in points], [p[0] for _, p in points]
        errors = [[p[0] - p[1] for _, p in points], [p[2] - p[0] for _, p in points]]
        axes.errorbar(xs, values, yerr=errors, marker=marker, capsize=3, label=label)
    if not drawn:
        return None
    _rate_axis(axes, [s.label for s in steps])
    axes.set_ylabel("violation rate")
    axes.set_title("Oracle-judged violation rate (95% Wilson interval)")
    axes.legend(fontsize=8, loc="best")
    return Plot("violation_rates", "Violation rates per iteration", _png(figure),
                "violation rates of answers, revisions and the held-out probe per iteration")


def effects(run: RunData) -> Plot | None:
    steps = [s for s in run.iterations if isinstance(s.effects, dict)]
    if not steps:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    drawn = 0
    for key, label in EFFECTS:
        points = [(x, s.effects.get(key)) for x, s in enumerate(steps) if s.effects.get(key) is not None]
        if points:
            drawn += 1
            axes.plot([x for x, _ in points], [v for _, v in points], marker="o", label=label)
    if not drawn:
        return None
    _rate_axis(axes, [s.label for s in steps])
    sizes = sorted({s.effects.get("n") for s in steps if s.effects.get("n") is not None})
    axes.set_ylabel("probe violation rate")
    axes.set_title(f"Where the principles act (held-out probe, n={'/'.join(map(str, sizes)) or '?'})")
    axes.legend(fontsize=8, loc="best")
    return Plot("effects", "Principles in the prompt vs in the weights", _png(figure),
                "held-out probe violation rate without principles, with them in context, and after training")


def benchmark(run: RunData, name: str) -> Plot | None:
    steps = [s for s in run.steps if s.evaluation and name in s.evaluation]
    metric_names: list[str] = []
    for step in steps:
        for metric in (step.evaluation[name].get("metrics") or {}).values():
            if metric.get("interval") != "count" and metric["name"] not in metric_names:
                metric_names.append(metric["name"])  # counts (unscored) are in the table, not on a rate axis
    if not metric_names:
        return None
    figure = _figure()
    axes = figure.add_subplot()
    width = 0.5 / max(1, len(metric_names))
    for i, metric_name in enumerate(metric_names):
        points = [(x + (i - (len(metric_names) - 1) / 2) * width, s.metric(name, metric_name))
                  for x, s in enumerate(steps)]
        points = [(x, m) for x, m in points if m]
        errors = [[max(0.0, m["value"] - m["ci_low"]) for _, m in points],
                  [max(0.0, m["ci_high"] - m["value"]) for _, m in points]]
        label = metric_name + (" (lower is better)" if metric_name in LOWER_IS_BETTER else "")
        axes.errorbar([x for x, _ in points], [m["value"] for _, m in points], yerr=errors, marker="o",
                      capsize=3, label=label)
    _rate_axis(axes, [s.label for s in steps])
    protocol = steps[0].evaluation[name].get("protocol", "")
    axes.set_title(f"{name} [{protocol}] (95% interval)")
    axes.legend(fontsize=8, loc="best", ncol=2 if len(metric_names) > 3 else 1)
    return Plot(f"eval_{name}", f"{name} per iteration", _png(figure), f"{name} metrics per iteration with 95% intervals")


def tradeoff(run: RunData) -> Plot | None:
    """Harm (harmlessness violation rate) against over-refusal (XSTest safe prompts refused)."""
    points = [(s.label, s.metric("xstest", "safe_refused"), s.metric("harmlessness", "violation_rate"))
              for s in run.steps]
    points = [p for p in points if p[1] and p[2]]
    if not points:
        return None
    figure = _figure(6.0, 4.2)
    axes = figure.add_subplot()
    xs, ys = [p[1]["value"] for p in points], [p[2]["value"] for p in points]
    axes.plot(xs, ys, color="0.7", zorder=1)
    axes.errorbar(xs, ys, xerr=[[max(0.0, p[1]["value"] - p[1]["ci_low"]) for p in points],
                                [max(0.0, p[1]["ci_high"] - p[1]["value"]) for p in points]],
                  yerr=[[max(0.0, p[2]["value"] - p[2]["ci_low"]) for p in points],
                        [max(0.0, p[2]["ci_high"] - p[2]["value"]) for p in points]],
                  fmt="none", ecolor="0.5", capsize=3, zorder=2)
    axes.scatter(xs, ys, c=list(range(len(points))), cmap="viridis", s=60, zorder=3, edgecolors="black")
    for (label, _, _), x, y in zip(points, xs, ys):
        axes.annotate(label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=8)
    for axis in (axes.set_xlim, axes.set_ylim):
        axis(-0.03, 1.03)
    axes.xaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    axes.set_xlabel("XSTest safe prompts refused (over-refusal)")
    axes.set_ylabel("harmlessness violation rate")
    axes.set_title("Harm vs over-refusal, 95% intervals (lower left is better)")
    axes.grid(alpha=0.3)
    return Plot("tradeoff", "Harmlessness vs over-refusal", _png(figure),
                "harmlessness violation rate against XSTest over-refusal per model")


def active_sizes(steps: list[Step]) -> tuple[list[int], str]:
    """The library's size after each iteration, and what it counts: the active principles where
    04_principles.json holds the library (minus those retired that iteration), else every
    principle written so far."""
    if all(isinstance(s.principles.get("library"), list) for s in steps):
        retired = [set((s.summary or {}).get("principles_retired") or []) for s in steps]
        return [sum(p.get("status", "active") == "active" and p.get("id") not in gone for p in s.principles["library"])
                for s, gone in zip(steps, retired)], "active principles"
    sizes, total = [], 0
    for s in steps:
        total += len(s.principles.get("added") or [])
        sizes.append(total)
    return sizes, "principles written so far"


def constitution_growth(run: RunData) -> Plot | None:
    steps = [s for s in run.iterations if isinstance(s.principles, dict)]
    if not steps:
        return None
    added = [len(s.principles.get("added") or []) for s in steps]
    merged = [len(s.principles.get("merged") or []) for s in steps]
    duplicates = [len(rejected_repeats(s.principles)) for s in steps]
    retired = [len((s.summary or {}).get("principles_retired") or []) for s in steps]
    figure = _figure()
    axes = figure.add_subplot()
    xs = range(len(steps))
    bars = [(added, "added"), (merged, "merged into an existing one"), (duplicates, "rejected as a repeat")]
    if any(retired):
        bars.append((retired, "retired"))
    width = 0.8 / len(bars)
    for i, (values, label) in enumerate(bars):
        axes.bar([x + (i - (len(bars) - 1) / 2) * width for x in xs], values, width=width, label=label)
    sizes, label = active_sizes(steps)
    axes.plot(list(xs), sizes, color="black", marker="o", label=label)
    axes.set_xticks(list(xs), [s.label for s in steps])
    axes.set_ylim(0, max(sizes + merged + duplicates + retired + [1]) * 1.15)
    axes.yaxis.get_major_locator().set_params(integer=True)
    axes.set_ylabel("principles")
    axes.set_title("Constitution growth")
    axes.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return Plot("constitution_growth", "Constitution growth", _png(figure),
                "principles added, merged and rejected per iteration, and the running total")


def stage_times(run: RunData) -> Plot | None:
    steps = [s for s in run.steps if s.stages]
    if not steps:
        return None
    names = run.stage_names()
    figure = _figure(7.5, 1.2 + 0.45 * len(steps))
    axes = figure.add_subplot()
    left = [0.0] * len(steps)
    from matplotlib import colormaps

    palette = colormaps["tab10"]  # a distinct colour for each stage (the loop has 8)
    for i, name in enumerate(names):
        seconds = [float((s.stages.get(name) or {}).get("seconds") or 0.0) for s in steps]
        axes.barh(range(len(steps)), seconds, left=left, color=palette(i % 10), label=name)
        left = [a + b for a, b in zip(left, seconds)]
    axes.set_yticks(range(len(steps)), [s.label for s in steps])
    axes.invert_yaxis()
    axes.set_xlabel("seconds")
    axes.set_title("Time per stage")
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return Plot("stage_times", "Time per stage", _png(figure), "seconds spent in each stage per iteration")


def benchmark_names(run: RunData) -> list[str]:
    names: list[str] = []
    for step in run.steps:
        names += [n for n in (step.evaluation or {}) if n not in names]
    return names


def draw_all(run: RunData) -> dict[str, Plot]:
    """Every plot the run has data for, by name."""
    candidates = [violation_rates(run), effects(run), tradeoff(run), constitution_growth(run), stage_times(run)]
    candidates += [benchmark(run, name) for name in benchmark_names(run)]
    return {plot.name: plot for plot in candidates if plot is not None}
