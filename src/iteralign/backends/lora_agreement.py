"""Do two engines give the same model? Per-token log-probs of fixed texts under transformers (+
PEFT adapter) and under llama.cpp (+ the adapter converted to a GGUF LoRA).

In: the HF model folder and adapter, the base GGUF and the GGUF LoRA, and texts as token ids
with the position where the scored part (the answer) starts. Out: the log-prob each engine gives
each answer token, and the measure we compare them by: the mean absolute difference per token,
in nats. It is read directly ("the engines differ by 0.03 nats a token"), it weighs every scored
token alike, and it needs only the tokens scored, not the whole vocabulary as a KL would. The
same measure between the base and the adapted model is the adapter's own effect; a faithful
conversion keeps the engine-to-engine difference small against it. Both engines get the very
same token ids (the embedded HF model's tokenizer is the GGUF's own), so tokenisation is not
part of the difference.
"""
from __future__ import annotations

from pathlib import Path


def hf_token_logprobs(model_dir: str, adapter: Path | None, texts: list[tuple[list[int], int]]) -> list[list[float]]:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter))
    model.eval()
    out = []
    with torch.no_grad():
        for ids, start in texts:
            logits = model(torch.tensor([ids])).logits[0].float().log_softmax(-1)
            out.append([float(logits[i - 1, ids[i]]) for i in range(start, len(ids))])
    return out


def llamacpp_token_logprobs(gguf: Path, lora: Path | None, texts: list[tuple[list[int], int]],
                            n_threads: int = 2) -> list[list[float]]:
    import numpy as np
    from llama_cpp import Llama

    kwargs = {"lora_path": str(lora)} if lora is not None else {}
    llm = Llama(model_path=str(gguf), n_ctx=2048, logits_all=True, n_threads=n_threads, verbose=False, seed=0,
                **kwargs)
    out = []
    for ids, start in texts:
        llm.reset()
        llm.eval(ids)
        scores = np.asarray(llm.scores[: len(ids)], dtype=np.float64)
        top = scores.max(axis=1, keepdims=True)
        logprobs = scores - top - np.log(np.exp(scores - top).sum(axis=1, keepdims=True))
        out.append([float(logprobs[i - 1, ids[i]]) for i in range(start, len(ids))])
    del llm
    return out


def mean_abs_difference(a: list[list[float]], b: list[list[float]]) -> float:
    pairs = [(x, y) for row_a, row_b in zip(a, b, strict=True) for x, y in zip(row_a, row_b, strict=True)]
    return sum(abs(x - y) for x, y in pairs) / len(pairs)


def chat_texts(tokenizer, pairs: list[tuple[str, str]]) -> list[tuple[list[int], int]]:
    """(token ids of prompt + answer under the chat template, where the answer starts)."""
    out = []
    for prompt, answer in pairs:
        head = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                             tokenize=True)
        full = tokenizer.apply_chat_template([{"role": "user", "content": prompt},
                                              {"role": "assistant", "content": answer}], tokenize=True)
        head = list(head["input_ids"] if hasattr(head, "keys") else head)
        full = list(full["input_ids"] if hasattr(full, "keys") else full)
        out.append((full, len(head)))
    return out
