"""Float32 error on long answers, without lm-eval installed: lm-eval's arithmetic, ours, float64.

For the --count longest BIG-bench HHH replies (up to 867 tokens), the log-likelihood of each
reply is computed three ways on the embedded model:
- lm-eval's way: one float32 forward pass over context + reply, then torch's float32
  `log_softmax` and a float32 sum (lm_eval/models/huggingface.py, `_loglikelihood_tokens`);
- iteralign's: the packed scorer (`HFBackend.loglikelihood_choices`: x - logsumexp(x) in
  float32, summed in float64);
- the referee: the same weights in float64 end to end.
Float32 rounding adds up over the tokens summed; this shows which of the two is off, and by how
much. Last, the two float32 kernels alone on random logits. benchmarks/float64_reference.py does the same for the answers where the two tools' logged
numbers actually disagree (it needs lm-eval's --log_samples output).

    python benchmarks/long_answer_precision.py [--count 40]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from float64_reference import float64_loglikelihood, whole_pass_token_logprobs  # noqa: E402

from iteralign.backends.hf import HFBackend  # noqa: E402
from iteralign.evaluate.hhh import load_hhh, mc_context  # noqa: E402


def lm_eval_style(backend: HFBackend, context: str, continuation: str) -> float:
    return float(whole_pass_token_logprobs(backend, context, continuation).sum())  # a float32 sum


def kernel_bias_on_random_logits(rows: int = 512, vocab: int = 49152) -> tuple[float, float]:
    """Mean signed error against float64 of float32 log_softmax and of x - logsumexp(x), on
    random logits (N(0, 3), the embedded model's vocabulary size): the kernels alone."""
    import torch

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(rows, vocab, dtype=torch.float64, generator=generator) * 3
    targets = torch.randint(0, vocab, (rows, 1), generator=generator)
    exact = torch.log_softmax(logits, -1).gather(-1, targets)
    single = logits.float()
    via_log_softmax = torch.log_softmax(single, -1).gather(-1, targets).double()
    via_logsumexp = (single.gather(-1, targets) - torch.logsumexp(single, -1, keepdim=True)).double()
    return float((via_log_softmax - exact).mean()), float((via_logsumexp - exact).mean())


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
    softmax_error, logsumexp_error = kernel_bias_on_random_logits()
    print(f"the kernels alone, random logits (512 x 49,152): float32 log_softmax {softmax_error:+.2e}, "
          f"x - logsumexp(x) {logsumexp_error:+.2e} mean signed error per token")


if __name__ == "__main__":
    main()
