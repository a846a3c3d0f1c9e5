"""judge-check: how far a judge agrees with human labels.

In: a function that classifies (prompt, completion) pairs into XSTest's three classes (the
refusal judge, or an oracle asked XSTest's question), and CSV files with XSTest's columns
(`prompt`, `completion`, `final_label`; optionally `id`, `strmatch_label`, `gpt4_label`).
Out: a JSON-ready document, per file and overall: n, binary agreement (compliance vs any
refusal) with its Wilson interval, Cohen's kappa, three-class agreement, per-class precision,
recall and F1, and the same figures for the file's own automated labels where it has them
(XSTest's string match, its GPT-4 classifier). A judgement the judge could not give is unscored:
counted, left out of every figure.

With no files given, the shared XSTest completions are used, joined by id with the
automated labels that ship beside them (`xstest/automated_labels/`).
"""
from __future__ import annotations

import csv
import logging
import random
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

from iteralign.errors import DataError
from iteralign.statistics import agreement, per_class
from iteralign.judging.refusal import CLASSES

log = logging.getLogger(__name__)

# judge(prompts, completions) -> one XSTest class per pair, None where it gave no judgement
Classifier = Callable[[list[str], list[str]], list[str | None]]

COMPLETIONS_DIR = Path("xstest") / "completions"
AUTOMATED_DIR = Path("xstest") / "automated_labels"
BASELINE_COLUMNS = ("strmatch_label", "gpt4_label")  # XSTest's string match, its GPT-4 classifier
REQUIRED = ("prompt", "completion", "final_label")


def label_class(raw: str | None) -> str | None:
    """'2_full_refusal' -> 'full_refusal'; anything that is not one of the classes -> None."""
    text = (raw or "").strip().lower()
    text = text.split("_", 1)[1] if text[:2] in ("1_", "2_", "3_") else text
    return text if text in CLASSES else None


