"""llama-cpp-python in process: a GGUF model on the CPU, with JSON-schema constrained output.

In: "embedded" or a .gguf path. Out: chat completions, one request per call (llama.cpp runs
one sequence at a time in process), and log P(continuation | context) for scoring.
A JSON schema in the params is passed as
`response_format={"type": "json_object", "schema": ...}`, which llama.cpp compiles to a grammar,
so the judge's reply always parses. Each call is seeded, so a re-run gives the same text.

Scoring uses a second `Llama` instance opened with `logits_all=True` on first use (the weights
are memory-mapped, so they are shared, not copied). Prompt log-probs from llama-cpp-python's
`echo=True` are wrong upstream, so log-probs are computed here from `llm.scores` after `eval`.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from iteralign.backends.base import Backend, Chat, GenParams
from iteralign.backends.embedded import embedded_gguf, is_embedded
from iteralign.backends.hf import split_continuation  # a pure function; hf.py imports torch lazily
from iteralign.backends.hf_scoring import common_length
from iteralign.errors import ModelSpecError

log = logging.getLogger(__name__)


def resolve_gguf(model: str) -> Path:
    if is_embedded(model):
        return embedded_gguf()
    path = Path(model)
    if not path.is_file():
        raise ModelSpecError(f"{model}: GGUF file not found (models.*.model for backend llamacpp)")
    return path


class LlamaCppBackend(Backend):
    supports_json_schema = True
    supports_loglikelihood = True

    def __init__(self, model: str, *, spec_id: str, n_ctx: int = 4096, n_threads: int | None = None,
                 lora_path: str | None = None):
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ModelSpecError(
                "backend llamacpp needs llama-cpp-python: pip install 'llama-cpp-python==0.3.36' (make demo does)"
            ) from None
        self.spec_id = spec_id
        self.model_path = str(resolve_gguf(model))
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.lora_path = lora_path  # a GGUF LoRA applied on top (an iteration's converted adapter)
        lora = {"lora_path": lora_path} if lora_path else {}
        self.llm = Llama(model_path=self.model_path, n_ctx=n_ctx, n_threads=self.n_threads, seed=0, verbose=False,
                         **lora)
        self._scorer = None  # the logits_all instance, opened on first loglikelihood call

    def generate_batch(self, chats: list[Chat], params: GenParams) -> list[str]:
        texts = []
        for chat in chats:
            kwargs = {}
            if params.json_schema is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": params.json_schema}
            self.llm.reset()  # same seed + fresh state = same text on a re-run
            reply = self.llm.create_chat_completion(
                messages=chat,
                max_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                seed=params.seed,
                **kwargs,
            )
            texts.append((reply["choices"][0]["message"]["content"] or "").strip())
        return texts

    # ---- log-likelihood -------------------------------------------------------------------
    # The same split as HFBackend.encode_pair (lm-evaluation-harness's): the context's trailing
    # whitespace moves to the continuation, context = tok(context), continuation =
    # tok(context + continuation)[len(context):] (split_continuation). tokenize(add_bos=True)
    # adds BOS only where the GGUF says the model wants one (the embedded SmolLM2 does not).

    def _scoring_llm(self):
        if self._scorer is None:
            from llama_cpp import Llama

            # scores holds n_ctx x n_vocab floats: 0.8 GB for SmolLM2 at n_ctx=4096
            lora = {"lora_path": self.lora_path} if self.lora_path else {}
            self._scorer = Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                                 logits_all=True, seed=0, verbose=False, **lora)
        return self._scorer

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        llm = self._scoring_llm()
        stripped = context.rstrip()
        continuation = context[len(stripped):] + continuation
        if not stripped:
            bos = llm.token_bos()
            return [bos if bos >= 0 else llm.token_eos()], llm.tokenize(continuation.encode("utf-8"), add_bos=False)
        ctx = llm.tokenize(stripped.encode("utf-8"))
        whole = llm.tokenize((stripped + continuation).encode("utf-8"))
        return split_continuation(ctx, whole)[:2]

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[float]:
        llm = self._scoring_llm()
        scores: list[float] = [0.0] * len(pairs)
        by_context: dict[str, list[int]] = {}
        for index, (context, _) in enumerate(pairs):
            by_context.setdefault(context, []).append(index)
        for indices in by_context.values():  # each context is evaluated once, then rewound to
            encoded = [self.encode_pair(*pairs[i]) for i in indices]
            ctx = encoded[0][0]
            longest = len(ctx) + max(len(cont) for _, cont in encoded)
            if longest > self.n_ctx:
                raise ModelSpecError(f"{self.spec_id}: scoring needs {longest} tokens but n_ctx is {self.n_ctx}; "
                                     "raise n_ctx in the model spec")
            # keep the KV cache of what this context shares with the last one (the few-shot
            # primer): eval() drops everything after n_tokens and reads only the new tokens
            kept = common_length(list(llm.input_ids[:llm.n_tokens]), ctx, len(ctx) - 1)
            llm.n_tokens = kept
            llm.eval(ctx[kept:])
            first = _log_softmax(llm.scores[len(ctx) - 1])
            for i, (_, cont) in zip(indices, encoded):
                if not cont:
                    continue
                total = float(first[cont[0]])
                if len(cont) > 1:
                    llm.n_tokens = len(ctx)  # drop the previous continuation; eval() trims the KV cache
                    llm.eval(cont[:-1])
                    # every continuation position at once (one vectorised log-softmax, not one per token)
                    rows = _log_softmax(llm.scores[len(ctx):len(ctx) + len(cont) - 1])
                    total += float(rows[np.arange(len(cont) - 1), cont[1:]].sum())
                scores[i] = total
        return scores

    def close(self) -> None:
        self.llm.close()
        if self._scorer is not None:
            self._scorer.close()


def _log_softmax(logits) -> np.ndarray:
    """Over the last axis (one row or many), in float64."""
    rows = np.asarray(logits, dtype=np.float64)
    shifted = rows - rows.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
