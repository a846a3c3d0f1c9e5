"""transformers backend: batched generation, log-likelihood scoring, a LoRA adapter on top.

In: a base model ("embedded", a local folder, or a hub id) and optionally a PEFT adapter folder.
Out: texts for chats (left-padded batches, seeded sampling) and log P(continuation | context).
This is also the model family `train/` fine-tunes, so "the model after iteration k" is simply
this backend with `adapter` set. Remote code is never trusted unless the config says so.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from iteralign.backends.base import Backend, Chat, GenParams
from iteralign.backends.embedded import embedded_hf_dir, is_embedded
from iteralign.errors import ModelSpecError

log = logging.getLogger(__name__)


def resolve_hf_model(model: str) -> str:
    """Where transformers should load the base model from."""
    if is_embedded(model):
        return str(embedded_hf_dir())
    return model


def torch_dtype(name: str):
    import torch

    return {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class HFBackend(Backend):
    supports_loglikelihood = True

    def __init__(self, model: str, adapter: str | None = None, *, spec_id: str, dtype: str = "float32",
                 device: str = "cpu", batch_size: int = 8, trust_remote_code: bool = False):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.spec_id = spec_id
        self.batch_size = batch_size
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
        self._prefix_cache: tuple[list[int], list] | None = None  # see _shared_prefix

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

    # budgets per forward pass (CPU-sized; raise them on a GPU)
    contexts_per_pass = 32  # more contexts per pass = more continuations to pack by length
    context_tokens_per_pass = 4096  # context tokens in one batched context pass
    continuation_tokens_per_pass = 1024  # continuation tokens per pass (x vocab floats of logits)
    kv_tokens_per_pass = 32768  # context KV positions copied for one continuation pass
    min_shared_prefix = 8  # tokens; shorter common prefixes are not worth a separate pass

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
            token_lp = torch.log_softmax(logits[:, :-1], dim=-1)  # position width-keep+k predicts the next token
            for row, (k, (_, cont)) in enumerate(zip(order[start:start + self.batch_size], batch)):
                n = len(cont)
                if n:  # an empty continuation has probability 1
                    targets = input_ids[row, width - n:]
                    scores[k] = float(token_lp[row, keep - 1 - n:].gather(-1, targets.unsqueeze(-1)).sum())
        return scores

    def loglikelihood_choices(self, items: list[tuple[str, list[str]]]) -> list[list[float]]:
        """log P(continuation | context) for every continuation of every (context, continuations)
        item, computing each context once: a batched pass over the contexts (after one pass over
        the prefix all of them share, e.g. a few-shot primer) keeps their KV cache, and the
        continuations then run on copies of it. Same numbers as `loglikelihood` (to float
        rounding, < 1e-3), far less work when contexts are long and continuations short. Pairs whose context tokens are not a
        prefix of the whole's tokens take the plain path."""
        import torch

        results = [[0.0] * len(conts) for _, conts in items]
        jobs, plain = [], []
        for i, (context, conts) in enumerate(items):
            ctx_tokens, rows = None, []
            for j, continuation in enumerate(conts):
                ctx, cont, aligned = self.encode_pair(context, continuation)
                if aligned and cont:
                    ctx_tokens = ctx
                    rows.append((j, cont))
                else:
                    plain.append((i, j, context, continuation))
            if rows:
                jobs.append((i, ctx_tokens, rows))
        if plain:
            log.debug("%d pairs take the plain scoring path (token boundary does not line up)", len(plain))
            for (i, j, _, _), value in zip(plain, self.loglikelihood([(c, x) for _, _, c, x in plain])):
                results[i][j] = value
        if not jobs:
            return results
        try:
            with torch.inference_mode():
                self._score_jobs(jobs, results)
        except NotImplementedError as exc:  # a model whose cache cannot be reused: same numbers, slower
            log.warning("%s; scoring pair by pair", exc)
            for i, _, rows in jobs:
                context, conts = items[i]
                for (j, _), value in zip(rows, self.loglikelihood([(context, conts[j]) for j, _ in rows])):
                    results[i][j] = value
        return results

    def _score_jobs(self, jobs, results) -> None:
        prefix_len, prefix_kv = self._shared_prefix([ctx for _, ctx, _ in jobs])
        jobs = sorted(jobs, key=lambda job: len(job[1]))  # similar lengths together: little padding
        batch: list = []
        for job in jobs:
            width = len(job[1]) - prefix_len  # the longest so far, as jobs are sorted
            if batch and (len(batch) >= self.contexts_per_pass
                          or (len(batch) + 1) * width > self.context_tokens_per_pass):
                self._score_context_batch(batch, prefix_len, prefix_kv, results)
                batch = []
            batch.append(job)
        self._score_context_batch(batch, prefix_len, prefix_kv, results)

    def _new_cache(self, kv):
        from transformers import DynamicCache

        if kv:
            return DynamicCache(ddp_cache_data=kv, config=self.model.config)
        return DynamicCache(config=self.model.config)

    @staticmethod
    def _cache_tensors(cache) -> list:
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _shared_prefix(self, contexts: list[list[int]]) -> tuple[int, list]:
        """(length, per-layer (keys, values)) of the token prefix all contexts share, leaving each
        context at least one token of its own (its last position predicts the continuation).
        The last prefix is kept, so a primer shared across calls is computed once."""
        import torch

        if len(contexts) < 2:
            return 0, []
        first = contexts[0]
        length = min(len(c) for c in contexts) - 1
        for other in contexts[1:]:
            length = _common_length(first, other, length)
        if length < self.min_shared_prefix:
            return 0, []
        cached = self._prefix_cache
        if cached is not None:
            common = _common_length(cached[0], first, length)
            if common >= self.min_shared_prefix and 2 * common >= length:
                kv = [(k[:, :, :common], v[:, :, :common]) for k, v in cached[1]]
                self._prefix_cache = (cached[0][:common], kv)
                return common, kv
        ids = torch.tensor([first[:length]], device=self.device)
        out = self.model(input_ids=ids, past_key_values=self._new_cache(None), use_cache=True, logits_to_keep=1)
        kv = self._cache_tensors(out.past_key_values)
        self._prefix_cache = (list(first[:length]), kv)
        return length, kv

    def _score_context_batch(self, batch, prefix_len: int, prefix_kv, results) -> None:
        import torch

        pad = self.tokenizer.pad_token_id
        rests = [ctx[prefix_len:] for _, ctx, _ in batch]
        width, rows = max(len(r) for r in rests), len(batch)
        # left-pad the contexts so each one's last token is in the last column (one logits row);
        # the holes between prefix and context are masked, positions count real tokens only
        ids = torch.full((rows, width), pad, dtype=torch.long)
        mask = torch.zeros((rows, prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        positions = torch.zeros((rows, width), dtype=torch.long)
        for b, rest in enumerate(rests):
            n = len(rest)
            ids[b, width - n:] = torch.tensor(rest)
            mask[b, prefix_len + width - n:] = 1
            positions[b, width - n:] = torch.arange(prefix_len, prefix_len + n)
        expanded = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in prefix_kv]
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), past_key_values=self._new_cache(expanded),
                         use_cache=True, logits_to_keep=1)
        last_lp = torch.log_softmax(out.logits[:, -1].float(), dim=-1)
        kv = self._cache_tensors(out.past_key_values)
        if any(k.shape[-2] != prefix_len + width for k, _ in kv):
            # a sliding-window or otherwise trimmed cache cannot be extended row by row
            raise NotImplementedError(f"{self.spec_id}: KV cache reuse needs a full cache; use loglikelihood")
        conts = []  # (row in batch, item, choice, tokens) for continuations of 2+ tokens
        for b, (i, _, choices) in enumerate(batch):
            for j, tokens in choices:
                results[i][j] = float(last_lp[b, tokens[0]])  # the context's last position predicts it
                if len(tokens) > 1:
                    conts.append((b, i, j, tokens))
        conts.sort(key=lambda c: len(c[3]))
        kv_len, start = prefix_len + width, 0
        while start < len(conts):
            end, real = start + 1, len(conts[start][3]) - 1
            # grow the pass while its new tokens and its copies of the context KV stay in budget,
            # and while padding (every row is as long as the longest) wastes at most a quarter
            while end < len(conts):
                rows, longest = end + 1 - start, len(conts[end][3]) - 1
                if (rows * longest > self.continuation_tokens_per_pass or rows * kv_len > self.kv_tokens_per_pass
                        or rows * longest > 1.25 * (real + longest)):
                    break
                real += longest
                end += 1
            self._score_continuations(conts[start:end], kv, mask, [len(r) for r in rests], prefix_len, results)
            start = end

    def _score_continuations(self, conts, kv, ctx_mask, rest_lens, prefix_len: int, results) -> None:
        import torch

        pad = self.tokenizer.pad_token_id
        rows, length = len(conts), max(len(c[3]) for c in conts) - 1
        # right-pad: padding after a row's real tokens cannot change them (causal attention)
        ids = torch.full((rows, length), pad, dtype=torch.long)
        targets = torch.zeros((rows, length), dtype=torch.long)
        cont_mask = torch.zeros((rows, length), dtype=torch.long)
        positions = torch.zeros((rows, length), dtype=torch.long)
        for r, (b, _, _, tokens) in enumerate(conts):
            n = len(tokens) - 1  # the last token is only predicted, never read
            ids[r, :n] = torch.tensor(tokens[:-1])
            targets[r, :n] = torch.tensor(tokens[1:])
            cont_mask[r, :n] = 1
            start = prefix_len + rest_lens[b]
            positions[r] = torch.arange(start, start + length)
        index = torch.tensor([c[0] for c in conts], device=self.device)
        cache = self._new_cache([(k.index_select(0, index), v.index_select(0, index)) for k, v in kv])
        mask = torch.cat([ctx_mask.to(self.device).index_select(0, index), cont_mask.to(self.device)], dim=1)
        logits = self.model(input_ids=ids.to(self.device), attention_mask=mask, position_ids=positions.to(self.device),
                            past_key_values=cache, use_cache=True).logits.float()
        # normalise only the real (unpadded) positions: the softmax over the vocabulary is not free
        real = cont_mask.to(self.device).bool()
        picked = logits[real]
        token_lp = picked.gather(-1, targets.to(self.device)[real].unsqueeze(-1)).squeeze(-1)
        token_lp = (token_lp - torch.logsumexp(picked, dim=-1)).tolist()
        offset = 0  # rows' real positions come out in row order
        for _, i, j, tokens in conts:
            results[i][j] += math.fsum(token_lp[offset:offset + len(tokens) - 1])
            offset += len(tokens) - 1

    def close(self) -> None:
        self.model = None
        self._prefix_cache = None


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
    common = max(1, _common_length(ctx, whole, len(whole) - 1))
    return whole[:common], whole[common:], False


def _common_length(a: list[int], b: list[int], limit: int) -> int:
    n = 0
    while n < limit and n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n
