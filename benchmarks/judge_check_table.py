"""The docs' judge-check table, from judge-check --out files.

    iteralign judge-check --judge refusal --out /tmp/jc/refusal.json
    iteralign judge-check --judge embedded --mode structured --limit 20 --out /tmp/jc/embedded-structured.json
    iteralign judge-check --judge embedded --mode paper --limit 20 --out /tmp/jc/embedded-paper.json
    python benchmarks/judge_check_table.py /tmp/jc/refusal.json /tmp/jc/embedded-*.json

One row per judge: each check's headline figures with 95% intervals and n, and the wall time;
then the published anchors. Prints Markdown (docs/judges.md holds its output).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from iteralign.judging.anchors import ANCHORS


def rate(figure: dict | None) -> str:
    if not figure or figure.get("value") is None:
        return "n/a"
    low, high = figure["ci"]
    return f"{figure['value']:.3f} ({low:.2f}-{high:.2f}), n={figure['n']}"


def row(document: dict) -> str:
    checks = document.get("checks", {})
    cells = []
    completions = (checks.get("xstest-completions") or {}).get("overall")
    if completions and completions.get("binary_agreement") is not None:
        low, high = completions["binary_ci"]
        kappa = completions.get("kappa")
        cells.append(f"{completions['binary_agreement']:.3f} ({low:.2f}-{high:.2f}), k={kappa if kappa is None else round(kappa, 2)}, "
                     f"n={completions['n']} (+{completions['unscored']} unscored)")
    else:
        cells.append("n/a")
    prompts = checks.get("xstest-prompts") or {}
    if prompts.get("skipped"):
        cells.append("not applicable")
    elif prompts.get("f1") is not None:
        cells.append(f"F1 {prompts['f1']:.3f} ({prompts['f1_ci'][0]:.2f}-{prompts['f1_ci'][1]:.2f}), "
                     f"FPR {rate(prompts['fpr'])} (+{prompts['unscored']} unscored)")
    else:
        cells.append(f"n/a ({prompts.get('unscored', 0)} unscored)")
    for name in ("hh-rlhf-pairs", "hhh-pairs"):
        pairs = checks.get(name) or {}
        if not pairs:
            cells.append("not run")
            continue
        consistency = pairs["position_consistency"]["value"]
        cells.append(f"{rate(pairs['both_orders'])} of {pairs['pairs']} pairs; mean of orders "
                     f"{'n/a' if pairs['mean_of_orders'] is None else format(pairs['mean_of_orders'], '.3f')}; consistency "
                     f"{'n/a' if consistency is None else f'{consistency:.2f}'}")
    limit = document.get("limit")
    return (f"| {document['judge']}{'' if limit is None else f' (--limit {limit})'} | " + " | ".join(cells)
            + f" | {document.get('seconds', 0):.0f} s |")


def main(paths: list[str]) -> None:
    print("| judge | xstest-completions: binary agreement, kappa | xstest-prompts | hh-rlhf-pairs: right in both "
          "orders | hhh-pairs: right in both orders | wall time |")
    print("|---|---|---|---|---|---|")
    for path in paths:
        print(row(json.loads(Path(path).read_text(encoding="utf-8"))))
    print()
    print("Published anchors:")
    for name, lines in ANCHORS.items():
        for line in lines:
            print(f"- {name}: {line}")


if __name__ == "__main__":
    main(sys.argv[1:])
