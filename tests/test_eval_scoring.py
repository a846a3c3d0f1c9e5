"""Log-likelihood scoring on the real embedded model (SmolLM2-135M-Instruct).

- HFBackend's packed fast path (`loglikelihood_choices`) gives the plain path's numbers
  (`loglikelihood`, one full forward pass per pair) within 1e-3, on TruthfulQA items (long
  shared primer, multi-token answers), one-token continuations, a context with a trailing space,
  and a pair whose token boundary does not line up.
- llama.cpp scores the same tokens as transformers, and its log-probs are close. The hf model is
  the *dequantised* Q4_1 GGUF, so both engines hold the same weights; what differs is arithmetic
  (llama.cpp multiplies Q4_1 weights with activations rounded to 8 bits, and keeps an f16 KV
  cache). That error grows with the number of tokens, so the check is per token: mean absolute
  difference over all continuation tokens <= 0.05 nats, and the two engines pick the same answer
  wherever transformers' top answer leads by more than 0.5 nats.
"""
from __future__ import annotations

import math

import pytest

from iteralign.backends.hf import split_continuation
from iteralign.backends.onednn_linear import available as onednn_available
from iteralign.evaluate.hhh import ab_prompt
from iteralign.evaluate.truthfulqa import load_truthfulqa_mc, qa_context


def test_split_continuation_lines_up_or_scores_the_straddling_token():
    assert split_continuation([1, 2], [1, 2, 3, 4]) == ([1, 2], [3, 4], True)
    # "Hello wor" + "ld": the context's last token is not in the whole; score from the first difference
    assert split_continuation([7, 8], [7, 9]) == ([7], [9], False)
    assert split_continuation([7, 8], [5, 6]) == ([5], [6], False)  # always keep one context token


@pytest.fixture(scope="module")
def hf_backend():
    from iteralign.backends.hf import HFBackend

    backend = HFBackend("embedded", spec_id="x")
    yield backend
    backend.close()


def truthfulqa_items(data_dir, n: int) -> list[tuple[str, list[str]]]:
    return [(qa_context(q.question), [" " + a for a, _ in q.mc2]) for q in load_truthfulqa_mc(data_dir, n)]


def plain_scores(backend, items) -> list[list[float]]:
    return [backend.loglikelihood([(context, c) for c in conts]) for context, conts in items]


def max_difference(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for row_a, row_b in zip(a, b, strict=True) for x, y in zip(row_a, row_b, strict=True))


@pytest.mark.slow
def test_fast_path_equals_plain_path_on_truthfulqa(hf_backend, data_dir):
    items = truthfulqa_items(data_dir, 4)
    plain = plain_scores(hf_backend, items)
    fast = hf_backend.loglikelihood_choices(items)
    assert max_difference(fast, plain) < 1e-3
    assert all(math.isfinite(x) and x < 0 for row in fast for x in row)
    # the primer was computed once as the shared prefix, and is reused by the next call
    prefix_tokens = hf_backend.scorer.prefix_cache[0]
    assert len(prefix_tokens) > 150
    again = hf_backend.loglikelihood_choices(items[::-1])
    assert max_difference(again[::-1], plain) < 1e-3
    assert hf_backend.scorer.prefix_cache[0] == prefix_tokens


@pytest.mark.slow
def test_packed_rows_and_passes_and_the_full_logits_path_give_the_same_numbers(hf_backend, data_dir):
    """Small rows and passes: many segments per row, many rows and passes (the tree mask keeps
    every continuation from seeing its siblings and its row neighbours); then the path for
    models whose logits are not lm_head(hidden) alone; then the linear kernel the timing did
    not pick (backends/onednn_linear.py)."""
    items = truthfulqa_items(data_dir, 6)
    plain = plain_scores(hf_backend, items)
    scorer = hf_backend.scorer
    saved = scorer.row_tokens, scorer.tokens_per_pass, scorer._head_only
    try:
        scorer.row_tokens, scorer.tokens_per_pass = 96, 192
        packed = hf_backend.loglikelihood_choices(items)
        assert scorer.last_plan["passes"] > 1 and scorer.last_plan["positions"] > 192
        assert max_difference(packed, plain) < 1e-3
        scorer._head_only = False
        assert max_difference(hf_backend.loglikelihood_choices(items), plain) < 1e-3
        scorer._head_only = True
        # the other linear kernel than the one the timing picked here (oneDNN or MKL)
        if onednn_available():
            scorer.linears.enabled = not scorer.linears.enabled
            assert max_difference(hf_backend.loglikelihood_choices(items), plain) < 1e-3
            scorer.linears.enabled = not scorer.linears.enabled
    finally:
        scorer.row_tokens, scorer.tokens_per_pass, scorer._head_only = saved


