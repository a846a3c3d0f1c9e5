"""The IterAlign loop: the only module that knows the order of the stages.

In: a validated `Config`. Out: a run directory (DESIGN.md section 4, store/layout.py) with one
folder per iteration, `constitution.md`, `manifest.json` and `calls.sqlite`. Each iteration:

    prompts -> respond -> judge -> propose (+ merge into the library) -> revise (+ judge)
      -> SFT data -> train -> probe (+ the same model before training, principles in context)

Every stage writes its artifact atomically when it completes and is skipped when that artifact
exists and checks out, so re-running the same command resumes; calls made before a crash come
from the cache (store/stage_runner.py). Everything that can be checked is checked before the run
directory is created (preflight.py), so a bad input leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from iteralign.backends.cached import CachedModel
from iteralign.backends.pool import ModelPool
from iteralign.backends.registry import adapter_sha256, gguf_lora_for, spec_id
from iteralign.config import Config, HFModel
from iteralign.constitution.embedding import LazyEmbedder
from iteralign.constitution.export import write_constitution
from iteralign.constitution.library import active, load_start, merge_new, record_fixes, retire
from iteralign.constitution.retrieval import relevant_principles
from iteralign.data.redteam import RedTeamSet, resolve_data_dir
from iteralign.preflight import validate
from iteralign.run_summary import early_stop_reason, effects_summary, log_summary, versions
from iteralign.records import IterationSummary, Principle, RedTeamPrompt, Response, Revision, Verdict
from iteralign.stages.judge import judge_responses
from iteralign.stages.propose import Failure, propose_principles
from iteralign.stages.respond import generation_params, respond
from iteralign.stages.revise import answer_with_principles, revise
from iteralign.stages.sft_data import preference_pairs, sft_examples
from iteralign.store import layout
from iteralign.store.call_cache import CallCache
from iteralign.store.layout import tally
from iteralign.store.run_dir import RunDir, read_json, write_json, write_records
from iteralign.store.stage_runner import StageRunner, same_ids

log = logging.getLogger(__name__)


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stage_seed(seed: int, iteration: int, stage: str) -> int:
    return int(hashlib.sha256(f"{seed}:{iteration}:{stage}".encode()).hexdigest()[:8], 16)


@dataclass
class RunResult:
    run_dir: Path
    iterations: list[IterationSummary]
    stop_reason: str




@dataclass
class Run:
    """One run's fixed inputs and live models, shared by its stages."""

    config: Config
    redteam: RedTeamSet
    run_dir: RunDir
    models: ModelPool
    accept_unscored: bool

    def __post_init__(self):
        self.probe = self.redteam.heldout[: self.config.loop.probe_size]
        self.prompts = {p.id: p for p in self.redteam.train + self.redteam.heldout}
        self.embedder = LazyEmbedder(self.config.constitution.embedding_model)

    def runner(self, folder: Path) -> StageRunner:
        return StageRunner(folder, self.models.counts, self.accept_unscored, self.run_dir.root)

    def model(self, adapter: Path | None) -> HFModel:
        return self.config.models.base.model_copy(update={"adapter": str(adapter) if adapter else None})

    def judge_model(self) -> CachedModel | None:
        """The oracle as the judge; None for the model-free refusal judge (the oracle is not loaded)."""
        return None if self.config.judge.mode == "refusal" else self.models.get(self.config.models.oracle)

    def judge(self, responses: list[Response], seed: int, stage: str) -> list[Verdict]:
        return judge_responses(self.judge_model(), self.prompts, responses, self.config.judge, seed, stage=stage)

    def choose(self, prompts: list[RedTeamPrompt], principles: list[Principle]) -> list[list[Principle]]:
        """Each prompt's top-k principles (the lazy embedder loads its model only when there is a choice)."""
        return relevant_principles([p.id for p in prompts], [p.text for p in prompts], principles, self.embedder,
                                   self.config.constitution.top_k)

    def probe_model(self, spec: HFModel, it: StageRunner) -> list[Verdict]:
        # the same seeds every time: the probe differs between iterations only by the model
        ids = [p.id for p in self.probe]
        answers = it.stage("probe_respond", layout.PROBE_RESPONSES,
                           lambda: respond(self.models.get(spec), self.probe, self.config.generation,
                                           stage_seed(self.config.seed, -1, "probe"), stage="probe respond"),
                           Response, same_ids(ids))
        return it.stage("probe_judge", layout.PROBE_VERDICTS,
                        lambda: self.judge(answers, stage_seed(self.config.seed, -1, "probe judge"), "probe judge"),
                        Verdict, same_ids(ids))

    def evaluate_model(self, spec: HFModel, it: StageRunner) -> None:
        """The configured benchmarks on this model, into eval.json (skipped when none)."""
        config = self.config
        if not config.eval.benchmarks:
            return
        from iteralign.evaluate.runner import results_document, run_benchmarks

        def compute():
            start = time.perf_counter()
            generation = config.generation.model_copy(
                update={"max_new_tokens": config.eval.max_new_tokens or config.generation.max_new_tokens})
            results = run_benchmarks(self.models.get(spec), self.judge_model(), config.eval.benchmarks,
                                     data_dir=resolve_data_dir(config.data), limit=config.eval.limit,
                                     generation=generation, judge=config.judge,
                                     seed=stage_seed(config.seed, -1, "eval"), heldout=self.redteam.heldout,
                                     options=config.eval.options)
            return results_document(results, time.perf_counter() - start)

        def check(document) -> str | None:
            benchmarks = document.get("benchmarks") if isinstance(document, dict) else None
            missing = [b for b in config.eval.benchmarks if not isinstance(benchmarks, dict) or b not in benchmarks]
            return f"no results for {', '.join(missing)}" if missing else None

        it.stage("eval", layout.EVAL, compute, check=check)


