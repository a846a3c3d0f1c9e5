"""judge-check inside a run: the run's judge against human labels, before iteration 0.

In: the run config, the run's root folder, its model pool, `force`, a seed. Out: the document of
judging/check.py, written once to judge_check.json (a resumed run reads it back), logged, and
held to `judge.check.min_agreement`: below it the run stops with one line naming the figure,
unless `force`.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from iteralign.backends.registry import spec_id
from iteralign.config import Config
from iteralign.data.redteam import resolve_data_dir
from iteralign.errors import JudgeCheckError
from iteralign.judging.check import headline, oracle_classifier, refusal_classifier, run_check
from iteralign.store import layout
from iteralign.store.reader import Damaged, load
from iteralign.store.run_dir import write_json

log = logging.getLogger(__name__)


def judge_name(config: Config) -> str:
    if config.judge.mode == "refusal":
        return "refusal (model-free)"
    return f"{spec_id(config.models.oracle)} ({config.judge.mode})"


def check_judge(config: Config, root: Path, models, force: bool, seed: int) -> dict:
    path = root / layout.JUDGE_CHECK
    document = None
    if path.is_file():
        try:
            document = load(path)
        except Damaged as exc:
            log.warning("%s is damaged (%s); measuring the judge again", path, exc)
    if not isinstance(document, dict) or document.get("judge") != judge_name(config):
        start = time.perf_counter()
        classify = (refusal_classifier() if config.judge.mode == "refusal" else
                    oracle_classifier(models.get(config.models.oracle), config.judge, seed))
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
