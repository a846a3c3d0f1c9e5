"""How numbers read in the report, its Markdown summary and the comparison (one place, so the
three agree). In: rates, metrics from eval.json, seconds. Out: short strings; "n/a" for a number
the run does not have (never 0, which would read as a measurement).
"""
from __future__ import annotations


def rate(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def tally(counts: dict | None) -> str:
    """'45.0% (9/20 scored, 1 unscored)' from a summary tally."""
    if not counts:
        return "n/a"
    scored = int(counts.get("ok") or 0) + int(counts.get("violation") or 0)
    text = f"{rate(counts.get('violation_rate'))} ({counts.get('violation', 0)}/{scored}"
    unscored = counts.get("unscored") or 0
    return text + (f", {unscored} unscored)" if unscored else ")")


def metric(m: dict | None) -> str:
    """'0.512 [0.401, 0.620] n=100' from an eval.json metric; counts are shown as counts."""
    if not m:
        return "n/a"
    if m.get("interval") == "count":
        return f"{m['value']:g} of {m.get('n')}"
    return f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}] n={m.get('n')}"


def training(summary: dict) -> str:
    """'0.41' for SFT; 'DPO 0.52: margin +0.83, chosen wins 100% (beta 0.1, sigmoid)' when DPO ran."""
    loss = summary.get("train_loss")
    info = summary.get("training") if isinstance(summary.get("training"), dict) else {}
    dpo = info.get("dpo") if isinstance(info.get("dpo"), dict) else None
    if not dpo:
        return "" if loss is None else f"{loss}"
    margin, wins = dpo.get("rewards_margins_last"), dpo.get("rewards_accuracies_last")
    text = f"DPO {loss}"
    if isinstance(margin, (int, float)):
        text += f": margin {margin:+.2f}"
    if isinstance(wins, (int, float)):
        text += f", chosen wins {100 * wins:.0f}%"
    text += f" (beta {dpo.get('beta')}, {dpo.get('loss_type')}, {dpo.get('pairs')} pairs)"
    sft = info.get("sft") if isinstance(info.get("sft"), dict) else None
    return (f"SFT {sft.get('loss')}, then " if sft else "") + text


def seconds(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 120:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def md_cell(value: object) -> str:
    """Text safe inside a Markdown table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


def md_text(value: object) -> str:
    """Text from a run (model output, data, config) safe in Markdown: HTML escaped, so a
    `<script>` or `<img src=...>` an answer contains shows as text and is never rendered."""
    from html import escape

    return escape(str(value), quote=False)