def run(config: Config, force: bool = False, accept_unscored: bool = False) -> RunResult:
    """Run or resume the loop. `force`: go on when judge-check is below judge.check.min_agreement;
    `accept_unscored`: keep answers the judge never replied to as unscored instead of stopping."""
    redteam = validate(config)
    run_dir = RunDir(config.run_dir)
    resuming = run_dir.open(config)
    cache = CallCache(run_dir.calls_path)
    r = Run(config, redteam, run_dir, ModelPool(cache, config.models.oracle), accept_unscored)
    log.info("%s run %s: %d train prompts, %d held-out (probe %d)", "resuming" if resuming else "starting",
             run_dir.root, len(redteam.train), len(redteam.heldout), len(r.probe))
    base: HFModel = config.models.base
    manifest = {"versions": versions(), "seed": config.seed, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "models": {"base": spec_id(base), "oracle": spec_id(config.models.oracle)},
                "data": {"train": len(redteam.train), "heldout": len(redteam.heldout), "probe": len(r.probe)},
                "iterations": [], "stop_reason": None}
    if run_dir.manifest_path.is_file():
        try:
            manifest["started"] = read_json(run_dir.manifest_path).get("started", manifest["started"])
        except (ValueError, AttributeError, OSError):
            log.warning("%s is damaged; it is written again", run_dir.manifest_path)
    write_json(run_dir.manifest_path, manifest)
    try:
        if config.judge.check:
            from iteralign.judging.run_check import check_judge

            check_judge(config, run_dir.root, r.models, force, stage_seed(config.seed, -1, "check"))
        # the base model on the probe set, before any training: the reference point
        baseline = r.runner(run_dir.root / layout.BASELINE)
        baseline_verdicts = r.probe_model(base, baseline)
        r.evaluate_model(base, baseline)
        write_json(baseline.dir / layout.SUMMARY, {"probe": tally(baseline_verdicts), "model": spec_id(base)})

        library = load_start(config.constitution.start_from) if config.constitution.start_from else []
        adapter: Path | None = None
        summaries: list[IterationSummary] = []
        stop_reason = f"reached loop.iterations={config.loop.iterations}"
        for k in range(config.loop.iterations):
            batch = redteam.train[k * config.loop.batch_size:(k + 1) * config.loop.batch_size]
            if not batch:
                stop_reason = f"red-team data exhausted after {k} iterations"
                break
            summary, library, adapter = run_iteration(r, k, batch, library, adapter)
            r.evaluate_model(r.model(adapter), r.runner(run_dir.iteration(k)))
            summaries.append(summary)
            manifest["iterations"] = [{"iteration": s.iteration, "model": s.model, "adapter_in": s.adapter_in,
                                       "adapter_out": s.adapter_out} for s in summaries]
            write_json(run_dir.manifest_path, manifest)
            reason = early_stop_reason(summaries, config.loop)
            if reason:
                stop_reason = reason
                break
    finally:
        r.models.close()
        calls_total = cache.count()
        cache.close()
        run_dir.close()
    manifest.update(stop_reason=stop_reason, finished=time.strftime("%Y-%m-%dT%H:%M:%S"), calls_in_cache=calls_total)
    write_json(run_dir.manifest_path, manifest)
    log.info("stopped: %s", stop_reason)
    return RunResult(run_dir.root, summaries, stop_reason)


