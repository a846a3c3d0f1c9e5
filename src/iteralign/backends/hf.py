"""transformers backend: batched generation, log-likelihood scoring, a LoRA adapter on top.

In: a base model ("embedded", a local folder, or a hub id) and optionally a PEFT adapter folder.
Out: texts for chats (left-padded batches, seeded sampling) and log P(continuation | context).
This is also the model family `train/` fine-tunes, so "the model after iteration k" is simply
this backend with `adapter` set. Remote code is never trusted unless the config says so.
"""
from __future__ import annotations

import logging
from pathlib import Path

from iteralign.backends.allocator import keep_freed_memory
from iteralign.backends.base import Backend, Chat, GenParams
from iteralign.backends.embedded import embedded_hf_dir, is_embedded
from iteralign.backends.hf_scoring import PackedScorer, common_length
from iteralign.errors import ModelSpecError

log = logging.getLogger(__name__)


def resolve_hf_model(model: str) -> str:
    """Where transformers should load the base model from."""
    if is_embedded(model):
        return str(embedded_hf_dir())
    return model


def torch_dtype(name: str):
    import torch

    # float64 is not offered in configs: benchmarks/float64_reference.py uses it as a referee
    return {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
            "float64": torch.float64}[name]


class HFBackend(Backend):
    supports_loglikelihood = True

    def __init__(self, model: str, adapter: str | None = None, *, spec_id: str, dtype: str = "float32",
                 device: str = "cpu", batch_size: int = 8, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec_id = spec_id
        self.batch_size = batch_size
        if device == "cpu":  # before the model's tensors exist: CPU passes reuse freed memory (allocator.py)
            keep_freed_memory()
        path = resolve_hf_model(model)
        self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        kwargs = {"dtype": torch_dtype(dtype), "trust_remote_code": trust_remote_code}
        if device == "auto":
            kwargs["device_map"] = "auto"
        self.model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
        if adapter:
            if not (Path(adapter) / "adapter_config.json").is_file():
                raise ModelSpecError(f"{adapter}: not a PEFT adapter folder (no adapter_config.json)")
            from peft import PeftModel

            # merged into the weights: the same model to float rounding, and generation no longer
            # pays for the adapter's extra matmuls (1.8x slower unmerged on 2 cores)
            self.model = PeftModel.from_pretrained(self.model, adapter).merge_and_unload()
        if device != "auto":
            self.model.to(device)
        self.model.eval()
        self.device = next(self.model.parameters()).device
        # scores are cached across runs (the eval cache): a model folder re-written in place must
        # not be served its old scores, so its files' names, sizes and times join the identity
        self.scoring_identity = scoring_identity(spec_id, path)
        self.scorer = PackedScorer(self.model, self.tokenizer.pad_token_id)

    def _encode_chats(self, chats: list[Chat]):
        texts = [self.tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)

    def generate_batch(self, chats: list[Chat], params: GenParams) -> list[str]:
        """One answer per chat. A chat asked several times in one batch (rejection sampling asks
        each failure for N samples) is read once: its prompt's KV cache is computed once and
        copied for every sample, so N samples cost one prefill and N decodes."""
        import torch

        unique: dict[str, int] = {}
        index = [unique.setdefault(repr(chat), len(unique)) for chat in chats]
        firsts = {k: i for i, k in reversed(list(enumerate(index)))}
        distinct = [chats[firsts[k]] for k in range(len(unique))]
        if params.temperature == 0 and len(distinct) < len(chats):  # greedy: the same answer every time
            answers = self._generate(distinct, params)
            return [answers[k] for k in index]
        if len(distinct) == len(chats):
            return self._generate(chats, params)
        inputs = self._encode_chats(distinct)
        ids, mask = inputs["input_ids"], inputs["attention_mask"]
        cache = self._generation_cache(ids.shape[1] + params.max_new_tokens)
        with torch.inference_mode():
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            # every prompt token but the last: generate() then reads the last one itself
            self.model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                       past_key_values=cache, use_cache=True, logits_to_keep=1)
        rows = torch.tensor(index, device=self.device)
        for layer in cache.layers:  # each sample gets its own copy of its prompt's keys and values
            layer.keys, layer.values = layer.keys.index_select(0, rows), layer.values.index_select(0, rows)
            layer.batch_size = len(index)
        return self._generate_from(ids.index_select(0, rows), mask.index_select(0, rows), params, cache)

    def _generate(self, chats: list[Chat], params: GenParams) -> list[str]:
        inputs = self._encode_chats(chats)
        ids = inputs["input_ids"]
        return self._generate_from(ids, inputs["attention_mask"], params,
                                   self._generation_cache(ids.shape[1] + params.max_new_tokens))

    def _generation_cache(self, length: int):
        """A preallocated KV cache written in place. A growing cache concatenates every new token
        onto all of itself, a cost that grows with rows x length: 31 of 78 s in a profile of 128
        rows x 32 tokens from 200-token prompts, 4% at the demo's 24 tokens (2 cores;
        benchmarks/generation_speed.py)."""
        from transformers import StaticCache

        return StaticCache(config=self.model.config, max_cache_len=length)

    def _generate_from(self, ids, mask, params: GenParams, cache) -> list[str]:
        import torch

        sample = params.temperature > 0
        torch.manual_seed(params.seed)
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                past_key_values=cache,
                max_new_tokens=params.max_new_tokens,
                do_sample=sample,
                temperature=params.temperature if sample else None,
                top_p=params.top_p if sample else None,
                top_k=None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new_tokens = output[:, ids.shape[1]:]
        return [t.strip() for t in self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]

    # ---- log-likelihood scoring ---------------------------------------------------------------
    # Both paths score the token sequence lm-evaluation-harness scores (HFLM): trailing
    # whitespace of the context moves to the continuation, context = enc(context),
    # continuation = enc(context + continuation)[len(context):], and the model reads
    # context tokens + continuation tokens (see split_continuation for the rare pair whose
    # boundary does not line up). enc() keeps the tokenizer's own default for special tokens, as
    # lm-eval does since it made add_bos_token default to None: a tokenizer set up to add BOS
    # (Llama 2, Gemma) gets it; SmolLM2's is not, so the embedded model sees no BOS.


    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text)["input_ids"]

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int], bool]:
        """(context tokens, continuation tokens, whether enc(context) is a prefix of the whole)."""
        stripped = context.rstrip()
        continuation = context[len(stripped):] + continuation
        if not stripped:  # lm-eval: an empty context is the BOS (else EOS) token alone
            bos = self.tokenizer.bos_token_id
            prefix = [bos if bos is not None else self.tokenizer.eos_token_id]
            return prefix, self.tokenizer(continuation, add_special_tokens=False)["input_ids"], True
        return split_continuation(self._encode(stripped), self._encode(stripped + continuation))

    def loglikelihood(self, pairs: list[tuple[str, str]]) -> list[float]:
        """Sum of log-probabilities of each continuation's tokens given its context, one full
        forward pass per pair (batched, left-padded, positions counted from each row's start)."""
        import torch

        encoded = [self.encode_pair(context, continuation)[:2] for context, continuation in pairs]
        # batch similar lengths together (little padding); scores go back in the caller's order
        order = sorted(range(len(encoded)), key=lambda k: len(encoded[k][0]) + len(encoded[k][1]))
        scores: list[float] = [0.0] * len(encoded)
        pad = self.tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            batch = [encoded[k] for k in order[start:start + self.batch_size]]
            seqs = [ctx + cont for ctx, cont in batch]
            width = max(len(s) for s in seqs)
            keep = max(len(cont) for _, cont in batch) + 1  # logits needed: one before each continuation token
            input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=self.device)
            mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=self.device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                                    use_cache=False, logits_to_keep=keep).logits.float()
            # position width-keep+k predicts the next token. x - logsumexp(x), not log_softmax: torch's
            # float32 CPU log_softmax runs about 7e-6 high per token (docs/benchmarks.md, the float64 referee)
            logits = logits[:, :-1]
            token_lp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
            for row, (k, (_, cont)) in enumerate(zip(order[start:start + self.batch_size], batch)):
                n = len(cont)
                if n:  # an empty continuation has probability 1
                    targets = input_ids[row, width - n:]
                    scores[k] = float(token_lp[row, keep - 1 - n:].gather(-1, targets.unsqueeze(-1)).double().sum())
        return scores

    def encode_groups(self, items: list[tuple[str, list[str]]]):
        """(packable [(context tokens, [continuation tokens])], where each packable item's scores
        go [(item, [choice])], plain [(item, choice, context, continuation)] for pairs whose
        token boundary does not line up). The same split as encode_pair, pair for pair, with the
        texts tokenized in two batched calls (the fast tokenizer's threads; one call per pair
        took 8.5 s for TruthfulQA's 6,700 pairs)."""
        pending = [(i, j, context, continuation) for i, (context, conts) in enumerate(items)
                   for j, continuation in enumerate(conts) if context.rstrip()]
        contexts = list(dict.fromkeys(context.rstrip() for _, _, context, _ in pending))
        context_ids = dict(zip(contexts, self._encode_many(contexts)))
        wholes = self._encode_many([context.rstrip() + context[len(context.rstrip()):] + continuation
                                    for _, _, context, continuation in pending])
        encoded = {(i, j): split_continuation(context_ids[context.rstrip()], whole)
                   for (i, j, context, _), whole in zip(pending, wholes)}
        packed, where, plain = [], [], []
        for i, (context, conts) in enumerate(items):
            ctx_tokens, rows = None, []
            for j, continuation in enumerate(conts):
                ctx, cont, aligned = encoded.get((i, j)) or self.encode_pair(context, continuation)
                if aligned and cont:
                    ctx_tokens = ctx
                    rows.append((j, cont))
                elif cont or not aligned:
                    plain.append((i, j, context, continuation))
            if rows:
                packed.append((ctx_tokens, [cont for _, cont in rows]))
                where.append((i, [j for j, _ in rows]))
        return packed, where, plain

    def _encode_many(self, texts: list[str]) -> list[list[int]]:
        return self.tokenizer(texts)["input_ids"] if texts else []

    def loglikelihood_choices(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        """log P(continuation | context) for every continuation of every (context, continuations)
        item, each context and each continuation read once (hf_scoring.PackedScorer: shared
        prefix once, tree-masked packed rows). Same numbers as `loglikelihood` to float rounding
        (< 1e-3). Pairs whose context tokens are not a prefix of the whole's tokens take the
        plain path."""
        results = [[0.0] * len(conts) for _, conts in items]
        packed, where, plain = self.encode_groups(items)
        if plain:
            log.debug("%d pairs take the plain scoring path (token boundary does not line up)", len(plain))
            for (i, j, _, _), value in zip(plain, self.loglikelihood([(c, x) for _, _, c, x in plain])):
                results[i][j] = value
        for (i, columns), scores in zip(where, self.scorer.score(packed)):
            for j, value in zip(columns, scores):
                results[i][j] = value
        return results

    def close(self) -> None:
        self.model = None
        self.scorer = None


def scoring_identity(spec_id: str, path: str) -> str:
    return f"{spec_id}@{weights_fingerprint(path)}" if Path(path).is_dir() else spec_id


def weights_fingerprint(folder: str | Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(Path(folder).iterdir()):
        if file.suffix in (".safetensors", ".bin", ".json") and file.is_file():
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


def split_continuation(ctx: list[int], whole: list[int]) -> tuple[list[int], list[int], bool]:
    """(context tokens, continuation tokens, aligned) from enc(context) and enc(context + continuation).

    Aligned (enc(context) is a prefix of the whole, true for every benchmark prompt here): the
    lm-eval split. Otherwise a token straddles the boundary ("Hello wor" + "ld"), and lm-eval
    would score enc(context) followed by the whole's tail, a sequence the tokenizer never makes
    (here: an empty continuation, log-prob 0). Instead the whole's own tokens are scored from
    the first one that differs from the context's, so the straddling token counts as continuation.
    """
    if whole[:len(ctx)] == ctx:
        return ctx, whole[len(ctx):], True
    common = max(1, common_length(ctx, whole, len(whole) - 1))
    return whole[:common], whole[common:], False