@pytest.mark.slow
def test_segment_attention_equals_one_mask_over_the_row_and_restores_the_model(hf_backend, data_dir):
    """Segment attention (each segment reads only the prefix and its own columns) against one
    tree mask over the whole row: small passes (and, for the row mask, rows of 256 with padding)
    put several segments in each row, and HHH's long two-answer segments ride along. Afterwards
    the model attends as before."""
    from iteralign.evaluate.hhh import load_hhh, mc_context

    items = truthfulqa_items(data_dir, 6) + [(mc_context(ex), [" " + c for c in ex.candidates])
                                             for ex in load_hhh(data_dir, None)[:3]]
    scorer = hf_backend.scorer
    assert scorer.segment_attention  # SmolLM2 (Llama) qualifies
    saved = scorer.row_tokens, scorer.tokens_per_pass
    try:
        scorer.row_tokens, scorer.tokens_per_pass = 256, 1024
        by_segments = hf_backend.loglikelihood_choices(items)
        # segment attention runs each pass as one row of segments end to end: no padding
        assert scorer.last_plan["padding"] == 0 and scorer.last_plan["passes"] > 1
        scorer.segment_attention = False
        by_row_mask = hf_backend.loglikelihood_choices(items)
        assert scorer.last_plan["padding"] > 0  # rows of 256 leave holes
    finally:
        scorer.row_tokens, scorer.tokens_per_pass = saved
        scorer.segment_attention = True
    assert max_difference(by_segments, by_row_mask) < 2e-4
    assert hf_backend.model.config._attn_implementation == "sdpa"
    assert max_difference(plain_scores(hf_backend, items[:2]), by_segments[:2]) < 1e-3


@pytest.mark.slow
def test_fast_path_equals_plain_path_on_odd_pairs(hf_backend, data_dir):
    items = truthfulqa_items(data_dir, 2) + [
        ("The capital of France is ", ["Paris.", "Rome, of course."]),  # trailing space moves
        ("Hello wor", ["ld", "ld, and then some"]),  # the boundary does not line up
        (ab_prompt("Can you help me?", "Sure, with what?", "No."), [" A", " B"]),  # one-token answers
    ]
    assert max_difference(hf_backend.loglikelihood_choices(items), plain_scores(hf_backend, items)) < 1e-3
    ctx, cont, aligned = hf_backend.encode_pair("Hello wor", "ld")
    assert not aligned and cont  # scored as the straddling token, not as an empty continuation


@pytest.mark.slow
def test_llamacpp_loglikelihood_close_to_hf(hf_backend, data_dir):
    pytest.importorskip("llama_cpp")
    from iteralign.backends.llamacpp import LlamaCppBackend

    items = truthfulqa_items(data_dir, 6)
    pairs = [(context, c) for context, conts in items for c in conts]
    llamacpp = LlamaCppBackend("embedded", spec_id="y", n_ctx=1024)
    try:
        assert llamacpp.supports_loglikelihood
        for context, continuation in pairs:  # the same tokens reach both engines
            assert llamacpp.encode_pair(context, continuation) == hf_backend.encode_pair(context, continuation)[:2]
        lc_scores = llamacpp.loglikelihood(pairs)
    finally:
        llamacpp.close()
    hf_scores = hf_backend.loglikelihood(pairs)
    tokens = sum(len(hf_backend.encode_pair(c, x)[1]) for c, x in pairs)
    per_token = sum(abs(a - b) for a, b in zip(lc_scores, hf_scores)) / tokens
    assert per_token <= 0.05, f"mean |llama.cpp - hf| = {per_token:.4f} nats per token"
    start = 0
    for _, conts in items:
        hf_q, lc_q = hf_scores[start:start + len(conts)], lc_scores[start:start + len(conts)]
        start += len(conts)
        ranked = sorted(hf_q, reverse=True)
        if ranked[0] - ranked[1] > 0.5:
            assert lc_q.index(max(lc_q)) == hf_q.index(ranked[0])


def test_both_float32_paths_stay_within_1e_3_of_float64_on_the_longest_hhh_answer(hf_backend, data_dir):
    """HHH's longest reply (867 tokens): a float32 error of 1e-5 per token adds up to ~1e-2.
    torch's float32 CPU log_softmax runs that high (lm-eval uses it, and sits 7.3e-3 above
    float64 here); x - logsumexp(x) and a float64 sum keep both paths within 1.3e-4 on AMD AVX2
    hosts and 5.2e-4 on an AVX-512 Xeon (the matmuls' float32 rounding; measured), so the bound
    is the issue's 1e-3, still 7x under the old arithmetic's error."""
    import torch

    from iteralign.backends.hf import HFBackend
    from iteralign.evaluate.hhh import load_hhh, mc_context

    longest = max(load_hhh(data_dir, None), key=lambda ex: max(len(c) for c in ex.candidates))
    pair = (mc_context(longest), " " + max(longest.candidates, key=len))
    ctx, cont, _ = hf_backend.encode_pair(*pair)
    assert len(cont) > 800
    reference = HFBackend("embedded", spec_id="f64", dtype="float64")
    try:
        with torch.inference_mode():
            logits = reference.model(input_ids=torch.tensor([ctx + cont])).logits[0, len(ctx) - 1:-1]
        exact = math.fsum(torch.log_softmax(logits, -1).gather(-1, torch.tensor(cont)[:, None]).squeeze(-1).tolist())
    finally:
        reference.close()
    assert abs(hf_backend.loglikelihood([pair])[0] - exact) < 1e-3
    assert abs(hf_backend.loglikelihood_choices([(pair[0], [pair[1]])])[0][0] - exact) < 1e-3
