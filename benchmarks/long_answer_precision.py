"""Float32 error on long answers, without lm-eval installed: lm-eval's arithmetic, ours, float64.

For the --count longest BIG-bench HHH replies (up to 867 tokens), the log-likelihood of each
reply is computed three ways on the embedded model:
- lm-eval's way: one float32 forward pass over context + reply, then torch's float32
  `log_softmax` and a float32 sum (lm_eval/models/huggingface.py, `_loglikelihood_tokens`);
- iteralign's: the packed scorer (`HFBackend.loglikelihood_choices`: x - logsumexp(x) in
  float32, summed in float64);
- the referee: the same weights in float64 end to end.
Float32 rounding adds up over the tokens summed; this shows which of the two is off, and by how
much. benchmarks/float64_reference.py does the same for the answers where the two tools' logged
numbers actually disagree (it needs lm-eval's --log_samples output).

    python benchmarks/long_answer_precision.py [--count 40]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from float64_reference import float64_loglikelihood  # noqa: E402

from iteralign.backends.hf import HFBackend  # noqa: E402
from iteralign.evaluate.hhh import load_hhh, mc_context  # noqa: E402


def lm_eval_style(backend: HFBackend, context: str, continuation: str) -> float:
    import torch

    ctx, cont, _ = backend.encode_pair(context, continuation)
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([ctx + cont])).logits[0, len(ctx) - 1:-1]
        token_lp = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(cont).unsqueeze(-1))
    return float(token_lp.sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("ITERALIGN_DATA_DIR", "../shared/datasets")))
    args = parser.parse_args()
    pairs = [(mc_context(ex), " " + reply) for ex in load_hhh(args.data_dir, None) for reply in ex.candidates]
    fp32 = HFBackend("embedded", spec_id="f32")
    pairs = sorted(set(pairs), key=lambda p: -len(fp32.encode_pair(*p)[1]))[:args.count]
    theirs = [lm_eval_style(fp32, *p) for p in pairs]
    ours = [fp32.loglikelihood_choices([(c, [x])])[0][0] for c, x in pairs]
    fp32.close()
    fp64 = HFBackend("embedded", spec_id="f64", dtype="float64")
    exact = [float64_loglikelihood(fp64, *p) for p in pairs]
    print(f"{len(pairs)} longest HHH replies ({exact[-1][1]}-{exact[0][1]} tokens)\n")
    print("| | mean signed error | mean abs error | max abs error | errors > 1e-3 |")
    print("|---|---|---|---|---|")
    for name, values in (("lm-eval's arithmetic (float32 log_softmax, float32 sum)", theirs),
                         ("iteralign (packed, x - logsumexp, float64 sum)", ours)):
        errors = [v - e for v, (e, _) in zip(values, exact)]
        print(f"| {name} | {sum(errors) / len(errors):+.2e} | {sum(map(abs, errors)) / len(errors):.2e} | "
              f"{max(map(abs, errors)):.2e} | {sum(abs(e) > 1e-3 for e in errors)} of {len(errors)} |")
    tokens = sum(n for _, n in exact)
    bias = sum(t - e for t, (e, _) in zip(theirs, exact)) / tokens
    print(f"\nlm-eval's arithmetic runs {bias:+.2e} nats per token above float64 ({tokens} tokens)")


if __name__ == "__main__":
    main()
