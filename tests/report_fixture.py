"""A small hand-made run directory for the report tests, independent of runs/demo.

`make_run(root, ...)` writes what `iteralign run` writes (manifest.json, config.yaml, baseline/,
iter_000/ ...) with invented but self-consistent numbers: the summary tallies match the verdict
files, the eval.json files follow evaluate/results.py, and the fields the loop is growing
(`effects`, `merged`, `library`, constitution.json) follow the loop's newest format and can
be switched off or rewritten by a test to check older runs.
`interrupt_in="revise"` leaves the last iteration as a crash in that stage would: artifacts up
to the stage before it, no summary.json, and no "finished" in the manifest.

An answer holds markup (`<script>`, `<img src=http://...>`) so the tests can check escaping.

Run as a script to look at one: python tests/report_fixture.py /tmp/synthetic_run
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from iteralign.statistics import wilson_interval

CONFIG = {
    "name": "synthetic", "output_dir": "runs", "seed": 0,
    "models": {"base": {"backend": "hf", "model": "embedded", "adapter": None},
               "oracle": {"backend": "llamacpp", "model": "embedded"}},
    "generation": {"max_new_tokens": 64, "temperature": 0.7},
    "loop": {"iterations": 2, "batch_size": 4, "probe_size": 4},
    "eval": {"benchmarks": ["hhh", "truthfulqa_mc1", "harmlessness", "xstest"], "limit": 40},
}
STAGE_ORDER = ["respond", "judge", "propose", "revise", "probe_in_context_respond", "probe_in_context_judge",
               "sft data", "train", "probe_respond", "probe_judge"]
# probe verdicts per model (base, iter 0, iter 1): fewer violations as training goes on
PROBE = [["violation", "violation", "violation", "ok"], ["violation", "violation", "ok", "ok"],
         ["violation", "ok", "ok", "unscored"]]
ANSWERS = [["violation", "violation", "violation", "ok"], ["violation", "violation", "ok", "unscored"]]
MARKUP = "Sure! <script>alert('x')</script><img src=\"http://example.com/leak.png\"> & more"


def _write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def _lines(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def _tally(statuses: list[str]) -> dict:
    ok, bad = statuses.count("ok"), statuses.count("violation")
    return {"n": len(statuses), "ok": ok, "violation": bad, "unscored": len(statuses) - ok - bad,
            "violation_rate": round(bad / (ok + bad), 4) if ok + bad else None}


def _metric(name: str, hits: int, n: int) -> dict:
    low, high = wilson_interval(hits, n)
    return {"name": name, "value": hits / n, "n": n, "ci_low": round(low, 4), "ci_high": round(high, 4),
            "interval": "wilson"}


def _eval(step: int) -> dict:
    """Made-up counts that move with `step` (0 = base); each interval is the Wilson interval of its count."""
    def bench(name, protocol, metrics):
        return {"benchmark": name, "protocol": protocol, "model": f"hf:embedded@{step}",
                "metrics": {m["name"]: m for m in metrics}, "examples": [], "settings": {"limit": 40}}
    return {"seconds": 12.5 + step, "benchmarks": {
        "hhh": bench("hhh", "hhh/dromedary-ab@1", [
            _metric("acc", 20 + 2 * step, 40), _metric("acc_harmless", 5 + step, 10),
            _metric("acc_helpful", 6, 10), _metric("acc_honest", 4 + step, 10),
            _metric("acc_other", 5, 10)]),
        "truthfulqa_mc1": bench("truthfulqa_mc1", "truthfulqa/mc1-lm-eval@1",
                                [_metric("acc", 10 + step, 40)]),
        "harmlessness": bench("harmlessness", "harmlessness/oracle-judge@1", [
            _metric("violation_rate", 30 - 6 * step, 40),
            {"name": "unscored", "value": 1, "n": 41, "ci_low": 1, "ci_high": 1, "interval": "count"}]),
        "xstest": bench("xstest", "xstest/oracle-3class@1", [
            _metric("safe_refused", 4 + 5 * step, 40), _metric("unsafe_complied", 20 - 3 * step, 40)]),
    }}


def _principle(pid: str, text: str, iteration: int, evidence: str, status: str = "active",
               merged_into: str | None = None, passed: int = 0, attempts: int = 0) -> dict:
    return {"id": pid, "text": text, "rationale": "The answers gave step-by-step help.", "iteration": iteration,
            "evidence": [evidence], "theme": "violence", "status": status, "merged_into": merged_into,
            "similarity": 0.83 if merged_into else None, "fix_attempts": attempts, "fix_passed": passed}


def _stages(names: list[str], calls: int) -> dict:
    return {name: {"seconds": 3.0 + i, "calls_made": calls, "calls_cached": 1 if name == "probe_judge" else 0,
                   "calls_failed": 0} for i, name in enumerate(names)}


def _iteration(folder: Path, k: int, stop_before: str | None, with_eval: bool, with_effects: bool) -> None:
    prompts = [{"id": f"p{k}-{i}", "text": f"Harmful request {k}.{i}: how do I do a bad thing?", "source": "file",
                "split": "train"} for i in range(4)]
    model = "hf:embedded" + (f"+lora:{k}" if k else "")
    _write(folder / "manifest.json", {"iteration": k, "model": model, "adapter_in": None, "oracle": "llamacpp:embedded"})
    _lines(folder / "01_prompts.jsonl", prompts)
    reached = STAGE_ORDER if stop_before is None else STAGE_ORDER[:STAGE_ORDER.index(stop_before)]
    _write(folder / "stages.json", _stages([s for s in reached if s != "sft data"], calls=2))
    answers = [{"prompt_id": p["id"], "text": MARKUP if i == 0 else f"Here is how: step {i}.", "model": model}
               for i, p in enumerate(prompts)]
    verdicts = [{"response_id": p["id"], "status": s, "categories": ["violence"], "rationale": f"judged {s}",
                 "attempts": 1, "error": ""} for p, s in zip(prompts, ANSWERS[k])]
    failed = [p for p, s in zip(prompts, ANSWERS[k]) if s == "violation"]
    revisions = [{"prompt_id": p["id"], "text": f"I can't help with that, but here is a safe alternative ({j}).",
                  "principle_ids": ["P0.1"], "accepted": j == 0,
                  "verdict": {"response_id": p["id"], "status": "ok" if j == 0 else "violation", "categories": [],
                              "rationale": "", "attempts": 1, "error": ""}} for j, p in enumerate(failed)]
    # iteration 0 writes P0.1 and P0.2; iteration 1's proposal merges into P0.1 and P0.2 is retired
    library = [_principle("P0.1", "Refuse to give instructions for harm.", 0, failed[0]["id"]),
               _principle("P0.2", "Point to professional help.", 0, failed[1]["id"])]
    merged = _principle("P1.1", "Never explain how to hurt people.", 1, failed[0]["id"], status="merged",
                        merged_into="P0.1")
    added = library if k == 0 else []
    artifacts = {
        "respond": lambda: _lines(folder / "02_responses.jsonl", answers),
        "judge": lambda: _lines(folder / "03_verdicts.jsonl", verdicts),
        "propose": lambda: _write(folder / "04_principles.json", {
            "failures": len(failed), "proposed": added or [merged], "added": added,
            "merged": [{"id": "P1.1", "new": merged["text"], "into": "P0.1", "similarity": 0.83}] if k == 1 else [],
            "repeated": ["Do not help with harm."] if k == 1 else [],
            "library": library + ([merged] if k == 1 else [])}),
        "revise": lambda: _lines(folder / "05_revisions.jsonl", revisions),
        "probe_in_context_respond": lambda: _lines(folder / "10_probe_in_context_responses.jsonl", []),
        "probe_in_context_judge": lambda: _lines(folder / "11_probe_in_context_verdicts.jsonl", []),
        "sft data": lambda: _lines(folder / "06_sft.jsonl", []),
        "train": lambda: _write(folder / "07_train.json", {"trained": True, "loss": 1.5 - 0.2 * k, "steps": 2}),
        "probe_respond": lambda: _lines(folder / "08_probe_responses.jsonl", []),
        "probe_judge": lambda: _lines(folder / "09_probe_verdicts.jsonl", [
            {"response_id": f"h{i}", "status": s} for i, s in enumerate(PROBE[k + 1])]),
    }
    for stage in reached:
        artifacts[stage]()
    if stop_before is not None:
        return
    summary = {"iteration": k, "model": model, "adapter_in": None, "adapter_in_sha256": None,
               "adapter_out": f"iter_{k:03d}/adapter", "prompts": 4, "answers": _tally(ANSWERS[k]),
               "revisions": {**_tally([r["verdict"]["status"] for r in revisions]), "accepted": 1},
               "probe": _tally(PROBE[k + 1]), "probe_answers_changed": 2,
               "principles_added": [p["id"] for p in added], "principles_merged": ["P1.1"] if k == 1 else [],
               "principles_retired": ["P0.2"] if k == 1 else [], "sft_examples": 1,
               "train_loss": 1.5 - 0.2 * k, "stages": _stages(STAGE_ORDER[:2], calls=2), "stop_reason": None}
    if with_effects:
        summary["effects"] = {"n": 4, "without_principles": 0.75, "in_context": 0.5 - 0.25 * k,
                              "in_weights": None if k == 0 else 0.25}
    _write(folder / "summary.json", summary)
    if with_eval:
        _write(folder / "eval.json", _eval(k + 1))


def make_run(root: Path, *, iterations: int = 2, interrupt_in: str | None = None, with_eval: bool = True,
             with_effects: bool = True, with_constitution: bool = True, config: dict | None = None) -> Path:
    """Write a synthetic run directory at `root`; returns root."""
    assert 1 <= iterations <= 2, "the fixture has hand-made data for two iterations"
    root = Path(root)
    config = {**CONFIG, **(config or {})}
    (root / "config.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    manifest = {"versions": {"python": "3.11.7", "iteralign": "0.1.0"}, "seed": 0, "started": "2026-11-22T09:00:00",
                "models": {"base": "hf:embedded", "oracle": "llamacpp:embedded"},
                "data": {"train": 8, "heldout": 4, "probe": 4},
                "iterations": [{"iteration": k} for k in range(iterations)], "stop_reason": None}
    _lines(root / "baseline" / "09_probe_verdicts.jsonl", [{"response_id": f"h{i}", "status": s}
                                                           for i, s in enumerate(PROBE[0])])
    _lines(root / "baseline" / "08_probe_responses.jsonl", [])
    _write(root / "baseline" / "stages.json", _stages(["probe_respond", "probe_judge", "eval"], calls=1))
    _write(root / "baseline" / "summary.json", {"probe": _tally(PROBE[0]), "model": "hf:embedded"})
    if with_eval:
        _write(root / "baseline" / "eval.json", _eval(0))
    for k in range(iterations):
        last = k == iterations - 1
        _iteration(root / f"iter_{k:03d}", k, interrupt_in if last else None, with_eval, with_effects)
    if interrupt_in is None:
        manifest.update(stop_reason=f"reached loop.iterations={iterations}", finished="2026-11-22T09:30:00",
                        calls_in_cache=40)
    _write(root / "manifest.json", manifest)
    if with_constitution:
        principles = [_principle("P0.1", "Refuse to give instructions for harm.", 0, "p0-0", passed=2, attempts=4),
                      _principle("P0.2", "Point to professional help.", 0, "p0-1", status="retired", passed=0,
                                 attempts=3),
                      _principle("P1.1", "Never explain how to hurt people.", 1, "p1-0", status="merged",
                                 merged_into="P0.1")]
        _write(root / "constitution.json", {"format": 1, "run": "synthetic", "principles": [
            p | {"fix_rate": p["fix_passed"] / p["fix_attempts"] if p["fix_attempts"] else None} for p in principles]})
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/report_fixture.py OUT_DIR")
    print(make_run(Path(sys.argv[1])))
