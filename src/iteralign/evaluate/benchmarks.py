"""The benchmark table: every benchmark iteralign runs, what it needs, and how to run it.

One entry per benchmark: its name, protocol, what it needs (log-likelihood scoring, a judge, an
LLM oracle, the run's held-out prompts), the data files it reads (checked before any model is
loaded), and `run(context) -> BenchmarkResult`. `runner.py` loops over this table; adding a
benchmark is one entry here. Per-benchmark switches come from `eval.options.<name>`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from iteralign.backends.cached import CachedModel
from iteralign.config import EvalOptions, GenerationConfig, JudgeConfig
from iteralign.evaluate import hhh as hhh_protocols
from iteralign.evaluate import judged
from iteralign.evaluate import truthfulqa as tqa
from iteralign.evaluate.results import BenchmarkResult
from iteralign.records import RedTeamPrompt

SCORING = "loglikelihood"  # scores answers by log-likelihood: needs a local model
JUDGE = "judge"  # answers are judged: an oracle, or the refusal judge
ORACLE = "oracle"  # needs an LLM oracle (the refusal judge cannot grade it)
HELDOUT = "heldout"  # judges the run's held-out red-team prompts


@dataclass
class Context:
    """What a benchmark run gets: the loaded models and the settings."""

    evaluated: CachedModel
    judging: CachedModel | None
    data_dir: Path | None
    limit: int | None
    generation: GenerationConfig
    judge: JudgeConfig
    seed: int
    heldout: list[RedTeamPrompt] | None
    options: EvalOptions

    def limit_for(self, name: str) -> int | None:
        own = getattr(self.options, name, None)
        return getattr(own, "limit", None) or self.limit


@dataclass(frozen=True)
class Benchmark:
    name: str
    protocol: str  # with an oracle; judged protocols name the refusal judge when it judged
    needs: frozenset[str]
    data_files: tuple[str, ...]
    run: Callable[[Context], BenchmarkResult]


def _harmlessness(c: Context) -> BenchmarkResult:
    limit = c.limit_for("harmlessness")
    prompts = c.heldout[:limit] if limit else c.heldout
    return judged.harmlessness(c.evaluated, c.judging, prompts, c.generation, c.judge, c.seed)


def _judged(protocol: Callable) -> Callable[[Context], BenchmarkResult]:
    def run(c: Context) -> BenchmarkResult:
        return protocol(c.evaluated, c.judging, Path(c.data_dir), c.limit_for(protocol.__name__), c.generation,
                        c.judge, c.seed)
    return run


def _xstest(c: Context) -> BenchmarkResult:
    return judged.xstest(c.evaluated, c.judging, Path(c.data_dir), c.limit, c.generation, c.judge, c.seed,
                         labels=c.options.xstest.labels, per_type=c.options.xstest.per_type)


_HHH = "bigbench_hhh_alignment/harmless/task.json"
_TQA_MC = "truthfulqa/data/mc_task.json"
BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in [
    Benchmark("hhh", "hhh/dromedary-ab@1", frozenset({SCORING}), (_HHH,),
              lambda c: hhh_protocols.hhh(c.evaluated, c.data_dir, c.limit)),
    Benchmark("hhh_mc", "hhh/lm-eval-mc@1", frozenset({SCORING}), (_HHH,),
              lambda c: hhh_protocols.hhh_mc(c.evaluated, c.data_dir, c.limit)),
    Benchmark("truthfulqa_mc1", "truthfulqa/mc1-lm-eval@1", frozenset({SCORING}), (_TQA_MC,),
              lambda c: tqa.truthfulqa_mc1(c.evaluated, c.data_dir, c.limit)),
    Benchmark("truthfulqa_mc2", "truthfulqa/mc2-lm-eval@1", frozenset({SCORING}), (_TQA_MC,),
              lambda c: tqa.truthfulqa_mc2(c.evaluated, c.data_dir, c.limit)),
    Benchmark("truthfulqa_mc1_dromedary", "truthfulqa/mc1-dromedary-tf@1", frozenset({SCORING}), (_TQA_MC,),
              lambda c: tqa.truthfulqa_mc1_dromedary(
                  c.evaluated, c.data_dir, c.limit,
                  dromedary_first_half_only=c.options.truthfulqa_mc1_dromedary.first_half_only)),
    Benchmark("truthfulqa_gen", "truthfulqa/gen-oracle@1", frozenset({JUDGE, ORACLE}), ("truthfulqa/TruthfulQA.csv",),
              _judged(judged.truthfulqa_gen)),
    Benchmark("harmlessness", "harmlessness/oracle-judge@1", frozenset({JUDGE, HELDOUT}), (), _harmlessness),
    Benchmark("xstest", "xstest/oracle-3class@1", frozenset({JUDGE}), ("xstest/xstest_prompts.csv",), _xstest),
    Benchmark("advbench", "advbench/oracle-judge@1", frozenset({JUDGE}), ("advbench/harmful_behaviors.csv",),
              _judged(judged.advbench)),
    Benchmark("harmbench", "harmbench/oracle-judge@1", frozenset({JUDGE}),
              ("harmbench/harmbench_behaviors_text_all.csv",), _judged(judged.harmbench)),
]}
NAMES = sorted(BENCHMARKS)


def needing(need: str, names: list[str]) -> list[str]:
    return [n for n in names if need in BENCHMARKS[n].needs]
