"""How much work log-likelihood scoring needs, plans and takes: the table in docs/benchmarks.md.

For TruthfulQA MC1+MC2 (one de-duplicated request, as `iteralign eval` sends it) and BIG-bench
HHH multiple choice, on the embedded SmolLM2-135M-Instruct's tokenizer, it counts token
positions that pass through the model:

- minimal (the issue's yardstick): the prefix all contexts share once, each context's own
  tokens once, each distinct answer once, minus its last token (only predicted, never read);
- minimal as a tree: the same, but answers that begin with the same tokens read those once
  (each context's answers as a trie), as the packed scorer now does;
- iteralign: the packed plan (backends/hf_scoring.py) chunk by chunk as `score_choices` sends
  it, padding included, each distinct shared prefix once;
- lm-eval: lm-evaluation-harness 0.4.13's HFLM plan: every request whole (context + answer,
  minus the last token), requests sharing context + answer[:-1] run once (its logits cache),
  sorted longest first, batches of --batch-size padded to their longest row.

Then it measures this machine's forward rates (float32, the threads torch uses, and the malloc
tuning the hf backend applies for `iteralign eval` too, backends/allocator.py): tokens/s
when only the last position's logits are needed and when every position's are, first with
PyTorch's own linears (MKL: what the harness runs), then with the linears through oneDNN
(backends/onednn_linear.py, what the packed scorer runs where it measures faster). A bound is
a work count at a pair of rates: positions whose logits are scored at the second rate, the rest
at the first.

    python benchmarks/scoring_work.py [--batch-size 16] [--dtype float32] [--skip-rates]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from iteralign.backends.hf import HFBackend
from iteralign.backends.hf_scoring import make_segment, plan_counts, shared_prefix_length
from iteralign.backends.onednn_linear import OneDNNLinears
from iteralign.backends.onednn_linear import available as onednn_available
from iteralign.evaluate import truthfulqa as tqa
from iteralign.evaluate.hhh import load_hhh, mc_context
from iteralign.evaluate.scoring import ChoiceItem, context_chunks, distinct_pairs


def benchmark_items(data_dir: Path) -> dict[str, list[ChoiceItem]]:
    questions = tqa.load_truthfulqa_mc(data_dir)
    return {"TruthfulQA MC1+MC2": tqa._items(questions, "mc1") + tqa._items(questions, "mc2"),
            "HHH MC": [ChoiceItem(mc_context(ex), [" " + c for c in ex.candidates]) for ex in load_hhh(data_dir)]}


def minimal_work(backend: HFBackend, pairs) -> dict[str, int]:
    """Positions read and positions whose logits are scored, answers flat and as a tree."""
    groups = [g for chunk in context_chunks(pairs) for g in chunk]
    packed, _, _ = backend.encode_groups(groups)
    prefix = shared_prefix_length([ctx for ctx, _ in packed], backend.scorer.min_shared_prefix)
    context = prefix + sum(len(ctx) - prefix for ctx, _ in packed)
    answers = sum(len(c) - 1 for _, conts in packed for c in conts)
    trees = [make_segment(0, ctx, conts, prefix) for ctx, conts in packed]
    tree_answers = sum(len(t.tokens) for t in trees) - (context - prefix)
    # positions whose logits are scored: each context's last, each answer token but the last
    return {"positions": context + answers, "with_logits": len(packed) + answers,
            "tree_positions": context + tree_answers,
            "tree_with_logits": sum(t.head_positions for t in trees)}


def our_work(backend: HFBackend, pairs) -> dict[str, int]:
    total = {"positions": 0, "padding": 0, "passes": 0, "scored": 0, "head": 0}
    prefixes = set()
    for chunk in context_chunks(pairs):
        packed, _, plain = backend.encode_groups(chunk)
        assert not plain, "every benchmark pair lines up at the token boundary"
        prefix = shared_prefix_length([ctx for ctx, _ in packed], backend.scorer.min_shared_prefix)
        if prefix:
            prefixes.add(tuple(packed[0][0][:prefix]))
        live = [(i, ctx, conts) for i, (ctx, conts) in enumerate(packed)]
        counts = plan_counts(backend.scorer.plan(live, prefix), prefix)
        for key in total:
            total[key] += counts[key]
    total["positions"] += sum(len(p) for p in prefixes)
    return total


def lm_eval_work(backend: HFBackend, items: list[ChoiceItem], batch_size: int) -> int:
    # every task's requests (mc1 and mc2 are separate tasks there), de-duplicated only by the
    # logits cache key context + continuation[:-1]
    requests = []
    for item in items:
        for continuation in item.continuations:
            ctx, cont, _ = backend.encode_pair(item.context, continuation)
            requests.append((ctx, cont))
    groups: dict[tuple[int, ...], tuple[list[int], list[int]]] = {}
    for ctx, cont in requests:
        key = tuple(ctx + cont[:-1])
        if key not in groups or len(cont) > len(groups[key][1]):  # the longest continuation of a group runs
            groups[key] = (ctx, cont)
    ordered = sorted(groups.values(), key=lambda r: (-len(r[0] + r[1]), tuple(r[0] + r[1])))
    positions = 0
    for start in range(0, len(ordered), batch_size):
        batch = ordered[start:start + batch_size]
        positions += len(batch) * max(len(ctx) + len(cont) - 1 for ctx, cont in batch)
    return positions


def forward_rates(backend: HFBackend, rows: int = 16, width: int = 256, repeats: int = 3,
                  onednn: bool = False) -> tuple[float, float]:
    import torch

    switch = OneDNNLinears(backend.model)
    switch.enabled = onednn
    ids = torch.randint(100, 20000, (rows, width), generator=torch.Generator().manual_seed(0))
    rates = []
    for keep in (1, 0):  # logits_to_keep=0 keeps every position
        with torch.inference_mode(), switch.active():
            backend.model(input_ids=ids, use_cache=False, logits_to_keep=keep)  # warm-up
            best = float("inf")
            for _ in range(repeats):
                start = time.perf_counter()
                backend.model(input_ids=ids, use_cache=False, logits_to_keep=keep)
                best = min(best, time.perf_counter() - start)
        rates.append(rows * width / best)
    return rates[0], rates[1]


def seconds(positions: int, with_logits: int, rates: tuple[float, float]) -> float:
    last, every = rates
    return (positions - with_logits) / last + with_logits / every


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ITERALIGN_DATA_DIR", "../shared/datasets")))
    parser.add_argument("--batch-size", type=int, default=16, help="lm-eval's --batch_size in the compared run")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--skip-rates", action="store_true", help="count positions only (no forward passes)")
    args = parser.parse_args()

    import torch

    backend = HFBackend("embedded", spec_id="work", dtype=args.dtype)
    print(f"SmolLM2-135M-Instruct (embedded), {args.dtype}, {torch.get_num_threads()} torch threads; "
          f"lm-eval plan at batch size {args.batch_size}\n")
    print("| | minimal | minimal as a tree | iteralign plan (padding) | lm-eval plan | lm-eval / minimal "
          "| iteralign / minimal |")
    print("|---|---|---|---|---|---|---|")
    totals = dict.fromkeys(("positions", "with_logits", "tree_positions", "tree_with_logits", "ours", "head",
                            "lm_eval"), 0)
    for name, items in benchmark_items(args.data_dir).items():
        pairs = distinct_pairs(items)
        least, ours, theirs = minimal_work(backend, pairs), our_work(backend, pairs), lm_eval_work(backend, items,
                                                                                                  args.batch_size)
        for key in ("positions", "with_logits", "tree_positions", "tree_with_logits"):
            totals[key] += least[key]
        totals["ours"] += ours["positions"]
        totals["head"] += ours["head"]
        totals["lm_eval"] += theirs
        print(f"| {name} | {least['positions']:,} | {least['tree_positions']:,} | {ours['positions']:,} "
              f"({ours['padding']:,}, {100 * ours['padding'] / ours['positions']:.1f}%) | {theirs:,} | "
              f"{theirs / least['positions']:.1f}x | {ours['positions'] / least['positions']:.2f}x |")
    print(f"\nwith logits: minimal {totals['with_logits']:,}, as a tree {totals['tree_with_logits']:,}, "
          f"iteralign's plan {totals['head']:,}")
    if args.skip_rates:
        return
    for label, onednn in (("PyTorch's linears (MKL)", False), ("linears through oneDNN", True)):
        if onednn and not onednn_available():
            print("\nthis torch has no oneDNN linear kernel")
            break
        rates = forward_rates(backend, onednn=onednn)
        print(f"\n{label}, 16 x 256 tokens, best of 3: {rates[0]:.0f} tokens/s with the last position's logits, "
              f"{rates[1]:.0f} tokens/s with every position's")
        print(f"  minimal work: {totals['positions']:,} positions, {totals['with_logits']:,} with logits -> "
              f"{seconds(totals['positions'], totals['with_logits'], rates):.0f} s")
        print(f"  minimal as a tree: {totals['tree_positions']:,} positions, {totals['tree_with_logits']:,} with "
              f"logits -> {seconds(totals['tree_positions'], totals['tree_with_logits'], rates):.0f} s")
        print(f"  iteralign's plan: {totals['ours']:,} positions, {totals['head']:,} with logits -> "
              f"{seconds(totals['ours'], totals['head'], rates):.0f} s")
        print(f"  lm-eval's plan, every position with logits: {totals['lm_eval'] / rates[1]:.0f} s")
    print("(forward passes only: model load and start-up not included)")


if __name__ == "__main__":
    main()
