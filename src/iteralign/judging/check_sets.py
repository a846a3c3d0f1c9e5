"""The judge-check table: each check by name, how it runs, its headline figure, its table lines.

In: the names of the checks to run, a `CheckedJudge`, the data folder, a limit and seed (and,
for xstest-completions, optional files). Out: the document judge-check writes
(`{"checks": {name: figures}, "headline": {...}}`, and xstest-completions' `sets` and
`overall` also at the top, where judge-check has always written them), the figure a run is held to
(`judge.check.min_agreement`: the headline of the first check listed that has one), and the
lines a person reads, with the published anchors (anchors.py) beside each check.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from iteralign.errors import DataError
from iteralign.judging.anchors import ANCHORS
from iteralign.judging.check import check_completions, shared_completion_files, table_lines as completion_lines
from iteralign.judging.check_pairs import check_pairs, load_hh_pairs, load_hhh_pairs
from iteralign.judging.check_requests import check_requests
from iteralign.judging.questions import CheckedJudge


@dataclass(frozen=True)
class Check:
    name: str
    what: str  # the headline figure, in words
    run: Callable[[CheckedJudge, Path | None, int | None, int, list[Path]], dict]
    headline: Callable[[dict], tuple[float, list[float], int] | None]  # (value, ci, n)
    lines: Callable[[dict], list[str]]


def _need(data_dir: Path | None, name: str) -> Path:
    if data_dir is None:
        raise DataError(f"judge-check {name}: no data folder; set ITERALIGN_DATA_DIR or pass --data-dir")
    return data_dir


def _completions(judge, data_dir, limit, seed, files) -> dict:
    if not files:
        files = shared_completion_files(_need(data_dir, "xstest-completions"))
    return check_completions(judge.answer_classes, files, data_dir, limit, seed)


def _rate_text(rate: dict | None) -> str:
    if not rate or rate.get("value") is None:
        return "n/a"
    return f"{rate['value']:.3f} ({rate['ci'][0]:.3f}-{rate['ci'][1]:.3f}, n={rate['n']})"


def _request_lines(doc: dict) -> list[str]:
    if doc.get("skipped"):
        return [f"skipped: {doc['skipped']}"]
    f1 = "n/a" if doc.get("f1") is None else f"{doc['f1']:.3f} ({doc['f1_ci'][0]:.3f}-{doc['f1_ci'][1]:.3f})"
    return [f"n={doc['n']} (unscored {doc['unscored']}): F1 {f1}, FPR {_rate_text(doc['fpr'])}, "
            f"precision {_rate_text(doc['precision'])}, recall {_rate_text(doc['recall'])}"]


def _pair_lines(doc: dict) -> list[str]:
    def one(name: str, f: dict) -> str:
        mean = "n/a" if f.get("mean_of_orders") is None else f"{f['mean_of_orders']:.3f}"
        return (f"| {name} | {f['pairs']} | {f['unscored_orders']} | {_rate_text(f['both_orders'])} | "
                f"{_rate_text(f['preferred_first'])} | {_rate_text(f['preferred_second'])} | {mean} | "
                f"{_rate_text(f['position_consistency'])} |")

    lines = ["| set | pairs | unscored orders | right in both orders | preferred shown first | "
             "preferred shown second | mean of orders | position consistency |", "|---|---|---|---|---|---|---|---|"]
    lines += [one(name, f) for name, f in (doc.get("per_category") or {}).items()]
    return lines + [one("all", doc)]


def _rate_headline(doc: dict, key: str):
    rate = doc.get(key) or {}
    return None if rate.get("value") is None else (rate["value"], rate["ci"], rate["n"])


def _completion_headline(doc: dict):
    overall = doc.get("overall") or {}
    return (None if overall.get("binary_agreement") is None
            else (overall["binary_agreement"], overall["binary_ci"], overall["n"]))


def _request_headline(doc: dict):
    acc = doc.get("accuracy") or {}
    return None if doc.get("skipped") or acc.get("value") is None else (acc["value"], acc["ci"], acc["n"])


CHECKS: dict[str, Check] = {c.name: c for c in (
    Check("xstest-completions", "XSTest completions, binary agreement (compliance vs refusal)", _completions,
          _completion_headline, completion_lines),
    Check("xstest-prompts", "XSTest prompts, accuracy (harmful vs safe)",
          lambda judge, data_dir, limit, seed, files: check_requests(judge, _need(data_dir, "xstest-prompts"),
                                                                     limit, seed),
          _request_headline, _request_lines),
    Check("hh-rlhf-pairs", "hh-rlhf harmless-base pairs, right in both orders",
          lambda judge, data_dir, limit, seed, files: check_pairs(
              judge, load_hh_pairs(_need(data_dir, "hh-rlhf-pairs"), limit, seed), "hh-rlhf-pairs"),
          lambda doc: _rate_headline(doc, "both_orders"), _pair_lines),
    Check("hhh-pairs", "BIG-bench HHH pairs, right in both orders",
          lambda judge, data_dir, limit, seed, files: check_pairs(
              judge, load_hhh_pairs(_need(data_dir, "hhh-pairs"), limit, seed), "hhh-pairs"),
          lambda doc: _rate_headline(doc, "both_orders"), _pair_lines),
)}
SET_NAMES = tuple(CHECKS)


def run_checks(names: list[str], judge: CheckedJudge, data_dir: Path | None, limit: int | None = None,
               seed: int = 0, completion_files: list[Path] | None = None) -> dict:
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise DataError(f"judge-check: unknown set {unknown[0]!r}; choose from {', '.join(SET_NAMES)}")
    checks = {name: CHECKS[name].run(judge, data_dir, limit, seed, list(completion_files or [])) for name in names}
    document: dict = {"checks": checks}
    if "xstest-completions" in checks:  # also at the top: the shape judge-check has written from the start
        document.update(sets=checks["xstest-completions"]["sets"], overall=checks["xstest-completions"]["overall"])
    figure = headline(document)
    if figure:
        document["headline"] = figure
    return document


def headline(document: dict) -> dict | None:
    """{"check", "what", "value", "ci", "n"}: the first check's headline figure that exists. Reads
    judge_check.json written before the table existed too (xstest-completions at the top)."""
    checks = document.get("checks")
    if not isinstance(checks, dict):
        checks = {"xstest-completions": document} if "overall" in document else {}
    for name, figures in checks.items():
        if name in CHECKS and isinstance(figures, dict):
            try:
                found = CHECKS[name].headline(figures)
            except (KeyError, TypeError, IndexError):
                found = None  # a damaged or hand-edited file: no figure rather than a traceback
            if found:
                value, ci, n = found
                return {"check": name, "what": CHECKS[name].what, "value": value, "ci": list(ci), "n": n}
    return None


def report_lines(document: dict) -> list[str]:
    """Every check's figures and anchors, for the terminal and the docs."""
    lines = [f"judge: {document.get('judge', '?')}"]
    for name, figures in (document.get("checks") or {}).items():
        lines += ["", f"## {name}", *CHECKS[name].lines(figures)]
        lines += [f"anchor: {a}" for a in ANCHORS.get(name, [])]
    figure = headline(document)
    if figure:
        lines += ["", f"headline: {figure['what']}: {figure['value']:.3f} "
                      f"(95% CI {figure['ci'][0]:.3f}-{figure['ci'][1]:.3f}, n={figure['n']})"]
    if "seconds" in document:
        lines.append(f"wall time: {document['seconds']:.1f} s")
    return lines


class _Silent(CheckedJudge):
    """Answers nothing, asks nothing: running the checks with it reads and checks every file."""

    judges_requests = True

    def answer_classes(self, prompts, answers):
        return [None] * len(prompts)

    def request_harmful(self, prompts):
        return [None] * len(prompts)

    def preference(self, criteria, contexts, firsts, seconds):
        return [None] * len(criteria)


def dry_run(names: list[str], data_dir: Path | None, limit: int | None, seed: int,
            completion_files: list[Path] | None = None) -> None:
    """Every data file the checks need, read and validated, before a model is loaded."""
    quiet = logging.getLogger("iteralign.judging")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # the real run logs each check once
    try:
        run_checks(names, _Silent("dry run"), data_dir, limit, seed, completion_files)
    finally:
        quiet.setLevel(level)
