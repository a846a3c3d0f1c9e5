"""Baseline scores of a run config's base model on every benchmark, full sets: the docs' table.

Reads a run config for the models (the base model is evaluated, the oracle judges the generated
answers), the data (its held-out red-team split is the `harmlessness` set), generation and judge
settings and the seed; then runs each benchmark as its own `evaluate()` call, timed by wall clock
(model load included; truthfulqa_mc1 and mc2 share one scoring pass and one time). Each result is
written to OUT/<benchmark>.json as it finishes, and a benchmark whose file exists is not run
again, so an interrupted run goes on where it stopped. Prints a Markdown table.

    python benchmarks/baseline_table.py --config configs/demo.yaml                  # full sets
    python benchmarks/baseline_table.py --config configs/demo.yaml --limit 5 --out runs/baseline-quick
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

from iteralign.config_loading import load_config
from iteralign.data.redteam import load_redteam, resolve_data_dir
from iteralign.evaluate.runner import BENCHMARKS, evaluate, results_document
from iteralign.store.run_dir import write_json

# one evaluate() call per group; mc1 and mc2 are scored from the same answers
GROUPS = [["hhh"], ["hhh_mc"], ["truthfulqa_mc1", "truthfulqa_mc2"], ["truthfulqa_mc1_dromedary"],
          ["harmbench"], ["harmlessness"], ["xstest"], ["advbench"], ["truthfulqa_gen"]]


def run_group(names: list[str], config, heldout, limit: int | None, out: Path) -> dict:
    path = out / f"{'+'.join(names)}.json"
    if path.is_file():
        document = json.loads(path.read_text(encoding="utf-8"))
        if document.get("limit") == limit:  # a finished result of the same request
            return document
    print(f"running {', '.join(names)} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    results = evaluate(config.models.base, names, data_dir=resolve_data_dir(config.data), limit=limit,
                       oracle=config.models.oracle, generation=config.generation, judge=config.judge,
                       seed=config.seed, heldout=heldout)
    document = results_document(results, time.perf_counter() - start) | {"limit": limit}
    write_json(path, document)
    return document


def table(documents: list[dict]) -> str:
    lines = ["| benchmark | protocol | metric | value | 95% interval | n | unscored | wall s |",
             "|---|---|---|---|---|---|---|---|"]
    for document in documents:
        for name, result in document["benchmarks"].items():
            metrics = result["metrics"]
            unscored = metrics.get("unscored", {}).get("value", 0)
            seconds = f"{document['seconds']:.0f}" + (" (with mc2)" if name == "truthfulqa_mc1" and
                                                      "truthfulqa_mc2" in document["benchmarks"] else "")
            protocol, unscored = f"`{result['protocol']}`", str(int(unscored))
            for metric in metrics.values():
                if metric["name"] == "unscored":
                    continue
                lines.append(f"| {name} | {protocol} | {metric['name']} | {metric['value']:.3f} | "
                             f"{metric['ci_low']:.3f}-{metric['ci_high']:.3f} ({metric['interval']}) | "
                             f"{metric['n']} | {unscored} | {seconds} |")
                # the benchmark's other metrics share its name, protocol, unscored count and time
                name = protocol = unscored = seconds = ""
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    parser.add_argument("--benchmarks", default=",".join(BENCHMARKS), help="comma-separated; default: all")
    parser.add_argument("--limit", type=int, default=None, help="first N of each (default: the full sets)")
    parser.add_argument("--out", type=Path, default=Path("runs/baseline"))
    args = parser.parse_args()
    # iteralign's progress lines (a line per tenth of each stage) go through logging; quiet the rest
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("iteralign").setLevel(logging.INFO)
    config = load_config(args.config)
    wanted = {b.strip() for b in args.benchmarks.split(",") if b.strip()}
    unknown = wanted - set(BENCHMARKS)
    if unknown:
        sys.exit(f"unknown benchmark {', '.join(sorted(unknown))}; choose from {', '.join(BENCHMARKS)}")
    heldout = load_redteam(config.data, config.seed).heldout if "harmlessness" in wanted else None
    args.out.mkdir(parents=True, exist_ok=True)
    documents = [run_group([n for n in group if n in wanted], config, heldout, args.limit, args.out)
                 for group in GROUPS if set(group) & wanted]
    base, oracle = config.models.base, config.models.oracle
    print(f"base: {base.backend} {base.model}; oracle: {oracle.backend} {oracle.model}; "
          f"limit: {args.limit or 'none (full sets)'}; answers: greedy, max_new_tokens {config.generation.max_new_tokens}; "
          f"{platform.machine()}, {os.cpu_count()} CPU cores\n")
    print(table(documents))


if __name__ == "__main__":
    main()