def run_iteration(r: Run, k: int, batch: list[RedTeamPrompt], library: list[Principle],
                  adapter: Path | None) -> tuple[IterationSummary, list[Principle], Path | None]:
    config, seed, root = r.config, r.config.seed, r.run_dir.root
    it = r.runner(r.run_dir.iteration(k))
    spec_in = r.model(adapter)
    log.info("iteration %d: %d prompts, model %s", k, len(batch), spec_id(spec_in))

    def rel(path: Path | None) -> str | None:  # paths inside the run are stored relative: a run can move
        return path.relative_to(root).as_posix() if path else None

    manifest = {"iteration": k, "model": spec_id(spec_in), "adapter_in": rel(adapter),
                "adapter_in_sha256": adapter_sha256(adapter) if adapter else None,
                "oracle": spec_id(config.models.oracle)}
    if spec_in.generate_with is not None and spec_in.generate_with.backend == "llamacpp" and adapter:
        # llama.cpp answers with the adapter converted to a GGUF LoRA: both files' hashes
        lora = gguf_lora_for(spec_in)
        manifest.update(adapter_in_gguf=rel(lora), adapter_in_gguf_sha256=file_sha256(lora))
    write_json(it.dir / layout.ITERATION_MANIFEST, manifest)
    write_records(it.dir / layout.PROMPTS, batch)
    ids = [p.id for p in batch]
    answers = it.stage("respond", layout.RESPONSES,
                       lambda: respond(r.models.get(spec_in), batch, config.generation, stage_seed(seed, k, "respond")),
                       Response, same_ids(ids))
    verdicts = it.stage("judge", layout.VERDICTS, lambda: r.judge(answers, stage_seed(seed, k, "judge"), "judge"),
                        Verdict, same_ids(ids))
    failures = [Failure(r.prompts[a.prompt_id], a, v) for a, v in zip(answers, verdicts) if v.status == "violation"]

    def do_propose():
        candidates, repeated, invalid = propose_principles(r.models.get(config.models.oracle), failures, library,
                                                           config.propose, k, stage_seed(seed, k, "propose"))
        merged = merge_new(library, candidates, r.embedder, config.constitution.merge_threshold) if candidates else None
        return {"failures": len(failures), "proposed": [p.model_dump() for p in candidates],
                "added": [p.model_dump() for p in merged.added] if merged else [],
                "merged": merged.merged if merged else [], "repeated": repeated, "not_principles": invalid,
                "library": [p.model_dump() for p in (merged.library if merged else library)]}

    def proposal_check(document) -> str | None:
        if not isinstance(document, dict) or not {"failures", "added", "library"} <= set(document):
            return "not a proposal document"
        return None if document["failures"] == len(failures) else f"{document['failures']} failures, not {len(failures)}"

    proposal = it.stage("propose", layout.PRINCIPLES, do_propose, check=proposal_check)
    added = [Principle.model_validate(p) for p in proposal["added"]]
    library = [Principle.model_validate(p) for p in proposal["library"]]

    def do_revise():
        failed = [f.prompt for f in failures]
        judge_seed = stage_seed(seed, k, "revise judge")
        return revise(r.models.get(spec_in), failed, r.choose(failed, active(library)), config.generation,
                      config.revise, stage_seed(seed, k, "revise"),
                      lambda texts, round_: r.judge(texts, judge_seed + round_, "revise judge"))

    failed_ids = {f.prompt.id for f in failures}
    revisions = it.stage("revise", layout.REVISIONS, do_revise, Revision,
                         lambda rs: None if {x.prompt_id for x in rs} <= failed_ids else "revisions of prompts that did not fail")
    library, retired = retire(record_fixes(library, revisions), config.constitution.retire_below_fix_rate,
                              config.constitution.retire_min_attempts)
    write_constitution(root, library, config.name, config.constitution.embedding_model, r.prompts)
    # the in-context effect needs the model before training: measured now, while it is loaded
    in_context = probe_in_context(r, it, spec_in, active(library))
    examples = sft_examples(revisions, r.prompts)
    write_records(it.dir / layout.SFT, examples)
    pairs = preference_pairs(revisions, r.prompts, answers) if config.train.objective != "sft" else []
    if config.train.objective != "sft":
        write_records(it.dir / layout.DPO_PAIRS, pairs)
    adapter_dir = it.dir / layout.ADAPTER

    def do_train():
        from iteralign.backends.hf import resolve_hf_model
        from iteralign.train.launch import train

        info = train(resolve_hf_model(config.models.base.model), adapter, examples, pairs, config.train,
                               stage_seed(seed, k, "train"), adapter_dir, config.models.base.trust_remote_code)
        return {**info, "adapter_sha256": adapter_sha256(adapter_dir)} if info["trained"] else info

    def train_check(info) -> str | None:
        if not isinstance(info, dict) or "trained" not in info:
            return "not a training record"
        if info["trained"] and adapter_sha256(adapter_dir) != info.get("adapter_sha256"):
            return "the adapter folder is missing or differs from the one trained"
        return None

    train_info = it.stage("train", layout.TRAIN, do_train, check=train_check)
    adapter_out = adapter_dir if train_info["trained"] else adapter
    probe_verdicts = r.probe_model(r.model(adapter_out), it)
    before = r.run_dir.iteration(k - 1) if k else root / layout.BASELINE  # the model this iteration started from
    from iteralign.store.reader import load

    before_verdicts = load(before / layout.PROBE_VERDICTS, Verdict)
    before_texts = {x.prompt_id: x.text for x in load(before / layout.PROBE_RESPONSES, Response)}
    after = load(it.dir / layout.PROBE_RESPONSES, Response)
    judged_revisions = [x.verdict for x in revisions if x.verdict is not None]
    stages = it.stats
    summary = IterationSummary(
        iteration=k, model=spec_id(spec_in), adapter_in=rel(adapter),
        adapter_in_sha256=adapter_sha256(adapter) if adapter else None,
        adapter_out=rel(adapter_out), prompts=len(batch),
        answers=tally(verdicts), revisions={**tally(judged_revisions), "accepted": len(examples)},
        probe=tally(probe_verdicts), probe_answers_changed=sum(before_texts.get(x.prompt_id) != x.text for x in after),
        principles_added=[p.id for p in added], sft_examples=len(examples), train_loss=train_info["loss"],
        stages={name: s for name, s in stages.items()}, principles_merged=[m["id"] for m in proposal["merged"]],
        principles_retired=retired,
        effects=effects_summary(before_verdicts, in_context, probe_verdicts, len(active(library))),
        calls_retried=sum(s.get("calls_retried", 0) for s in stages.values()),
        training={key: value for key, value in train_info.items() if key != "adapter_sha256"},
    )
    write_json(it.dir / layout.SUMMARY, summary.model_dump(mode="json"))
    log_summary(summary)
    return summary, library, adapter_out


def probe_in_context(r: Run, it: StageRunner, spec_in: HFModel, principles: list[Principle]) -> list[Verdict] | None:
    """The probe answered by the model this iteration started from, each prompt with its top-k
    principles in the prompt, and judged; None when there is no principle yet or
    loop.probe_in_context is off. Same prompts and seeds as the probe: the principles are the
    only difference."""
    if not principles or not r.config.loop.probe_in_context:
        return None
    chosen = r.choose(r.probe, principles)
    ids = [p.id for p in r.probe]
    params = generation_params(r.config.generation, stage_seed(r.config.seed, -1, "probe"))
    answers = it.stage("probe_in_context_respond", layout.IN_CONTEXT_RESPONSES,
                       lambda: answer_with_principles(r.models.get(spec_in), r.probe, chosen, params,
                                                      r.config.revise.placement, stage="probe in context"),
                       Response, same_ids(ids))
    return it.stage("probe_in_context_judge", layout.IN_CONTEXT_VERDICTS,
                    lambda: r.judge(answers, stage_seed(r.config.seed, -1, "probe judge"), "probe in context judge"),
                    Verdict, same_ids(ids))
