"""Read a run directory into plain data for the report and the comparison.

In: a folder written by `iteralign run` (DESIGN.md section 4). Out: a `RunData` with the manifest,
the config, the baseline and one `Step` per iteration folder (summary, stage times, principles,
evaluation, effects), the run-root `constitution.json` when there is one, and `notes`: one
sentence for each thing that did not finish or could not be read.

The reader is deliberately lenient about everything but the two files that make a folder a run
(`config.yaml`, `manifest.json`): a run interrupted mid-iteration, or written by an older or newer
version of the loop, still gives a report of what finished. Fields the loop may or may not write
(`effects`, `merged`, `constitution.json`) are `None`/empty when absent, never guessed.

    from iteralign.report.run_reader import read_run
    run = read_run(Path("runs/demo"))
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from iteralign.errors import RunDirError
from iteralign.store.layout import tally

log = logging.getLogger(__name__)

# the artifact each stage leaves when it completes, in the order the loop runs them; the stage
# after the last artifact present is the one an unfinished folder stopped in
ITERATION_STAGES = [
    ("respond", "02_responses.jsonl"), ("judge", "03_verdicts.jsonl"), ("propose", "04_principles.json"),
    ("revise", "05_revisions.jsonl"), ("sft data", "06_sft.jsonl"), ("train", "07_train.json"),
    ("probe_respond", "08_probe_responses.jsonl"), ("probe_judge", "09_probe_verdicts.jsonl"),
]
BASELINE_STAGES = ITERATION_STAGES[-2:]
# between revise and sft data, only when the library has a principle: the probe with the
# principles in the prompt (the "in context" effect)
IN_CONTEXT_STAGES = [("probe_in_context_respond", "10_probe_in_context_responses.jsonl"),
                     ("probe_in_context_judge", "11_probe_in_context_verdicts.jsonl")]
# how stages.json names the timed stages, in the order they run; tables and plots follow it
TIMED_STAGES = ["respond", "judge", "propose", "revise", "probe_in_context_respond", "probe_in_context_judge",
                "train", "probe_respond", "probe_judge", "eval"]


@dataclass
class Step:
    """One model the run produced and measured: the baseline (iteration None) or iteration k."""

    iteration: int | None
    folder: Path
    summary: dict | None  # summary.json; None when the step did not finish
    stages: dict[str, dict] = field(default_factory=dict)  # stage -> seconds, calls_made, calls_cached, calls_failed
    answers: dict | None = None  # violation tallies: n, ok, violation, unscored, violation_rate
    revisions: dict | None = None
    probe: dict | None = None
    principles: dict | None = None  # 04_principles.json: failures, added, near_duplicates, merged
    evaluation: dict | None = None  # eval.json "benchmarks": {name: BenchmarkResult as JSON}
    eval_seconds: float | None = None
    effects: dict | None = None  # held-out probe rates without principles / in context / in weights
    stopped_in: str | None = None  # the stage an unfinished step was in (after its last artifact)
    probe_verdicts: list[dict] | None = None  # 09_probe_verdicts.jsonl, for paired before/after tests
    probe_responses: list[dict] | None = None  # 08_probe_responses.jsonl

    @property
    def label(self) -> str:
        return "base" if self.iteration is None else f"iter {self.iteration}"

    @property
    def finished(self) -> bool:
        return self.summary is not None

    def metric(self, benchmark: str, name: str) -> dict | None:
        """One metric of eval.json ({name, value, n, ci_low, ci_high, interval}), or None."""
        return (((self.evaluation or {}).get(benchmark) or {}).get("metrics") or {}).get(name)


@dataclass
class RunData:
    root: Path
    name: str
    manifest: dict
    config: dict
    baseline: Step | None
    iterations: list[Step]
    constitution: list[dict] | None  # constitution.json "principles"; None when the run has no such file
    notes: list[str] = field(default_factory=list)  # what did not finish or could not be read
    judge_check: dict | None = None  # judge_check.json: the judge's agreement with human labels

    @property
    def finished(self) -> bool:
        return bool(self.manifest.get("finished"))

    @property
    def steps(self) -> list[Step]:
        """Every measured model in order: the baseline first, then the iterations."""
        return ([self.baseline] if self.baseline else []) + self.iterations

    def stage_names(self) -> list[str]:
        """Every stage any step timed, in the loop's order (names this reader does not know last)."""
        seen = {name for step in self.steps for name in step.stages}
        return [n for n in TIMED_STAGES if n in seen] + sorted(seen - set(TIMED_STAGES))

    def all_stages(self) -> dict[str, dict]:
        """Seconds and calls summed over every step, per stage name."""
        totals: dict[str, dict] = {}
        for step in self.steps:
            for name, stats in step.stages.items():
                into = totals.setdefault(name, {"seconds": 0.0, "calls_made": 0, "calls_cached": 0, "calls_failed": 0})
                for key in into:
                    into[key] += stats.get(key) or 0
        return totals

    def totals(self) -> dict[str, float]:
        out = {"seconds": 0.0, "calls_made": 0, "calls_cached": 0, "calls_failed": 0}
        for stats in self.all_stages().values():
            for key in out:
                out[key] += stats[key]
        out["seconds"] = round(out["seconds"], 2)
        return out

    def principles_added(self) -> list[dict]:
        """Every principle the iterations added, in order (from 04_principles.json)."""
        return [p for step in self.iterations for p in (step.principles or {}).get("added") or []]


