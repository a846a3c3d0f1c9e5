"""judge-check inside a run: the run's judge against human labels, before iteration 0.

In: the run config, the run's root folder, its model pool, `force`, a seed. Out: the document of
judging/check_sets.py, written once to judge_check.json (a resumed run reads it back when it was
made by the same judge on the same checks), logged, and held to `judge.check.min_agreement`:
below it the run stops with one line naming the figure, unless `force`. The oracle's calls go
through the run's own call cache.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from iteralign.backends.registry import spec_id
from iteralign.config import Config
from iteralign.data.redteam import resolve_data_dir
from iteralign.errors import JudgeCheckError
from iteralign.judging.check_sets import headline, run_checks
from iteralign.judging.questions import CheckedJudge
from iteralign.store import layout
from iteralign.store.reader import Damaged, load
from iteralign.store.run_dir import write_json

log = logging.getLogger(__name__)


def judge_name(config: Config) -> str:
    if config.judge.mode == "refusal":
        return "refusal (model-free)"
    return f"{spec_id(config.models.oracle)} ({config.judge.mode})"


def _same_check(document, config: Config) -> bool:
    check = config.judge.check
    return (isinstance(document, dict) and document.get("judge") == judge_name(config)
            and document.get("check_sets") == list(check.sets) and document.get("limit") == check.limit)


def check_judge(config: Config, root: Path, models, force: bool, seed: int) -> dict:
    path = root / layout.JUDGE_CHECK
    document = None
    if path.is_file():
        try:
            document = load(path)
        except Damaged as exc:
            log.warning("%s is damaged (%s); measuring the judge again", path, exc)
    if not _same_check(document, config):
        start = time.perf_counter()
        judge = config.judge
        checked = (CheckedJudge(judge_name(config)) if judge.mode == "refusal" else
                   CheckedJudge(judge_name(config), models.get(config.models.oracle), judge.mode, seed,
                                judge.max_attempts, judge.max_new_tokens))
        sets = list(judge.check.sets)
        document = run_checks(sets, checked, resolve_data_dir(config.data), judge.check.limit, seed)
        document = {"judge": judge_name(config), "check_sets": sets, "limit": judge.check.limit, "seed": seed,
                    **document, "seconds": round(time.perf_counter() - start, 2)}
        write_json(path, document)
    figure = headline(document)
    if figure:
        log.info("judge-check: %s: %s %.3f (95%% CI %.3f-%.3f, n=%d)", document["judge"], figure["what"],
                 figure["value"], *figure["ci"], figure["n"])
    minimum = config.judge.check.min_agreement
    if minimum is not None and figure and figure["value"] < minimum and not force:
        raise JudgeCheckError(f"judge-check: {document['judge']} scores {figure['value']:.3f} on {figure['what']}, "
                              f"below judge.check.min_agreement {minimum}; use a stronger judge, or run again "
                              f"with --force to go on (figures: {path})")
    return document
