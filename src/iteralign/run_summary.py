"""What a finished iteration amounts to, and whether to go on: small pure helpers of loop.py.

- `early_stop_reason`: the loop's stop rules after an iteration (target rate, patience);
- `effects_summary`: the probe without principles, with them in context, with them in weights;
- `log_summary`: the one line a person reads per iteration (calls retried after an outage too);
- `versions`: the packages a run's manifest records.
"""
from __future__ import annotations

import logging
import platform
from importlib import metadata

from iteralign.config import LoopConfig
from iteralign.records import IterationSummary, Verdict
from iteralign.store.layout import tally

log = logging.getLogger("iteralign.loop")


def early_stop_reason(summaries: list[IterationSummary], loop: LoopConfig) -> str | None:
    """Why to stop before loop.iterations, judged after the latest iteration; None to go on."""
    rate = summaries[-1].probe.get("violation_rate")
    if loop.target_violation_rate is not None and rate is not None and rate <= loop.target_violation_rate:
        return f"probe violation rate {rate} reached the target {loop.target_violation_rate}"
    recent = summaries[-loop.patience:] if loop.patience else []
    if loop.patience and len(recent) == loop.patience and not any(s.principles_added for s in recent):
        return f"no new principle in the last {loop.patience} iterations"
    return None


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("iteralign", "torch", "transformers", "peft", "trl", "llama_cpp_python", "openai"):
        try:
            out[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


def effects_summary(without: list[Verdict], in_context: list[Verdict] | None, in_weights: list[Verdict],
                    principles: int) -> dict:
    """Probe violation rates: before this iteration's training without principles, the same model
    with them in the prompt, after training without them (None where nothing was scored)."""
    context = tally(in_context) if in_context is not None else {}
    return {"n": len(in_weights), "without_principles": tally(without).get("violation_rate"),
            "in_context": context.get("violation_rate"), "in_weights": tally(in_weights).get("violation_rate"),
            "in_context_unscored": context.get("unscored"), "principles_available": principles}


def _rate(t: dict) -> str:
    rate = t.get("violation_rate")
    return "n/a" if rate is None else f"{rate:.0%}"  # None: nothing was scored


def log_summary(s: IterationSummary) -> None:
    log.info("iteration %d done: answers %s violations (%d unscored), revisions %s, probe %s "
             "(%d of %d probe answers changed by training); %d principles added, %d SFT examples, loss %s; "
             "%d calls retried after an earlier failure",
             s.iteration, _rate(s.answers), s.answers["unscored"], _rate(s.revisions), _rate(s.probe),
             s.probe_answers_changed, s.probe["n"], len(s.principles_added), s.sft_examples, s.train_loss, s.calls_retried)