def read_completions(path: Path) -> list[dict[str, str]]:
    """The rows of one labelled-completions CSV; a missing file or column is a one-line error."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; give a CSV with columns {', '.join(REQUIRED)}")
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(f"{path}: missing column {', '.join(missing)}; XSTest's completion files have "
                                f"{', '.join(REQUIRED)}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    for number, row in enumerate(rows, 2):
        if label_class(row["final_label"]) is None:
            raise DataError(f"{path}:{number}: final_label {row['final_label'][:40]!r} is not one of "
                            "1_full_compliance, 2_full_refusal, 3_partial_refusal")
    return rows


def shared_completion_files(data_dir: Path) -> list[Path]:
    folder = Path(data_dir) / COMPLETIONS_DIR
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise DataError(f"{folder}: no XSTest completion files; check the data folder or pass files")
    return files


def with_shared_labels(path: Path, rows: list[dict[str, str]], data_dir: Path | None) -> list[dict[str, str]]:
    """Join the automated labels shipped beside the shared completions (by id), when they exist."""
    if data_dir is None or path.parent.resolve() != (Path(data_dir) / COMPLETIONS_DIR).resolve():
        return rows
    for suffix, column in (("_streval", "strmatch_label"), ("_gpteval", "gpt4_label")):
        labels = Path(data_dir) / AUTOMATED_DIR / f"{path.stem}{suffix}.csv"
        if labels.is_file() and all(column not in row for row in rows[:1]):
            with open(labels, encoding="utf-8", newline="") as handle:
                by_id = {r.get("id"): r.get(column) for r in csv.DictReader(handle)}
            rows = [{**row, column: by_id.get(row.get("id"), "")} for row in rows]
    return rows


def stratified(rows: list[dict[str, str]], limit: int | None, seed: int) -> list[dict[str, str]]:
    """`limit` rows spread evenly over the prompt types (seeded); all rows when no limit."""
    if not limit or limit >= len(rows):
        return rows
    by_type: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        by_type[row.get("type", "")].append(i)
    rng = random.Random(seed)
    for indices in by_type.values():
        rng.shuffle(indices)
    chosen, depth = [], 0
    while len(chosen) < limit:  # one of each type per round, types in file order
        for indices in by_type.values():
            if depth < len(indices) and len(chosen) < limit:
                chosen.append(indices[depth])
        depth += 1
    return [rows[i] for i in sorted(chosen)]


def score(predicted: Sequence[str | None], human: Sequence[str]) -> dict:
    """Every agreement figure of one labelling against the human one (unscored left out)."""
    pairs = [(p, h) for p, h in zip(predicted, human) if p is not None]
    ours, truth = [p for p, _ in pairs], [h for _, h in pairs]
    binary = agreement([p != "full_compliance" for p in ours], [h != "full_compliance" for h in truth])
    three = agreement(ours, truth)
    return {"n": len(pairs), "unscored": len(predicted) - len(pairs),
            "binary_agreement": binary["agreement"], "binary_ci": binary["ci"], "kappa": binary["kappa"],
            "kappa_ci": binary["kappa_ci"], "three_class_agreement": three["agreement"], "three_class_ci": three["ci"],
            "three_class_kappa": three["kappa"], "per_class": per_class(ours, truth, CLASSES)}


def check_completions(classify: Classifier, files: list[Path], data_dir: Path | None = None,
                      limit: int | None = None, seed: int = 0) -> dict:
    """{"sets": {file stem: figures}, "overall": figures}; every file is read before any judging.
    `limit`: a seeded subset of that many rows per file, spread over the prompt types (the files
    are sorted by type, so their first rows would all be of one)."""
    tables = []
    for path in files:
        rows = with_shared_labels(path, read_completions(path), data_dir)
        tables.append((path, stratified(rows, limit, seed)))
    sets, all_ours, all_human, all_baselines = {}, [], [], {c: [] for c in BASELINE_COLUMNS}
    for path, rows in tables:
        log.info("judge-check: %s (%d completions)", path.name, len(rows))
        human = [label_class(r["final_label"]) for r in rows]
        ours = classify([r["prompt"] for r in rows], [r["completion"] for r in rows])
        figures = score(ours, human)
        baselines = {}
        for column in BASELINE_COLUMNS:
            if rows and column in rows[0]:
                theirs = [label_class(r.get(column)) for r in rows]
                baselines[column] = score(theirs, human)
                all_baselines[column] += list(zip(theirs, human))
        figures["baselines"] = baselines
        sets[path.stem] = figures
        all_ours += ours
        all_human += human
    overall = score(all_ours, all_human)
    overall["baselines"] = {c: score([t for t, _ in pairs], [h for _, h in pairs])
                            for c, pairs in all_baselines.items() if pairs}
    return {"sets": sets, "overall": overall}


def table_lines(document: dict) -> list[str]:
    """A Markdown table of binary agreement: ours, with the files' own labels beside it."""
    def cell(figures: dict | None) -> str:
        if not figures or figures.get("binary_agreement") is None:
            return "n/a"
        lo, hi = figures["binary_ci"]
        kappa = figures.get("kappa")
        return f"{figures['binary_agreement']:.3f} ({lo:.3f}-{hi:.3f}), k={kappa:.3f}" if kappa is not None else \
            f"{figures['binary_agreement']:.3f} ({lo:.3f}-{hi:.3f})"

    lines = ["| set | n | unscored | this judge: binary (95% CI), kappa | 3-class | string match | GPT-4 classifier |",
             "|---|---|---|---|---|---|---|"]
    rows = list(document["sets"].items()) + [("overall", document["overall"])]
    for name, figures in rows:
        base = figures.get("baselines") or {}
        three = figures.get("three_class_agreement")
        lines.append(f"| {name} | {figures['n']} | {figures['unscored']} | {cell(figures)} | "
                     f"{'n/a' if three is None else f'{three:.3f}'} | {cell(base.get('strmatch_label'))} | "
                     f"{cell(base.get('gpt4_label'))} |")
    return lines
