"""Float32 linear kernels on this CPU: PyTorch's own (MKL) against oneDNN, at SmolLM2-135M's shapes.

What backends/onednn_linear.py decides by one timing, measured in full: GFLOP/s of each decoder
linear on a 4,096-token pass (the packed scorer's pass size) through `torch.nn.functional.linear`
(MKL's sgemm), through oneDNN with the weight as it is, and through oneDNN with the weight
packed once into its blocked layout; then the LM head (49,152 x 576) with the log-sum-exp the
scorer takes, per 4,096 scored positions, at head slices of 64 to 512 positions. Random
weights and inputs of the model's shapes; 2 threads unless OMP_NUM_THREADS says otherwise.

    python benchmarks/linear_kernels.py [--repeats 5]
"""
from __future__ import annotations

import argparse

from iteralign.backends.onednn_linear import best_time as best_seconds

DECODER = {"q_proj / o_proj": (576, 576), "k_proj / v_proj": (576, 192), "gate_proj / up_proj": (576, 1536),
           "down_proj": (1536, 576)}
VOCAB, HIDDEN, TOKENS = 49_152, 576, 4096


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch

    onednn = torch.ops.mkldnn._linear_pointwise
    pack = torch.ops.mkldnn._reorder_linear_weight
    torch.manual_seed(0)
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}\n")
    print(f"| decoder linear ({TOKENS} tokens) | MKL GFLOP/s | oneDNN GFLOP/s | oneDNN packed GFLOP/s |")
    print("|---|---|---|---|")
    with torch.inference_mode():
        for name, (fan_in, fan_out) in DECODER.items():
            x, weight = torch.randn(TOKENS, fan_in), torch.randn(fan_out, fan_in)
            packed = pack(weight)
            flop = 2 * TOKENS * fan_in * fan_out
            rates = [flop / best_seconds(step, args.repeats) / 1e9 for step in (
                lambda: torch.nn.functional.linear(x, weight),
                lambda: onednn(x, weight, None, "none", [], ""),
                lambda: onednn(x, packed, None, "none", [], ""))]
            print(f"| {name} {fan_in} -> {fan_out} | {rates[0]:.0f} | {rates[1]:.0f} | {rates[2]:.0f} |")

        hidden, embedding = torch.randn(TOKENS, HIDDEN), torch.randn(VOCAB, HIDDEN) * 0.05
        packed = pack(embedding)
        print(f"\n| LM head + logsumexp per {TOKENS} positions, slice | MKL s | oneDNN packed s |")
        print("|---|---|---|")
        for size in (64, 128, 256, 512):
            def head(multiply, size=size):
                for start in range(0, TOKENS, size):
                    logits = multiply(hidden[start:start + size])
                    top = logits.amax(dim=-1, keepdim=True)
                    logits.sub_(top).exp_().sum(dim=-1)
            mkl = best_seconds(lambda: head(lambda h: torch.nn.functional.linear(h, embedding)), args.repeats)
            dnn = best_seconds(lambda: head(lambda h: onednn(h, packed, None, "none", [], "")), args.repeats)
            print(f"| {size} | {mkl:.2f} | {dnn:.2f} |")


if __name__ == "__main__":
    main()
