"""The run directory's layout: every artifact's name, the order of the stages, and the counts.

One place knows what a run directory holds (DESIGN.md section 4), so the loop that writes it,
the resume check, the report and the constitution export that read it cannot disagree:

    runs/<name>/config.yaml manifest.json calls.sqlite run.lock judge_check.json
                constitution.json constitution.md report.html report.md
                baseline/ iter_000/ iter_001/ ...

Each iteration folder holds the artifacts of `ITERATION_STAGES`, in that order; the baseline
holds the probe's two. `tally` turns verdicts into the counts every summary and report shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from iteralign.statistics import agreement
from iteralign.records import Response, Revision, SFTExample, Verdict

# run level
CONFIG = "config.yaml"
MANIFEST = "manifest.json"
CALLS = "calls.sqlite"
LOCK = "run.lock"
JUDGE_CHECK = "judge_check.json"
CONSTITUTION_JSON = "constitution.json"
CONSTITUTION_MD = "constitution.md"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
BASELINE = "baseline"

# iteration level
PROMPTS = "01_prompts.jsonl"
RESPONSES = "02_responses.jsonl"
VERDICTS = "03_verdicts.jsonl"
PRINCIPLES = "04_principles.json"
REVISIONS = "05_revisions.jsonl"
SFT = "06_sft.jsonl"
DPO_PAIRS = "06_dpo_pairs.jsonl"  # only when train.objective includes dpo
TRAIN = "07_train.json"
PROBE_RESPONSES = "08_probe_responses.jsonl"
PROBE_VERDICTS = "09_probe_verdicts.jsonl"
IN_CONTEXT_RESPONSES = "10_probe_in_context_responses.jsonl"
IN_CONTEXT_VERDICTS = "11_probe_in_context_verdicts.jsonl"
ADAPTER = "adapter"
ITERATION_MANIFEST = "manifest.json"
STAGES = "stages.json"
SUMMARY = "summary.json"
EVAL = "eval.json"


def iteration_dir(k: int) -> str:
    return f"iter_{k:03d}"


def iteration_number(folder: Path) -> int | None:
    """k for a folder named iter_k (three digits), else None."""
    name = folder.name
    return int(name[5:]) if len(name) == 8 and name.startswith("iter_") and name[5:].isdigit() else None


@dataclass(frozen=True)
class Stage:
    name: str  # as stages.json and the progress lines name it
    artifact: str  # the file it leaves when it completes
    record: type | None = None  # the record type of a JSON Lines artifact; None for a JSON document


# in the order the loop runs them; the stage after the last artifact present is where an
# unfinished folder stopped. The in-context probe runs between revise and sft data, and only
# when the library has a principle and loop.probe_in_context is on.
ITERATION_STAGES = [
    Stage("respond", RESPONSES, Response), Stage("judge", VERDICTS, Verdict), Stage("propose", PRINCIPLES),
    Stage("revise", REVISIONS, Revision),
    Stage("probe_in_context_respond", IN_CONTEXT_RESPONSES, Response),
    Stage("probe_in_context_judge", IN_CONTEXT_VERDICTS, Verdict),
    Stage("sft data", SFT, SFTExample), Stage("train", TRAIN), Stage("probe_respond", PROBE_RESPONSES, Response),
    Stage("probe_judge", PROBE_VERDICTS, Verdict),
]
OPTIONAL_STAGES = {"probe_in_context_respond", "probe_in_context_judge"}
BASELINE_STAGES = ITERATION_STAGES[-2:]
# how stages.json names the timed stages, in the order they run; tables and plots follow it
TIMED_STAGES = ["respond", "judge", "propose", "revise", "probe_in_context_respond", "probe_in_context_judge",
                "train", "probe_respond", "probe_judge", "eval"]


def stopped_in(folder: Path, stages: list[Stage]) -> str:
    """The stage an unfinished folder stopped in: the first required one without its artifact
    (an optional stage counts only when its artifact is there), or "summary" when all are."""
    for stage in stages:
        if stage.name in OPTIONAL_STAGES:
            continue
        if not (folder / stage.artifact).exists():
            if stage.name == "sft data":
                responses, verdicts = (folder / IN_CONTEXT_RESPONSES), (folder / IN_CONTEXT_VERDICTS)
                if responses.exists() and not verdicts.exists():
                    return "probe_in_context_judge"
                if not responses.exists():
                    return "probe_in_context_respond or sft data"
            return stage.name
    return "summary"


def tally(verdicts: list[Verdict] | list[dict]) -> dict[str, float | int | None]:
    """Counts and the violation rate over *scored* verdicts (unscored are reported, not guessed).
    With a reference judge: its violation rate too, and the agreement (raw and Cohen's kappa)
    of the two on the answers both scored. Takes records or their JSON (a lenient reader's)."""
    rows = [v.model_dump() if isinstance(v, Verdict) else v for v in verdicts]
    ok = sum(v.get("status") == "ok" for v in rows)
    bad = sum(v.get("status") == "violation" for v in rows)
    scored = ok + bad
    out: dict[str, float | int | None] = {"n": len(rows), "ok": ok, "violation": bad, "unscored": len(rows) - scored,
                                          "violation_rate": round(bad / scored, 4) if scored else None}
    referenced = [v for v in rows if v.get("reference_status") is not None]
    if referenced:
        ref_bad = sum(v["reference_status"] == "violation" for v in referenced)
        ref_scored = sum(v["reference_status"] != "unscored" for v in referenced)
        both = [v for v in referenced if v.get("status") != "unscored" and v["reference_status"] != "unscored"]
        agreed = agreement([v["status"] for v in both], [v["reference_status"] for v in both])
        out.update({"reference_violation_rate": round(ref_bad / ref_scored, 4) if ref_scored else None,
                    "reference_agreement": agreed["agreement"], "reference_kappa": agreed["kappa"],
                    "reference_n": agreed["n"]})
    return out
