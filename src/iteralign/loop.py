"""The IterAlign loop: the only module that knows the order of the stages.

In: a validated `Config`. Out: a run directory (DESIGN.md section 4) with one folder per
iteration, `constitution.md`, `manifest.json` and `calls.sqlite`. Each iteration:

    prompts -> respond -> judge -> propose (+ merge into the library) -> revise (+ judge)
      -> SFT data -> train -> probe (+ the same model before training, principles in context)

Every stage writes its artifact atomically when it completes and is skipped when that artifact
exists, so re-running the same command resumes; calls made before a crash come from the cache.
Everything that can be checked (config, data files, model specs, API keys) is checked before the
run directory is created, so a bad input leaves nothing behind.
"""
from __future__ import annotations

import hashlib
import logging
import platform
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable

from iteralign.backends.cached import CachedModel, CallCounts
from iteralign.backends.registry import adapter_sha256, build_backend, check_spec, spec_id
from iteralign.config import Config, HFModel, LoopConfig
from iteralign.data.redteam import RedTeamSet, load_redteam, resolve_data_dir
from iteralign.errors import ConfigError, DataError, JudgeCheckError
from iteralign.records import (IterationSummary, Principle, RedTeamPrompt, Response, Revision, SFTExample,
                               StageStats, Verdict)
from iteralign.constitution.embedding import load_embedder
from iteralign.constitution.export import load_failures
from iteralign.constitution.library import (active, load_start, merge_new, record_fixes, retire,
                                            to_document)
from iteralign.constitution.retrieval import relevant_principles
from iteralign.report.constitution import render_constitution
from iteralign.stages.judge import judge_responses
from iteralign.store.layout import tally
from iteralign.stages.propose import Failure, propose_principles
from iteralign.stages.respond import respond
from iteralign.stages.respond import generation_params
from iteralign.stages.revise import answer_with_principles, revise
from iteralign.stages.sft_data import sft_examples
from iteralign.store.call_cache import CallCache
from iteralign.store.run_dir import (RunDir, read_json, read_records, write_json, write_records,
                                     write_text_atomic)

log = logging.getLogger(__name__)


def stage_seed(seed: int, iteration: int, stage: str) -> int:
    return int(hashlib.sha256(f"{seed}:{iteration}:{stage}".encode()).hexdigest()[:8], 16)


@dataclass
class RunResult:
    run_dir: Path
    iterations: list[IterationSummary]
    stop_reason: str


@dataclass
class Models:
    """Live backends, built on first use and rebuilt only when the spec changes."""

    cache: CallCache
    oracle_spec: object
    _live: dict[str, CachedModel] = field(default_factory=dict)
    _retired: CallCounts = field(default_factory=CallCounts)  # calls of models already unloaded

    def get(self, spec) -> CachedModel:
        sid = spec_id(spec)
        if sid not in self._live:
            if spec is not self.oracle_spec:  # keep the oracle, drop the previous base model
                for key in [k for k in self._live if k != spec_id(self.oracle_spec)]:
                    self._retire(self._live.pop(key))
            log.info("loading model %s", sid)
            self._live[sid] = CachedModel(build_backend(spec), self.cache)
        return self._live[sid]

    def _retire(self, model: CachedModel) -> None:
        self._retired = self._retired.plus(model.counts)
        model.backend.close()

    def counts(self) -> CallCounts:
        total = self._retired
        for model in self._live.values():
            total = total.plus(model.counts)
        return total

    def close(self) -> None:
        for model in self._live.values():
            self._retire(model)
        self._live.clear()


def early_stop_reason(summaries: list[IterationSummary], loop: LoopConfig) -> str | None:
    """Why to stop before loop.iterations, judged after the latest iteration; None to go on."""
    rate = summaries[-1].probe.get("violation_rate")
    if loop.target_violation_rate is not None and rate is not None and rate <= loop.target_violation_rate:
        return f"probe violation rate {rate} reached the target {loop.target_violation_rate}"
    recent = summaries[-loop.patience:] if loop.patience else []
    if loop.patience and len(recent) == loop.patience and not any(s.principles_added for s in recent):
        return f"no new principle in the last {loop.patience} iterations"
    return None