class _Reader:
    """Reads files of one run, turning a damaged optional file into a note instead of a failure."""

    def __init__(self, root: Path):
        self.root = root
        self.notes: list[str] = []

    def _where(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def json(self, path: Path) -> Any:
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.notes.append(f"{self._where(path)} could not be read ({exc}); it is left out.")
            return None

    def jsonl(self, path: Path) -> list[dict] | None:
        if not path.is_file():
            return None
        records, number = [], 0
        try:
            with open(path, encoding="utf-8") as handle:
                for number, line in enumerate(handle, 1):
                    if line.strip():
                        records.append(json.loads(line))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            self.notes.append(f"{self._where(path)} could not be read (line {number}: {exc}); it is left out.")
            return None
        return records


def _require_run(root: Path) -> None:
    if not root.exists():
        raise RunDirError(f"{root}: no such folder; pass a run directory written by `iteralign run`, e.g. runs/demo")
    if not root.is_dir():
        raise RunDirError(f"{root}: is a file, not a run directory; pass the folder `iteralign run` wrote, e.g. runs/demo")
    has_config, has_manifest = (root / "config.yaml").is_file(), (root / "manifest.json").is_file()
    if not has_config and not has_manifest:
        raise RunDirError(f"{root}: not an iteralign run (no manifest.json or config.yaml); "
                          "pass a folder written by `iteralign run`, e.g. runs/demo")
    if not has_manifest:
        raise RunDirError(f"{root}: has config.yaml but no manifest.json, so the run never started a stage; "
                          f"start it with `iteralign run {root / 'config.yaml'}`")
    if not has_config:
        raise RunDirError(f"{root}: has manifest.json but no config.yaml; the run directory is damaged or "
                          "was copied partly, copy the whole folder")


def _read_head(root: Path) -> tuple[dict, dict]:
    """manifest.json and config.yaml; without them there is no report, so damage here is an error."""
    path = root / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc}); the run directory is damaged") from None
    path = root / "config.yaml"
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunDirError(f"{path}: not valid YAML ({' '.join(str(exc).split())}); the run directory is damaged") from None
    if not isinstance(manifest, dict) or not isinstance(config, dict):
        raise RunDirError(f"{root}: manifest.json or config.yaml is not a mapping; the run directory is damaged")
    return manifest, config


def _stopped_in(folder: Path, stages: list[tuple[str, str]]) -> str:
    present = [i for i, (_, artifact) in enumerate(stages) if (folder / artifact).exists()]
    if not present:
        return stages[0][0]
    if present[-1] == len(stages) - 1:
        return "summary"  # every artifact is there: it stopped while writing the summary
    following = stages[present[-1] + 1][0]
    if following == "sft data":  # the optional in-context probe runs first
        responses, verdicts = (folder / artifact for _, artifact in IN_CONTEXT_STAGES)
        if responses.exists() and not verdicts.exists():
            return "probe_in_context_judge"
        if not responses.exists():
            return "probe_in_context_respond or sft data"
    return following


