"""`evaluate()`: a model spec and benchmark names in, a results document out.

In: the model to evaluate (a config `ModelSpec`, e.g. hf + adapter), benchmark names, a limit
(first N examples of each; None = the full set), the data folder, the oracle for the judged
benchmarks (or the model-free refusal judge: `judge.mode: refusal`), generation/judge settings,
per-benchmark options, a seed, and optionally the held-out red-team prompts for `harmlessness`
(the loop passes its own). Out: {benchmark: BenchmarkResult}, and `results_document` turns that
into the JSON written as `eval.json` (every metric with n and 95% interval, protocol name and
version, per-example records). Every name, data file and capability is checked before a model is
loaded. The benchmarks themselves are the table in benchmarks.py.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from iteralign.backends.cached import CachedModel, CallCounts
from iteralign.backends.registry import build_backend, check_spec
from iteralign.config import EvalOptions, GenerationConfig, JudgeConfig, ModelSpec, OpenAIModel
from iteralign.errors import DataError, UserError
from iteralign.evaluate import truthfulqa as tqa
from iteralign.evaluate.benchmarks import BENCHMARKS, HELDOUT, JUDGE, NAMES, ORACLE, SCORING, Context, needing
from iteralign.evaluate.results import BenchmarkResult
from iteralign.records import RedTeamPrompt
from iteralign.store.call_cache import CallCache

log = logging.getLogger(__name__)


def check_request(model: ModelSpec, benchmarks: list[str], data_dir: Path | None, oracle: ModelSpec | None,
                  heldout: list[RedTeamPrompt] | None, judge_mode: str = "structured") -> None:
    if not benchmarks:
        raise UserError("no benchmark given; choose from " + ", ".join(NAMES))
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise UserError(f"unknown benchmark {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    scored = needing(SCORING, benchmarks)
    if isinstance(model, OpenAIModel) and scored:
        raise UserError(f"{', '.join(scored)} score answers by log-likelihood, which an HTTP model ({model.model}) "
                        "cannot do; evaluate an hf or llamacpp model, or pick judged benchmarks")
    if judge_mode == "refusal" and needing(ORACLE, benchmarks):
        raise UserError(f"{', '.join(needing(ORACLE, benchmarks))} grades truthfulness, which needs an LLM oracle; "
                        "the refusal judge only tells refusals from compliance")
    if needing(JUDGE, benchmarks) and oracle is None and judge_mode != "refusal":
        raise UserError(f"{', '.join(needing(JUDGE, benchmarks))} need an oracle to judge the answers")
    if needing(HELDOUT, benchmarks) and not heldout:
        raise UserError("harmlessness judges the loop's held-out red-team prompts; run it from a run config")
    check_spec(model, "evaluated")
    for name in benchmarks:
        for relative in BENCHMARKS[name].data_files:
            if data_dir is None:
                raise DataError(f"benchmark {name} needs the data folder: set data.dir or ITERALIGN_DATA_DIR")
            path = Path(data_dir) / relative
            if not path.is_file():
                raise DataError(f"{path}: data file not found (benchmark {name}); check the data folder")
    if oracle is not None and needing(JUDGE, benchmarks) and judge_mode != "refusal":
        check_spec(oracle, "oracle")


def evaluate(model: ModelSpec, benchmarks: list[str], *, data_dir: Path | None, limit: int | None = None,
             oracle: ModelSpec | None = None, generation: GenerationConfig | None = None,
             judge: JudgeConfig | None = None, seed: int = 0, cache: CallCache | None = None,
             heldout: list[RedTeamPrompt] | None = None, options: EvalOptions | None = None,
             counts: CallCounts | None = None) -> dict[str, BenchmarkResult]:
    """Build the model (and the oracle, when a judged benchmark needs it) and run the benchmarks.
    `counts`, when given, is increased by the calls made and served from the cache."""
    judge = judge or JudgeConfig()
    check_request(model, benchmarks, data_dir, oracle, heldout, judge.mode)
    own_cache = cache is None
    cache = cache or CallCache(":memory:")
    evaluated = CachedModel(build_backend(model, lazy=True), cache)  # loaded on the first cache miss
    needs_oracle = needing(JUDGE, benchmarks) and judge.mode != "refusal"
    judging = CachedModel(build_backend(oracle), cache) if needs_oracle else None
    try:
        return run_benchmarks(evaluated, judging, benchmarks, data_dir=data_dir, limit=limit, generation=generation,
                              judge=judge, seed=seed, heldout=heldout, options=options)
    finally:
        for live in (evaluated, judging):
            if live is not None:
                live.backend.close()
                if counts is not None:
                    counts.add(live.counts)
        if own_cache:
            cache.close()


def run_benchmarks(evaluated: CachedModel, judging: CachedModel | None, benchmarks: list[str], *,
                   data_dir: Path | None, limit: int | None = None, generation: GenerationConfig | None = None,
                   judge: JudgeConfig | None = None, seed: int = 0, heldout: list[RedTeamPrompt] | None = None,
                   options: EvalOptions | None = None) -> dict[str, BenchmarkResult]:
    """Run the benchmarks on models already loaded (the loop passes its own); checked already."""
    context = Context(evaluated=evaluated, judging=judging, data_dir=data_dir, limit=limit,
                      generation=generation or GenerationConfig(max_new_tokens=128), judge=judge or JudgeConfig(),
                      seed=seed, heldout=heldout, options=options or EvalOptions())
    results: dict[str, BenchmarkResult] = {}
    if {"truthfulqa_mc1", "truthfulqa_mc2"} <= set(benchmarks):  # their shared answers scored once
        results["truthfulqa_mc1"], results["truthfulqa_mc2"] = tqa.truthfulqa_mc(evaluated, data_dir, limit)
    for name in benchmarks:
        if name in results:
            continue
        start = time.perf_counter()
        log.info("evaluating %s on %s", name, evaluated.spec_id)
        results[name] = BENCHMARKS[name].run(context)
        log.info("%s (%.1f s)", results[name].summary_lines()[0], time.perf_counter() - start)
    return {name: results[name] for name in benchmarks}


def results_document(results: dict[str, BenchmarkResult], seconds: float | None = None) -> dict[str, Any]:
    return {"seconds": round(seconds, 2) if seconds is not None else None,
            "benchmarks": {name: r.model_dump(mode="json") for name, r in results.items()}}
