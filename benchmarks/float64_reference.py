"""Who is off where iteralign and lm-eval disagree by more than 1e-3: a float64 referee.

After `benchmarks/lm_eval_compare.py` (which leaves both tools' per-answer log-likelihoods in
--work), this takes every answer whose two float32 scores differ by more than --threshold,
scores it again in float64 (the same weights, one whole forward pass per pair, no batching, the
log-softmax and the sum in float64 too), and prints how far each tool's float32 number is from
the float64 one. Float32 rounding grows with the number of tokens summed, so long HHH answers
are where the two disagree. (An earlier version scored through HFBackend.loglikelihood, which
took the float64 logits back to float32 for the log-softmax: its "referee" carried the very
float32 log_softmax bias it was meant to expose.)

    python benchmarks/float64_reference.py [--work runs/lm_eval_compare] [--threshold 1e-3] [--max 40]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from lm_eval_compare import LM_EVAL_TASKS, LOCAL_PREFIX, lm_eval_samples, our_pairs  # noqa: E402

from iteralign.backends.hf import HFBackend  # noqa: E402


def whole_pass_token_logprobs(backend: HFBackend, context: str, continuation: str):
    """Each continuation token's log-prob from one whole forward pass over context + continuation
    and torch's log_softmax, in the model's own dtype (the harness's arithmetic, in float32)."""
    import torch

    ctx, cont, _ = backend.encode_pair(context, continuation)
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([ctx + cont])).logits[0, len(ctx) - 1:-1]
        return torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(cont).unsqueeze(-1)).squeeze(-1)


def float64_loglikelihood(backend: HFBackend, context: str, continuation: str) -> tuple[float, int]:
    """(log P(continuation | context) computed in float64 end to end, continuation tokens)."""
    import math

    import torch

    token_lp = whole_pass_token_logprobs(backend, context, continuation)
    assert token_lp.dtype == torch.float64, "the referee needs a float64 model"
    return math.fsum(token_lp.tolist()), len(token_lp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("runs/lm_eval_compare"))
    parser.add_argument("--threshold", type=float, default=1e-3)
    parser.add_argument("--max", type=int, default=40, help="at most this many answers (the largest differences)")
    args = parser.parse_args()
    ours = json.loads((args.work / "iteralign.json").read_text(encoding="utf-8"))["benchmarks"]
    flagged = []  # (difference, benchmark, context, continuation, ours, lm-eval's)
    for name, (theirs, _, _) in LM_EVAL_TASKS.items():
        samples = lm_eval_samples(args.work / "lm_eval_out", LOCAL_PREFIX + theirs)
        for sample, example in zip(samples, ours[name]["examples"]):
            their_ll = [float(resp[0][0]) for resp in sample["resps"]]
            for (context, continuation), mine, other in zip(our_pairs(name, example), example["scores"], their_ll):
                if abs(mine - other) > args.threshold:
                    flagged.append((abs(mine - other), name, context, continuation, mine, other))
    flagged = sorted(set(flagged), key=lambda f: -f[0])[:args.max]
    if not flagged:
        print(f"no answer differs by more than {args.threshold}")
        return
    reference = HFBackend("embedded", spec_id="f64", dtype="float64")
    print(f"{len(flagged)} answers differing by more than {args.threshold} (largest first)\n")
    print("| benchmark | answer tokens | iteralign - lm-eval | iteralign - float64 | lm-eval - float64 |")
    print("|---|---|---|---|---|")
    ours_off = theirs_off = 0.0
    ours_closer = 0
    for _, name, context, continuation, mine, other in flagged:
        exact, tokens = float64_loglikelihood(reference, context, continuation)
        ours_off += abs(mine - exact)
        theirs_off += abs(other - exact)
        ours_closer += abs(mine - exact) < abs(other - exact)
        print(f"| {name} | {tokens} | {mine - other:+.2e} | {mine - exact:+.2e} | {other - exact:+.2e} |")
    print(f"\nmean |float32 - float64| over these answers: iteralign {ours_off / len(flagged):.2e}, "
          f"lm-eval {theirs_off / len(flagged):.2e}; iteralign is the closer on {ours_closer} of {len(flagged)}")


if __name__ == "__main__":
    main()
