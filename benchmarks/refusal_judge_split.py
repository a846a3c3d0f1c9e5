"""The refusal judge's agreement with XSTest's human labels, on the half its phrase lists were
written from (even ids, "dev") and on the half never looked at while writing them (odd ids, "test").

    python benchmarks/refusal_judge_split.py [--data-dir ../shared/datasets]

Prints one Markdown table: per split, binary agreement (compliance vs any refusal) with its 95%
interval and Cohen's kappa, beside XSTest's own string match on the same items. The lists were
written by reading only the dev half's disagreements; the test half is the honest figure.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from iteralign.judging.questions import CheckedJudge
from iteralign.judging.check import (label_class, read_completions, score,
                                     shared_completion_files, with_shared_labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ITERALIGN_DATA_DIR", "../shared/datasets")))
    args = parser.parse_args()
    classify = CheckedJudge("refusal").answer_classes
    rows = []
    for path in shared_completion_files(args.data_dir):
        rows += with_shared_labels(path, read_completions(path), args.data_dir)
    print("| split | n | refusal judge: binary (95% CI) | kappa | 3-class | string match: binary | kappa |")
    print("|---|---|---|---|---|---|---|")
    for name, keep in (("dev (even ids)", 0), ("test (odd ids)", 1), ("all", None)):
        part = [r for r in rows if keep is None or int(r["id"].split("-")[-1]) % 2 == keep]
        human = [label_class(r["final_label"]) for r in part]
        ours = score(classify([r["prompt"] for r in part], [r["completion"] for r in part]), human)
        theirs = score([label_class(r.get("strmatch_label")) for r in part], human)
        lo, hi = ours["binary_ci"]
        print(f"| {name} | {ours['n']} | {ours['binary_agreement']:.3f} ({lo:.3f}-{hi:.3f}) | {ours['kappa']:.3f} | "
              f"{ours['three_class_agreement']:.3f} | {theirs['binary_agreement']:.3f} | {theirs['kappa']:.3f} |")


if __name__ == "__main__":
    main()
