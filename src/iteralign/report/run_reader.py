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
from iteralign.store import layout
from iteralign.store.layout import tally
from iteralign.store.reader import Damaged, load

log = logging.getLogger(__name__)

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
    principles: dict | None = None  # 04_principles.json: failures, added, merged, repeated, not_principles
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
        return [n for n in layout.TIMED_STAGES if n in seen] + sorted(seen - set(layout.TIMED_STAGES))

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
    """Reads files of one run, turning a damaged optional file into a note instead of a failure:
    one that does not parse, or parses into the wrong shape (a list where a mapping belongs)."""

    def __init__(self, root: Path):
        self.root = root
        self.notes: list[str] = []

    def _where(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def _note(self, path: Path, problem: str) -> None:
        self.notes.append(f"{self._where(path)} could not be read ({problem}); it is left out.")

    def json(self, path: Path, shape: type = dict) -> Any:
        if not path.is_file():
            return None
        try:
            value = load(path)
        except Damaged as exc:
            self._note(path, str(exc))
            return None
        if not isinstance(value, shape):
            self._note(path, f"a {type(value).__name__} where a {shape.__name__} belongs")
            return None
        return value

    def jsonl(self, path: Path) -> list[dict] | None:
        if not path.is_file():
            return None
        try:
            records = load(path, dict)
        except Damaged as exc:
            self._note(path, str(exc))
            return None
        if not all(isinstance(r, dict) for r in records):
            self._note(path, "a line that is not a JSON object")
            return None
        return records


def _require_run(root: Path) -> None:
    if not root.exists():
        raise RunDirError(f"{root}: no such folder; pass a run directory written by `iteralign run`, e.g. runs/demo")
    if not root.is_dir():
        raise RunDirError(f"{root}: is a file, not a run directory; pass the folder `iteralign run` wrote, e.g. runs/demo")
    has_config, has_manifest = (root / layout.CONFIG).is_file(), (root / layout.MANIFEST).is_file()
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
    path = root / layout.MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunDirError(f"{path}: not valid JSON ({exc}); the run directory is damaged") from None
    path = root / layout.CONFIG
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunDirError(f"{path}: not valid YAML ({' '.join(str(exc).split())}); the run directory is damaged") from None
    if not isinstance(manifest, dict) or not isinstance(config, dict):
        raise RunDirError(f"{root}: manifest.json or config.yaml is not a mapping; the run directory is damaged")
    return manifest, config


def _mappings(value: Any) -> dict:
    """{key: mapping} keeping only the entries that are mappings (a damaged file's odd values go)."""
    return {k: v for k, v in value.items() if isinstance(v, dict)} if isinstance(value, dict) else {}


def _records(value: Any) -> list[dict]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _proposal(document: dict | None) -> dict | None:
    """04_principles.json with every list holding what the report expects to find in it."""
    if document is None:
        return None
    clean = {key: _records(document.get(key)) for key in ("proposed", "added", "merged", "library", "not_principles")}
    clean["repeated"] = [t for t in document.get("repeated") or [] if isinstance(t, str)]
    clean["failures"] = document.get("failures") if isinstance(document.get("failures"), int) else None
    return clean


def _evaluation(document: dict) -> dict:
    """eval.json's benchmarks, each with a metrics mapping and an examples list."""
    out = {}
    for name, result in _mappings(document.get("benchmarks")).items():
        out[name] = {**result, "metrics": _mappings(result.get("metrics")), "examples": _records(result.get("examples"))}
    return out


def _read_step(reader: _Reader, folder: Path, iteration: int | None, eval_expected: bool, run_finished: bool) -> Step:
    summary = reader.json(folder / layout.SUMMARY)
    if summary is not None:
        summary = {**summary, **{k: summary[k] if isinstance(summary.get(k), dict) else None
                                 for k in ("answers", "revisions", "probe", "effects")}}
    # stages.json is the superset: the eval stage is timed after summary.json is written
    stages = _mappings(reader.json(folder / layout.STAGES)) or _mappings((summary or {}).get("stages"))
    step = Step(iteration=iteration, folder=folder, summary=summary, stages=stages)
    document = reader.json(folder / layout.EVAL)
    if document is not None:
        step.evaluation = _evaluation(document)
        step.eval_seconds = document.get("seconds") if isinstance(document.get("seconds"), (int, float)) else None
    if iteration is not None:
        step.principles = _proposal(reader.json(folder / layout.PRINCIPLES))
    step.probe_verdicts = reader.jsonl(folder / layout.PROBE_VERDICTS)
    step.probe_responses = reader.jsonl(folder / layout.PROBE_RESPONSES)
    if summary is not None:
        step.answers, step.revisions, step.probe = summary.get("answers"), summary.get("revisions"), summary.get("probe")
        step.effects = summary.get("effects")
    else:
        # count what the finished stages left, so an interrupted iteration still shows its rates
        verdicts = reader.jsonl(folder / layout.VERDICTS) if iteration is not None else None
        revisions = reader.jsonl(folder / layout.REVISIONS) if iteration is not None else None
        probe = step.probe_verdicts
        step.answers = tally(verdicts) if verdicts is not None else None
        if revisions is not None:
            judged = [r["verdict"] for r in revisions if isinstance(r.get("verdict"), dict)]
            step.revisions = {**tally(judged), "accepted": sum(bool(r.get("accepted")) for r in revisions)}
        step.probe = tally(probe) if probe is not None else None
        step.stopped_in = layout.stopped_in(folder, layout.BASELINE_STAGES if iteration is None
                                            else layout.ITERATION_STAGES)
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
    eval_config = config.get("eval") if isinstance(config.get("eval"), dict) else {}
    eval_expected = bool(eval_config.get("benchmarks"))
    baseline = None
    if (root / layout.BASELINE).is_dir():
        baseline = _read_step(reader, root / layout.BASELINE, None, eval_expected, finished)
    iterations = []
    for folder in sorted(root.glob("iter_*")):
        k = layout.iteration_number(folder)
        if k is not None and folder.is_dir():
            iterations.append(_read_step(reader, folder, k, eval_expected, finished))
    constitution = reader.json(root / layout.CONSTITUTION_JSON)
    principles = _records(constitution.get("principles")) if isinstance(constitution, dict) else None
    notes = []
    if not finished:
        notes.append("The run has not finished (manifest.json has no finish time): it was interrupted or is still "
                     "running. This report shows what had finished.")
    if baseline is None:
        notes.append("There is no baseline folder: the run stopped before measuring the base model.")
    judge_check = reader.json(root / layout.JUDGE_CHECK)
    run = RunData(root=root, name=str(config.get("name") or root.name), manifest=manifest, config=config,
                  baseline=baseline, iterations=iterations,
                  constitution=principles if isinstance(principles, list) else None, notes=notes + reader.notes,
                  judge_check=judge_check if isinstance(judge_check, dict) else None)
    log.debug("read run %s: %d iterations, %d notes", root, len(iterations), len(run.notes))
    return run


def rejected_repeats(proposal: dict) -> list:
    """Proposals turned away: exact repeats of a principle already there, and texts that are
    not principles at all (too short, or a copy of what the proposer was shown)."""
    repeated = [p for p in proposal.get("repeated") or [] if isinstance(p, str)]
    invalid = [f"{p.get('text')} ({p.get('reason')})" for p in proposal.get("not_principles") or [] if isinstance(p, dict)]
    return repeated + invalid


def fix_counts(principle: dict) -> tuple[int | None, int | None]:
    """(revision attempts the judge passed, attempts) with the principle in the prompt."""
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
