"""How fast the embedded model generates on this machine, and what each engine choice costs.

    python benchmarks/generation_speed.py [--rows 128] [--tokens 24] [--skip-bf16]

Prints one Markdown table: matrix-multiply throughput in float32 and bfloat16 (bf16 is fast
only on CPUs with native bf16 instructions), then the transformers backend generating
`--tokens` tokens for `--rows` rows:
- greedy, distinct prompts (the probe);
- sampled, 6 samples of each of rows/6 prompts with two seed principles in the user turn (the
  demo's rejection sampling): prompt read once per prompt and its KV cache copied (what the
  backend does), against every row read separately;
- the prompt-read-once case with transformers' growing cache instead of the preallocated one;
- llama.cpp (`generate_with: {backend: llamacpp}`) on rows/4 of the greedy prompts, one at a
  time as the backend asks it, with and without a GGUF LoRA (`--lora FILE.gguf`, converted from
  an iteration's adapter by backends/gguf_lora.py).
Run it on an idle machine; each figure is one timed call after a warm-up.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from iteralign.backends.base import GenParams
from iteralign.backends.hf import HFBackend
from iteralign.constitution.library import load_start
from iteralign.stages.revise import principled_chat

DATA = Path(os.environ.get("ITERALIGN_DATA_DIR", "../shared/datasets"))


def matmul_gflops(dtype) -> float:
    a, w = torch.randn(256, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
    for _ in range(3):
        a @ w
    start, n = time.perf_counter(), 20
    for _ in range(n):
        a @ w
    return n * 2 * 256 * 576 * 1536 / (time.perf_counter() - start) / 1e9


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--skip-bf16", action="store_true")
    parser.add_argument("--lora", default=None, help="a GGUF LoRA for the llama.cpp row with an adapter")
    args = parser.parse_args()
    prompts = json.loads((DATA / "dangerousqa" / "toxic_outs.json").read_text(encoding="utf-8"))
    rows, tokens = args.rows, args.tokens
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}\n")
    print("| what | seconds | tokens/s |")
    print("|---|---|---|")
    dtypes = [torch.float32] + ([] if args.skip_bf16 else [torch.bfloat16])
    for dtype in dtypes:
        print(f"| matmul 256x576 @ 576x1536, {str(dtype)[6:]} | - | {matmul_gflops(dtype):.1f} GFLOP/s |")
    backend = HFBackend("embedded", spec_id="bench", dtype="float32", batch_size=rows)
    distinct = [[{"role": "user", "content": p}] for p in prompts[:rows]]
    greedy = GenParams(max_new_tokens=tokens, temperature=0.0)
    backend.generate_batch(distinct[:4], greedy)  # warm-up
    seconds = timed(lambda: backend.generate_batch(distinct, greedy))
    print(f"| greedy, {rows} distinct prompts, float32 | {seconds:.1f} | {rows * tokens / seconds:.0f} |")
    samples = 6
    principles = load_start("seed")[:2]
    repeated = [principled_chat(p, principles, "user") for p in prompts[:rows // samples] for _ in range(samples)]
    sampled = GenParams(max_new_tokens=tokens, temperature=1.0, top_p=1.0, seed=0)
    n = len(repeated)
    seconds = timed(lambda: backend.generate_batch(repeated, sampled))
    print(f"| sampled, {n // samples} prompts x {samples} samples, prompt read once (default) | {seconds:.1f} | "
          f"{n * tokens / seconds:.0f} |")
    seconds = timed(lambda: backend._generate(repeated, sampled))
    print(f"| sampled, the same {n} rows, each prompt read per row | {seconds:.1f} | {n * tokens / seconds:.0f} |")
    from transformers import DynamicCache

    # transformers' default cache grows by concatenating every new token onto the copied prompt cache
    backend._generation_cache = lambda length: DynamicCache(config=backend.model.config)
    seconds = timed(lambda: backend.generate_batch(repeated, sampled))
    print(f"| sampled, prompt read once, growing (dynamic) cache | {seconds:.1f} | {n * tokens / seconds:.0f} |")
    from iteralign.backends.llamacpp import LlamaCppBackend

    few_cpp = distinct[:max(1, rows // 4)]
    for lora in [None] + ([args.lora] if args.lora else []):
        engine = LlamaCppBackend("embedded", spec_id="bench-cpp", n_ctx=2048, lora_path=lora)
        engine.generate_batch(few_cpp[:1], greedy)  # warm-up
        seconds = timed(lambda: engine.generate_batch(few_cpp, greedy))
        print(f"| llama.cpp greedy, {len(few_cpp)} prompts one at a time{', with a GGUF LoRA' if lora else ''} | "
              f"{seconds:.1f} | {len(few_cpp) * tokens / seconds:.0f} |")
        engine.close()
    if not args.skip_bf16:
        bf16 = HFBackend("embedded", spec_id="bench-bf16", dtype="bfloat16", batch_size=rows)
        few = distinct[:8]
        seconds = timed(lambda: bf16.generate_batch(few, greedy))
        print(f"| greedy, 8 distinct prompts, bfloat16 | {seconds:.1f} | {8 * tokens / seconds:.0f} |")
        seconds = timed(lambda: backend.generate_batch(few, greedy))
        print(f"| greedy, 8 distinct prompts, float32 | {seconds:.1f} | {8 * tokens / seconds:.0f} |")


if __name__ == "__main__":
    main()
