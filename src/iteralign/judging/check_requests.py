"""judge-check `xstest-prompts`: does the judge tell a harmful request from a safe one?

In: a `CheckedJudge` and XSTest's 450 prompts (`xstest/xstest_prompts.csv`: label safe | unsafe;
the unsafe ones are the `contrast_*` types). Out: F1 of "unsafe" (the positive class), the
false-positive rate (safe prompts called harmful: the over-refusal a judge like this would
cause), precision, recall, accuracy, each with n and a 95% interval (Wilson for the rates, a
seeded bootstrap for F1), and the same per prompt type. The figures Llama Guard 2 and GPT-4
published on the same prompts are the anchors. `limit` takes a stratified, seeded subset
(the same share of every type), so a quick check keeps both labels.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

from iteralign.errors import DataError
from iteralign.judging.check import stratified
from iteralign.judging.questions import CheckedJudge
from iteralign.statistics import bootstrap_interval, wilson_interval

log = logging.getLogger(__name__)

PROMPTS_FILE = Path("xstest") / "xstest_prompts.csv"


def read_prompts(data_dir: Path) -> list[dict[str, str]]:
    path = Path(data_dir) / PROMPTS_FILE
    if not path.is_file():
        raise DataError(f"{path}: file not found; point ITERALIGN_DATA_DIR (or --data-dir) at the shared datasets")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for number, row in enumerate(rows, 2):
        if row.get("label") not in ("safe", "unsafe") or not (row.get("prompt") or "").strip():
            raise DataError(f"{path}:{number}: needs a prompt and label safe or unsafe")
    return rows


def _rate(hits: int, n: int) -> dict:
    low, high = wilson_interval(hits, n)
    return {"value": round(hits / n, 4) if n else None, "ci": [round(low, 4), round(high, 4)], "n": n}


def f1_of(pairs: list[tuple[bool, bool]]) -> float | None:
    """F1 of the positive class over (predicted, truth) pairs; None when it has no positives at all."""
    tp = sum(p and t for p, t in pairs)
    predicted, actual = sum(p for p, _ in pairs), sum(t for _, t in pairs)
    if not predicted and not actual:
        return None
    return 2 * tp / (predicted + actual)


def figures(pairs: list[tuple[bool, bool]], unscored: int, seed: int) -> dict:
    tp = sum(p and t for p, t in pairs)
    fp = sum(p and not t for p, t in pairs)
    positives, negatives = sum(t for _, t in pairs), sum(not t for _, t in pairs)
    predicted = tp + fp
    f1 = f1_of(pairs)
    low, high = bootstrap_interval(pairs, f1_of, seed=seed) if pairs else (0.0, 1.0)
    return {"n": len(pairs), "unscored": unscored,
            "f1": None if f1 is None else round(f1, 4), "f1_ci": [round(low, 4), round(high, 4)],
            "fpr": _rate(fp, negatives), "recall": _rate(tp, positives), "precision": _rate(tp, predicted),
            "accuracy": _rate(sum(p == t for p, t in pairs), len(pairs))}


def check_requests(judge: CheckedJudge, data_dir: Path, limit: int | None, seed: int = 0) -> dict:
    rows = stratified(read_prompts(data_dir), limit, seed)
    if not judge.judges_requests:
        return {"skipped": f"{judge.name} judges answers, not requests", "n": 0}
    log.info("judge-check: xstest-prompts (%d prompts)", len(rows))
    said = judge.request_harmful([r["prompt"] for r in rows])
    truth = [r["label"] == "unsafe" for r in rows]
    pairs = [(s, t) for s, t in zip(said, truth) if s is not None]
    overall = figures(pairs, len(rows) - len(pairs), seed)
    by_type: dict[str, dict] = {}
    for kind in dict.fromkeys(r.get("type", "") for r in rows):
        mine = [(s, t) for s, t, r in zip(said, truth, rows) if r.get("type", "") == kind and s is not None]
        flagged = sum(s for s, _ in mine)
        by_type[kind] = {"label": "unsafe" if kind.startswith("contrast") else "safe", "n": len(mine),
                         "called_harmful": _rate(flagged, len(mine))}
    return {**overall, "per_type": by_type}
