"""llama.cpp scoring against transformers: speed and agreement on TruthfulQA MC1+MC2.

Both engines score the same (context, answer) pairs of the first --limit TruthfulQA questions:
llama.cpp (the embedded Q4_1 GGUF, logits_all, each context's shared prefix kept in its KV
cache) and transformers (the same weights dequantised to float32, the packed scorer). It prints
each engine's wall time (model load excluded), the share of MC1 predictions that agree, and
the mean and largest absolute difference per answer log-likelihood and per answer token.

    python benchmarks/llamacpp_scoring.py [--limit 100]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from iteralign.backends.hf import HFBackend
from iteralign.backends.llamacpp import LlamaCppBackend
from iteralign.evaluate import truthfulqa as tqa


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ITERALIGN_DATA_DIR", "../shared/datasets")))
    parser.add_argument("--limit", type=int, default=100)
    args = parser.parse_args()

    questions = tqa.load_truthfulqa_mc(args.data_dir, args.limit)
    items = [(tqa.qa_context(q.question), [" " + a for a, _ in q.mc2]) for q in questions]
    pairs = [(context, answer) for context, answers in items for answer in answers]

    hf = HFBackend("embedded", spec_id="hf")
    llama = LlamaCppBackend("embedded", spec_id="llamacpp", n_ctx=1024)
    llama.encode_pair(*pairs[0])  # opens the scoring instance outside the timing
    start = time.perf_counter()
    hf_scores = [s for row in hf.loglikelihood_choices(items) for s in row]
    hf_seconds = time.perf_counter() - start
    start = time.perf_counter()
    llama_scores = llama.loglikelihood(pairs)
    llama_seconds = time.perf_counter() - start

    tokens = [len(llama.encode_pair(c, a)[1]) for c, a in pairs]
    diffs = [abs(a - b) for a, b in zip(hf_scores, llama_scores)]
    per_token = sum(diffs) / sum(tokens)
    agree, offset = 0, 0
    for q in questions:
        n = len(q.mc2)
        mc1 = {a for a, _ in q.mc1}
        pick = [k for k, (a, _) in enumerate(q.mc2) if a in mc1]

        def best(scores, pick=pick, offset=offset):
            return max(pick, key=lambda k: scores[offset + k])

        agree += best(hf_scores) == best(llama_scores)
        offset += n
    print(f"TruthfulQA, first {len(questions)} questions, {len(pairs)} answers, {sum(tokens)} answer tokens\n")
    print("| engine | seconds | answers/s |\n|---|---|---|")
    print(f"| transformers float32, packed | {hf_seconds:.1f} | {len(pairs) / hf_seconds:.1f} |")
    print(f"| llama.cpp Q4_1, logits_all | {llama_seconds:.1f} | {len(pairs) / llama_seconds:.1f} |")
    print(f"\nMC1 predictions agreeing: {agree}/{len(questions)}; |difference| per answer: mean "
          f"{sum(diffs) / len(diffs):.3f}, max {max(diffs):.3f} nats; per answer token: {per_token:.4f} nats")


if __name__ == "__main__":
    main()