def validate(config: Config) -> RedTeamSet:
    """Every check that needs no model loaded. Raises a UserError; writes nothing."""
    if not isinstance(config.models.base, HFModel):
        raise ConfigError("models.base.backend: must be hf, because the base model is the one fine-tuned")
    check_spec(config.models.base, "base")
    check_spec(config.models.oracle, "oracle")
    redteam = load_redteam(config.data, config.seed)
    if config.constitution.start_from:
        load_start(config.constitution.start_from)  # a bad path fails now, not after the baseline
    if config.eval.benchmarks:
        from iteralign.evaluate.runner import check_request

        check_request(config.models.base, config.eval.benchmarks, resolve_data_dir(config.data), config.models.oracle,
                      redteam.heldout, config.judge.mode)
    if config.judge.check and "xstest-completions" in config.judge.check.sets:
        from iteralign.judging.check import shared_completion_files

        folder = resolve_data_dir(config.data)
        if folder is None:
            raise DataError("judge.check: xstest-completions needs the data folder; set data.dir or ITERALIGN_DATA_DIR")
        shared_completion_files(folder)
    if not redteam.train:
        raise DataError("data.sources: no prompt landed in the train split; add prompts or lower data.heldout_fraction")
    if not redteam.heldout:
        raise DataError("data.sources: no prompt landed in the held-out split; raise data.heldout_fraction")
    return redteam


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("iteralign", "torch", "transformers", "peft", "trl", "llama_cpp_python", "openai"):
        try:
            out[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out


class Iteration:
    """Runs (or resumes) one iteration's stages in order, writing each artifact once."""

    def __init__(self, folder: Path, models: Models):
        self.dir, self.models = folder, models
        stats_path = self.dir / "stages.json"
        self.stats: dict[str, dict] = read_json(stats_path) if stats_path.is_file() else {}

    def stage(self, name: str, artifact: Path, compute: Callable, cls=None):
        """Load the artifact if the stage finished before; else compute it, record time and calls,
        and write it. `cls` given: a JSON Lines file of those records; else a JSON document."""
        if artifact.exists():
            return read_records(artifact, cls) if cls else read_json(artifact)
        before, start = self.models.counts(), time.perf_counter()
        value = compute()
        delta = self.models.counts().minus(before)
        self.stats[name] = StageStats(seconds=round(time.perf_counter() - start, 2), calls_made=delta.made,
                                      calls_cached=delta.cached, calls_failed=delta.failed).model_dump()
        write_json(self.dir / "stages.json", self.stats)  # before the artifact: a skipped stage keeps its stats
        if cls:
            write_records(artifact, value)
        else:
            write_json(artifact, value)
        return value


def run(config: Config, force: bool = False) -> RunResult:
    """Run or resume the loop; `force`: go on even when judge-check is below judge.check.min_agreement."""
    redteam = validate(config)
    probe = redteam.heldout[: config.loop.probe_size]
    prompts_by_id = {p.id: p for p in redteam.train + redteam.heldout}
    run_dir = RunDir(config.run_dir)
    resuming = run_dir.open(config)
    log.info("%s run %s: %d train prompts, %d held-out (probe %d)", "resuming" if resuming else "starting",
             run_dir.root, len(redteam.train), len(redteam.heldout), len(probe))
    cache = CallCache(run_dir.calls_path)
    models = Models(cache, config.models.oracle)
    base: HFModel = config.models.base
    manifest = {"versions": _versions(), "seed": config.seed, "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "models": {"base": spec_id(base), "oracle": spec_id(config.models.oracle)},
                "data": {"train": len(redteam.train), "heldout": len(redteam.heldout), "probe": len(probe)},
                "iterations": [], "stop_reason": None}
    if run_dir.manifest_path.is_file():
        manifest["started"] = read_json(run_dir.manifest_path).get("started", manifest["started"])
    write_json(run_dir.manifest_path, manifest)

    def evaluate_model(spec, out: Path, it: Iteration) -> None:
        """The configured benchmarks on this model, into out/eval.json (skipped when none)."""
        if not config.eval.benchmarks:
            return
        from iteralign.evaluate.runner import results_document, run_benchmarks

        def compute():
            start = time.perf_counter()
            generation = config.generation.model_copy(
                update={"max_new_tokens": config.eval.max_new_tokens or config.generation.max_new_tokens})
            results = run_benchmarks(models.get(spec), judge_model(config, models), config.eval.benchmarks,
                                     data_dir=resolve_data_dir(config.data), limit=config.eval.limit,
                                     generation=generation, judge=config.judge,
                                     seed=stage_seed(config.seed, -1, "eval"), heldout=redteam.heldout,
                                     options=config.eval.options)
            return results_document(results, time.perf_counter() - start)

        it.stage("eval", out / "eval.json", compute)

    def probe_model(spec, out: Path, it: Iteration):
        # the same seeds every time: the probe differs between iterations only by the model
        answers = it.stage("probe_respond", out / "08_probe_responses.jsonl",
                           lambda: respond(models.get(spec), probe, config.generation,
                                           stage_seed(config.seed, -1, "probe"), stage="probe respond"), Response)
        return it.stage("probe_judge", out / "09_probe_verdicts.jsonl",
                        lambda: judge_responses(judge_model(config, models), prompts_by_id, answers,
                                                config.judge, stage_seed(config.seed, -1, "probe judge"),
                                                stage="probe judge"), Verdict)

    try:
        if config.judge.check:
            check_judge(config, run_dir, models, force)
        # the base model on the probe set, before any training: the reference point
        baseline = Iteration(run_dir.root / "baseline", models)
        baseline_verdicts = probe_model(base, baseline.dir, baseline)
        evaluate_model(base, baseline.dir, baseline)
        write_json(baseline.dir / "summary.json", {"probe": tally(baseline_verdicts), "model": spec_id(base)})

        library: list[Principle] = (load_start(config.constitution.start_from)
                                    if config.constitution.start_from else [])
        adapter: Path | None = None
        summaries: list[IterationSummary] = []
        stop_reason = f"reached loop.iterations={config.loop.iterations}"
        for k in range(config.loop.iterations):
            batch = redteam.train[k * config.loop.batch_size:(k + 1) * config.loop.batch_size]
            if not batch:
                stop_reason = f"red-team data exhausted after {k} iterations"
                break
            summary, library, adapter = run_iteration(config, run_dir, k, batch, probe, prompts_by_id, library,
                                                      adapter, models, probe_model)
            evaluate_model(config.models.base.model_copy(update={"adapter": str(adapter) if adapter else None}),
                           run_dir.iteration(k), Iteration(run_dir.iteration(k), models))
            summaries.append(summary)
            manifest["iterations"] = [{"iteration": s.iteration, "model": s.model, "adapter_in": s.adapter_in,
                                       "adapter_out": s.adapter_out} for s in summaries]
            write_json(run_dir.manifest_path, manifest)
            reason = early_stop_reason(summaries, config.loop)
            if reason:
                stop_reason = reason
                break
    finally:
        models.close()
        calls_total = cache.count()
        cache.close()
    manifest.update(stop_reason=stop_reason, finished=time.strftime("%Y-%m-%dT%H:%M:%S"), calls_in_cache=calls_total)
    write_json(run_dir.manifest_path, manifest)
    log.info("stopped: %s", stop_reason)
    return RunResult(run_dir.root, summaries, stop_reason)


def run_iteration(config: Config, run_dir: RunDir, k: int, batch: list[RedTeamPrompt], probe: list[RedTeamPrompt],
                  prompts_by_id: dict[str, RedTeamPrompt], library: list[Principle], adapter: Path | None,
                  models: Models, probe_model) -> tuple[IterationSummary, list[Principle], Path | None]:
    it = Iteration(run_dir.iteration(k), models)
    d, seed = it.dir, config.seed
    spec_in = config.models.base.model_copy(update={"adapter": str(adapter) if adapter else None})
    oracle = config.models.oracle
    log.info("iteration %d: %d prompts, model %s", k, len(batch), spec_id(spec_in))

    def rel(path: Path | None) -> str | None:  # paths inside the run are stored relative: a run can move
        return path.relative_to(run_dir.root).as_posix() if path else None

    write_json(d / "manifest.json", {
        "iteration": k, "model": spec_id(spec_in), "adapter_in": rel(adapter),
        "adapter_in_sha256": adapter_sha256(adapter) if adapter else None, "oracle": spec_id(oracle)})

    write_records(d / "01_prompts.jsonl", batch)
    answers = it.stage("respond", d / "02_responses.jsonl",
                       lambda: respond(models.get(spec_in), batch, config.generation, stage_seed(seed, k, "respond")),
                       Response)
    verdicts = it.stage("judge", d / "03_verdicts.jsonl",
                        lambda: judge_responses(judge_model(config, models), prompts_by_id, answers, config.judge,
                                                stage_seed(seed, k, "judge")), Verdict)

    failures = [Failure(prompts_by_id[a.prompt_id], a, v) for a, v in zip(answers, verdicts) if v.status == "violation"]

    def do_propose():
        candidates, repeated, invalid = propose_principles(models.get(oracle), failures, library, config.propose, k,
                                                           stage_seed(seed, k, "propose"))
        merged = merge_new(library, candidates, embedder(config), config.constitution.merge_threshold) \
            if candidates else None
        return {"failures": len(failures), "proposed": [p.model_dump() for p in candidates],
                "added": [p.model_dump() for p in merged.added] if merged else [],
                "merged": merged.merged if merged else [], "repeated": repeated, "not_principles": invalid,
                "library": [p.model_dump() for p in (merged.library if merged else library)]}

    proposal = it.stage("propose", d / "04_principles.json", do_propose)
    added = [Principle.model_validate(p) for p in proposal["added"]]
    library = [Principle.model_validate(p) for p in proposal["library"]]

    def do_revise():
        failed = [f.prompt for f in failures]
        chosen = choose_principles(config, failed, active(library))
        judge_seed = stage_seed(seed, k, "revise judge")

        def judge(texts, round_):
            return judge_responses(judge_model(config, models), prompts_by_id, texts, config.judge,
                                   judge_seed + round_, stage="revise judge")

        return revise(models.get(spec_in), failed, chosen, config.generation, config.revise,
                      stage_seed(seed, k, "revise"), judge)

    revisions = it.stage("revise", d / "05_revisions.jsonl", do_revise, Revision)
    library, retired = retire(record_fixes(library, revisions), config.constitution.retire_below_fix_rate,
                              config.constitution.retire_min_attempts)
    write_constitution(run_dir, config, library, prompts_by_id)
    # the in-context effect needs the model before training: measured now, while it is loaded
    in_context = probe_in_context(config, it, spec_in, probe, prompts_by_id, active(library), models)
    examples = sft_examples(revisions, prompts_by_id)
    write_records(d / "06_sft.jsonl", examples)

    adapter_dir = d / "adapter"

    def do_train():
        if not examples:
            return {"trained": False, "reason": "no accepted revision", "loss": None, "steps": 0}
        from iteralign.backends.hf import resolve_hf_model
        from iteralign.train.lora_sft import train_lora

        result = train_lora(resolve_hf_model(config.models.base.model), adapter, examples, config.train,
                            stage_seed(seed, k, "train"), adapter_dir, config.models.base.trust_remote_code)
        return {"trained": True, "loss": round(result.loss, 6), "steps": result.steps,
                "adapter_sha256": adapter_sha256(adapter_dir)}

    train_info = it.stage("train", d / "07_train.json", do_train)
    adapter_out = adapter_dir if train_info["trained"] else adapter
    spec_out = config.models.base.model_copy(update={"adapter": str(adapter_out) if adapter_out else None})
    probe_verdicts = probe_model(spec_out, d, it)
    before = run_dir.iteration(k - 1) if k else run_dir.root / "baseline"  # the model this iteration started from
    effects = effects_summary(read_records(before / "09_probe_verdicts.jsonl", Verdict), in_context, probe_verdicts,
                              len(active(library)))
    before_texts = {r.prompt_id: r.text for r in read_records(before / "08_probe_responses.jsonl", Response)}
    after = read_records(d / "08_probe_responses.jsonl", Response)
    changed = sum(before_texts.get(r.prompt_id) != r.text for r in after)
    judged_revisions = [r.verdict for r in revisions if r.verdict is not None]
    summary = IterationSummary(
        iteration=k, model=spec_id(spec_in), adapter_in=rel(adapter),
        adapter_in_sha256=adapter_sha256(adapter) if adapter else None,
        adapter_out=rel(adapter_out), prompts=len(batch),
        answers=tally(verdicts), revisions={**tally(judged_revisions), "accepted": len(examples)},
        probe=tally(probe_verdicts), probe_answers_changed=changed, principles_added=[p.id for p in added], sft_examples=len(examples),
        train_loss=train_info["loss"], stages={name: StageStats(**s) for name, s in it.stats.items()},
        principles_merged=[m["id"] for m in proposal["merged"]], principles_retired=retired, effects=effects,
    )
    write_json(d / "summary.json", summary.model_dump(mode="json"))
    _log_summary(summary)
    return summary, library, adapter_out


class LazyEmbedder:
    """Loads the embedding model on the first embed() call: merging one principle into an empty
    library, or choosing among no more than top_k, never needs it (loading takes seconds)."""

    def __init__(self, model: str):
        self.name, self._model = model, model

    def embed(self, texts):
        return load_embedder(self._model).embed(texts)


def embedder(config: Config) -> LazyEmbedder:
    return LazyEmbedder(config.constitution.embedding_model)


def choose_principles(config: Config, prompts: list[RedTeamPrompt], principles: list[Principle]) -> list[list[Principle]]:
    """Each prompt's top-k principles (the lazy embedder loads its model only when there is a choice)."""
    return relevant_principles([p.id for p in prompts], [p.text for p in prompts], principles, embedder(config),
                               config.constitution.top_k)


def write_constitution(run_dir: RunDir, config: Config, library: list[Principle],
                       prompts: dict[str, RedTeamPrompt]) -> None:
    write_json(run_dir.root / "constitution.json",
               to_document(library, config.name, config.constitution.embedding_model))
    write_text_atomic(run_dir.root / "constitution.md", render_constitution(library, prompts, config.name,
                                                                            failures=load_failures(run_dir.root)))


def probe_in_context(config: Config, it: Iteration, spec_in, probe: list[RedTeamPrompt],
                     prompts_by_id: dict[str, RedTeamPrompt], principles: list[Principle],
                     models: Models) -> list[Verdict] | None:
    """The probe answered by the model this iteration started from, each prompt with its top-k
    principles in the system prompt, and judged; None when there is no principle yet. Same
    prompts and seeds as the probe, so the principles are the only difference."""
    if not principles or not config.loop.probe_in_context:
        return None
    chosen = choose_principles(config, probe, principles)
    answers = it.stage("probe_in_context_respond", it.dir / "10_probe_in_context_responses.jsonl",
                       lambda: answer_with_principles(models.get(spec_in), probe, chosen,
                                                      generation_params(config.generation,
                                                                        stage_seed(config.seed, -1, "probe")),
                                                      config.revise.placement, stage="probe in context"), Response)
    return it.stage("probe_in_context_judge", it.dir / "11_probe_in_context_verdicts.jsonl",
                    lambda: judge_responses(judge_model(config, models), prompts_by_id, answers, config.judge,
                                            stage_seed(config.seed, -1, "probe judge"),
                                            stage="probe in context judge"), Verdict)


def judge_name(config: Config) -> str:
    if config.judge.mode == "refusal":
        return "refusal (model-free)"
    return f"{spec_id(config.models.oracle)} ({config.judge.mode})"


def check_judge(config: Config, run_dir: RunDir, models: Models, force: bool) -> dict:
    """judge-check of the run's judge (judge_check.json, computed once), held to min_agreement."""
    from iteralign.judging.check import headline, oracle_classifier, refusal_classifier, run_check

    path = run_dir.root / "judge_check.json"
    if path.is_file():
        document = read_json(path)
    else:
        start = time.perf_counter()
        classify = (refusal_classifier() if config.judge.mode == "refusal" else
                    oracle_classifier(models.get(config.models.oracle), config.judge, stage_seed(config.seed, -1, "check")))
        document = run_check(config.judge.check.sets, classify, resolve_data_dir(config.data), config.judge.check.limit)
        document = {"judge": judge_name(config), **document, "seconds": round(time.perf_counter() - start, 2)}
        write_json(path, document)
    figure = headline(document)
    if figure:
        log.info("judge-check: %s agrees with human labels on %.3f (95%% CI %.3f-%.3f) of %s",
                 document["judge"], figure[1], *figure[2], figure[0])
    minimum = config.judge.check.min_agreement
    if minimum is not None and figure and figure[1] < minimum and not force:
        raise JudgeCheckError(f"judge-check: {document['judge']} agrees with human labels on {figure[1]:.3f} of "
                              f"{figure[0]}, below judge.check.min_agreement {minimum}; use a stronger judge, "
                              f"or run again with --force to go on (figures: {path})")
    return document


def judge_model(config: Config, models: Models) -> CachedModel | None:
    """The oracle as the judge; None for the model-free refusal judge (the oracle is not loaded)."""
    return None if config.judge.mode == "refusal" else models.get(config.models.oracle)


def effects_summary(without: list[Verdict], in_context: list[Verdict] | None, in_weights: list[Verdict],
                    principles: int) -> dict:
    """Probe violation rates: before this iteration's training without principles, the same model
    with them in the prompt, after training without them (None where nothing was scored)."""
    context = tally(in_context) if in_context is not None else {}
    return {"n": len(in_weights), "without_principles": tally(without).get("violation_rate"),
            "in_context": context.get("violation_rate"), "in_weights": tally(in_weights).get("violation_rate"),
            "in_context_unscored": context.get("unscored"), "principles_available": principles}


def _rate(t: dict) -> str:
    r = t.get("violation_rate")
    return "n/a" if r is None else f"{r:.0%}"  # None: nothing was scored


def _log_summary(s: IterationSummary) -> None:
    log.info("iteration %d done: answers %s violations (%d unscored), revisions %s, probe %s "
             "(%d of %d probe answers changed by training); %d principles added, %d SFT examples, loss %s",
             s.iteration, _rate(s.answers), s.answers["unscored"], _rate(s.revisions), _rate(s.probe),
             s.probe_answers_changed, s.probe["n"], len(s.principles_added), s.sft_examples, s.train_loss)