def _read_step(reader: _Reader, folder: Path, iteration: int | None, eval_expected: bool, run_finished: bool) -> Step:
    summary = reader.json(folder / "summary.json")
    if summary is not None and not isinstance(summary, dict):
        summary = None
    # stages.json is the superset: the eval stage is timed after summary.json is written
    stages = reader.json(folder / "stages.json") or (summary or {}).get("stages") or {}
    step = Step(iteration=iteration, folder=folder, summary=summary, stages=stages)
    document = reader.json(folder / "eval.json")
    if isinstance(document, dict):
        step.evaluation = document.get("benchmarks") or {}
        step.eval_seconds = document.get("seconds")
    if iteration is not None:
        step.principles = reader.json(folder / "04_principles.json")
    step.probe_verdicts = reader.jsonl(folder / "09_probe_verdicts.jsonl")
    step.probe_responses = reader.jsonl(folder / "08_probe_responses.jsonl")
    if summary is not None:
        step.answers, step.revisions, step.probe = summary.get("answers"), summary.get("revisions"), summary.get("probe")
        step.effects = summary.get("effects")
    else:
        # count what the finished stages left, so an interrupted iteration still shows its rates
        verdicts = reader.jsonl(folder / "03_verdicts.jsonl") if iteration is not None else None
        revisions = reader.jsonl(folder / "05_revisions.jsonl") if iteration is not None else None
        probe = step.probe_verdicts
        step.answers = tally(verdicts) if verdicts is not None else None
        if revisions is not None:
            judged = [r["verdict"] for r in revisions if isinstance(r.get("verdict"), dict)]
            step.revisions = {**tally(judged), "accepted": sum(bool(r.get("accepted")) for r in revisions)}
        step.probe = tally(probe) if probe is not None else None
        step.stopped_in = _stopped_in(folder, BASELINE_STAGES if iteration is None else ITERATION_STAGES) or "summary"
        what = "The baseline" if iteration is None else f"Iteration {iteration}"
        reader.notes.append(f"{what} is incomplete: it stopped in stage '{step.stopped_in}' "
                            f"({folder.name}/summary.json missing); its numbers are counted from the artifacts "
                            "that finished.")
    if summary is not None and eval_expected and step.evaluation is None and not run_finished:
        step.stopped_in = "eval"
        reader.notes.append(f"{'The baseline' if iteration is None else f'Iteration {iteration}'}: the evaluation "
                            f"did not finish ({folder.name}/eval.json missing).")
    return step


def read_run(root: Path) -> RunData:
    """Read everything the report needs; raises RunDirError when `root` is not a run."""
    root = Path(root)
    _require_run(root)
    manifest, config = _read_head(root)
    reader = _Reader(root)
    finished = bool(manifest.get("finished"))
    eval_expected = bool(((config.get("eval") or {}).get("benchmarks")))
    baseline = None
    if (root / "baseline").is_dir():
        baseline = _read_step(reader, root / "baseline", None, eval_expected, finished)
    iterations = []
    for folder in sorted(root.glob("iter_[0-9][0-9][0-9]")):
        if folder.is_dir():
            iterations.append(_read_step(reader, folder, int(folder.name[5:]), eval_expected, finished))
    constitution = reader.json(root / "constitution.json")
    principles = constitution.get("principles") if isinstance(constitution, dict) else None
    notes = []
    if not finished:
        notes.append("The run has not finished (manifest.json has no finish time): it was interrupted or is still "
                     "running. This report shows what had finished.")
    if baseline is None:
        notes.append("There is no baseline folder: the run stopped before measuring the base model.")
    judge_check = reader.json(root / "judge_check.json")
    run = RunData(root=root, name=str(config.get("name") or root.name), manifest=manifest, config=config,
                  baseline=baseline, iterations=iterations,
                  constitution=principles if isinstance(principles, list) else None, notes=notes + reader.notes,
                  judge_check=judge_check if isinstance(judge_check, dict) else None)
    log.debug("read run %s: %d iterations, %d notes", root, len(iterations), len(run.notes))
    return run


def rejected_repeats(proposal: dict) -> list:
    """Proposals turned away as repeats of a principle already there: "near_duplicates" in runs
    written before principle merging, "repeated" after."""
    return list(proposal.get("near_duplicates") or []) + list(proposal.get("repeated") or [])


def fix_counts(principle: dict) -> tuple[int | None, int | None]:
    """(revisions the judge passed, revisions tried) with the principle in the prompt, from either
    spelling constitution.json has used ({"fixes": {"n", "passed"}} or fix_attempts/fix_passed)."""
    fixes = principle.get("fixes")
    if isinstance(fixes, dict):
        return fixes.get("passed"), fixes.get("n")
    if "fix_attempts" in principle:
        return principle.get("fix_passed"), principle.get("fix_attempts")
    return None, None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: config keys as the CLI's key=value overrides name them."""
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value} if prefix else {}
