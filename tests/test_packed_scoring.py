"""The packed scoring plan (backends/hf_scoring.py), the scoring call cache and the lazy model.

Pure logic here (no model): each segment holds its context rest then every continuation but its
last token, with the right predicting offsets and positions; packing never splits a segment,
fills rows first-fit and pads only row tails; passes respect their token budget. Scores through
a `CachedModel` are served from the cache the second time (no backend call), and a model that
is never needed is never loaded. On the real model (test_eval_scoring.py) the packed numbers
equal one forward pass per pair.
"""
from __future__ import annotations

import random

from iteralign.backends.cached import CachedModel
from iteralign.backends.hf_scoring import (ancestor_mask, group_passes, make_segment, pack_rows, plan_counts,
                                           shared_prefix_length)
from iteralign.backends.lazy import LazyBackend
from iteralign.evaluate.scoring import ChoiceItem, score_choices
from iteralign.store.call_cache import CallCache


def test_a_segment_is_the_context_rest_then_each_continuation_but_its_last_token():
    segment = make_segment(3, [1, 2, 3, 4, 5], [[10, 11, 12], [20], [30, 31]], prefix_len=3)
    assert segment.tokens == [4, 5, 10, 11, 30]
    assert segment.parent == [-1, 0, 1, 2, 1]  # each continuation hangs off the context's last token
    # every continuation starts at the position right after the context
    assert segment.position == [3, 4, 5, 6, 5]
    # (offset of the token whose logits predict, continuation, target)
    assert segment.picks == [(1, 0, 10), (2, 0, 11), (3, 0, 12), (1, 1, 20), (1, 2, 30), (4, 2, 31)]


def test_continuations_share_the_positions_of_the_tokens_they_begin_with():
    segment = make_segment(0, [1, 2], [[10, 11, 12], [10, 11, 13, 14], [10, 15, 16], [17]], prefix_len=0)
    # 10 and 11 run once for the first two continuations, 10 once for the first three
    assert segment.tokens == [1, 2, 10, 11, 13, 15]
    assert segment.parent == [-1, 0, 1, 2, 3, 2]
    assert segment.position == [0, 1, 2, 3, 4, 3]
    assert segment.picks == [(1, 0, 10), (2, 0, 11), (3, 0, 12),
                             (1, 1, 10), (2, 1, 11), (3, 1, 13), (4, 1, 14),
                             (1, 2, 10), (2, 2, 15), (5, 2, 16), (1, 3, 17)]
    # each token sees itself and its ancestors, never a sibling branch
    assert ancestor_mask(segment.parent).int().tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [1, 1, 1, 0, 0, 1],
    ]


def test_an_empty_continuation_is_not_scored():
    assert make_segment(0, [1, 2], [[], [7]], prefix_len=0).picks == [(1, 1, 7)]


def test_packing_fills_rows_without_splitting_and_pads_only_row_tails():
    rng = random.Random(0)
    segments = [make_segment(i, [1] * rng.randint(1, 30), [[2] * rng.randint(1, 20) for _ in range(rng.randint(1, 6))],
                             prefix_len=0) for i in range(300)]
    rows = pack_rows(segments, row_tokens=256)
    assert sorted(s.item for row in rows for s in row) == list(range(300))  # each exactly once
    lengths = [sum(len(s.tokens) for s in row) for row in rows]
    assert max(lengths) <= 256
    passes = group_passes(rows, tokens_per_pass=2048)
    plan = plan_counts([(batch, max(sum(len(s.tokens) for s in r) for r in batch)) for batch in passes], 0)
    assert plan["padding"] / plan["positions"] < 0.05  # first-fit decreasing leaves almost no holes
    assert all(len(batch) * 256 <= 2048 for batch in passes)
    assert plan["scored"] == sum(len(s.picks) for s in segments)


def test_a_segment_longer_than_a_row_gets_its_own_row():
    long = make_segment(0, [1] * 400, [[2, 3]], prefix_len=0)
    short = make_segment(1, [1] * 10, [[2, 3]], prefix_len=0)
    rows = pack_rows([short, long], row_tokens=256)
    assert [[s.item for s in row] for row in rows] == [[0], [1]]
    assert [len(batch) for batch in group_passes(rows, tokens_per_pass=512)] == [1, 1]


def test_the_shared_prefix_leaves_every_context_a_token_of_its_own():
    assert shared_prefix_length([[1, 2, 3, 4], [1, 2, 3, 5, 6]], minimum=2) == 3
    assert shared_prefix_length([[1, 2, 3], [1, 2, 3, 4]], minimum=2) == 2
    assert shared_prefix_length([[1, 2, 3], [1, 9]], minimum=2) == 0  # too short to be worth a pass
    assert shared_prefix_length([[1, 2, 3]], minimum=1) == 0


class CountingScorer:
    """A backend with the grouped entry point that counts what reaches it."""
    supports_loglikelihood = True

    def __init__(self, spec_id="fake:counting", offset=0.0):
        self.spec_id, self.offset, self.calls = spec_id, offset, 0

    def loglikelihood_choices(self, groups):
        self.calls += 1
        return [[-len(c) - self.offset for c in conts] for _, conts in groups]

    def close(self):
        pass


def test_scores_go_through_the_call_cache(tmp_path):
    items = [ChoiceItem(f"context {i}", [" yes", " no way"]) for i in range(600)]  # 3 chunks of 256 contexts
    cache = CallCache(tmp_path / "calls.sqlite")
    first = CachedModel(CountingScorer(), cache)
    scores = score_choices(first, items)
    assert first.backend.calls == 3 and first.counts.made == 3
    again = CachedModel(CountingScorer(), cache)
    assert score_choices(again, items) == scores
    assert again.backend.calls == 0 and again.counts.cached == 3
    other = CachedModel(CountingScorer("fake:another-model", offset=1.0), cache)
    assert score_choices(other, items) != scores  # another model is never served this one's scores
    assert other.backend.calls == 3
    cache.close()


def test_a_model_whose_scores_are_all_cached_is_never_loaded(tmp_path):
    cache = CallCache(tmp_path / "calls.sqlite")
    items = [ChoiceItem("c", [" a", " bb"])]
    built = []

    def build():
        built.append(1)
        return CountingScorer()

    lazy = LazyBackend("fake:counting", build, supports_loglikelihood=True, scoring_identity="fake:counting")
    scores = score_choices(CachedModel(lazy, cache), items)
    assert built == [1] and lazy.built
    lazy.close()
    fresh = LazyBackend("fake:counting", build, supports_loglikelihood=True, scoring_identity="fake:counting")
    assert score_choices(CachedModel(fresh, cache), items) == scores
    assert built == [1] and not fresh.built
    fresh.close()
    cache.close()


def test_a_cached_score_list_that_does_not_fit_is_scored_again(tmp_path):
    from iteralign.store.call_cache import request_key

    cache = CallCache(tmp_path / "calls.sqlite")
    groups = [("c", [" a", " bb"])]
    key = request_key("fake:counting", {"loglikelihood": [["c", [" a", " bb"]]]})
    cache.put(key, "fake:counting", {}, [[-1.0]], 0.0)  # one score for two continuations
    model = CachedModel(CountingScorer(), cache)
    assert model.loglikelihood_groups(groups) == [[-2.0, -3.0]]
    assert model.backend.calls == 1
    cache.close()


def test_segment_attention_is_only_used_where_it_computes_what_the_model_does():
    from types import SimpleNamespace

    import pytest

    from iteralign.backends.segment_attention import segment_attention_forward, supports_segment_attention

    class Model:
        def __init__(self, sinks=None, layer_idx=0, **config):
            self.config = SimpleNamespace(**config)
            self.sinks = sinks
            self.layer = SimpleNamespace(self_attn=SimpleNamespace(layer_idx=layer_idx))

        def modules(self):
            return [self, self.layer, self.layer.self_attn]

        def _can_set_attn_implementation(self):
            return True

    assert supports_segment_attention(Model())
    assert not supports_segment_attention(Model(sliding_window=4096))
    assert not supports_segment_attention(Model(layer_types=["full_attention", "sliding_attention"]))
    assert not supports_segment_attention(Model(attn_logit_softcapping=50.0))
    assert not supports_segment_attention(Model(sinks=object()))
    assert not supports_segment_attention(Model(layer_idx=None))  # no way to find its layer's prefix
    with pytest.raises(RuntimeError, match="only for the packed scorer"):
        segment_attention_forward(None, None, None, None, None)


def test_bucketed_segment_attention_equals_one_tree_mask_over_the_row():
    """Random segments (tries of random shape, some longer than two query chunks) in two rows
    after a shared prefix, grouped-query heads: the bucketed kernel gives what one mask over
    each whole row gives, at every real token; padding columns come out zero."""
    from types import SimpleNamespace

    import torch
    from torch.nn.functional import scaled_dot_product_attention

    from iteralign.backends.segment_attention import QUERY_CHUNK, SegmentLayout, segment_attention_forward

    rng = random.Random(1)
    prefix, width, kv_heads, groups, dim = 5, 2 * QUERY_CHUNK + 160, 2, 3, 8
    rows = []
    for r in range(2):
        row, used = [], 0
        while True:
            if r == 0 and not row:  # one segment longer than two query chunks
                ctx, conts = [1] * 150, [[rng.randint(2, 4) for _ in range(60)] for _ in range(3)]
            else:
                ctx = [1] * rng.randint(1, 6)
                conts = [[rng.randint(2, 4) for _ in range(rng.randint(1, 5))] for _ in range(rng.randint(1, 4))]
            segment = make_segment(0, [0] * prefix + ctx, conts, prefix_len=prefix)
            if used + len(segment.tokens) > width - 3:  # leave padding at the row's end
                break
            row.append(segment)
            used += len(segment.tokens)
        rows.append(row)
    spans, masks = [], []
    row_mask = torch.zeros((2, width, prefix + width), dtype=torch.bool)
    row_mask[:, :, :prefix] = True
    for r, row in enumerate(rows):
        offset = 0
        for segment in row:
            n = len(segment.tokens)
            spans.append((r, offset, offset + n))
            masks.append(ancestor_mask(segment.parent))
            row_mask[r, offset:offset + n, prefix + offset:prefix + offset + n] = masks[-1]
            offset += n
    assert max(end - start for _, start, end in spans) > 2 * QUERY_CHUNK  # the chunked path runs
    torch.manual_seed(0)
    query = torch.randn(2, kv_heads * groups, width, dim)
    key, value = torch.randn(2, kv_heads, width, dim), torch.randn(2, kv_heads, width, dim)
    prefix_kv = [(torch.randn(1, kv_heads, prefix, dim), torch.randn(1, kv_heads, prefix, dim)) for _ in range(3)]
    layout = SegmentLayout.build(prefix_kv, spans, masks, width)
    assert len(layout.buckets) > 1 and any(b.rows.shape[0] > 1 for b in layout.buckets)
    out, _ = segment_attention_forward(SimpleNamespace(layer_idx=2), query, key, value, None, scaling=0.3,
                                       segment_layout=layout)
    whole_k = torch.cat([prefix_kv[2][0].expand(2, -1, -1, -1), key], dim=2).repeat_interleave(groups, dim=1)
    whole_v = torch.cat([prefix_kv[2][1].expand(2, -1, -1, -1), value], dim=2).repeat_interleave(groups, dim=1)
    reference = scaled_dot_product_attention(query, whole_k, whole_v, attn_mask=row_mask.unsqueeze(1),
                                             scale=0.3).transpose(1, 2)
    real = torch.zeros((2, width), dtype=torch.bool)
    for r, start, end in spans:
        real[r, start:end] = True
    assert torch.allclose(out[real], reference[real], atol=1e-5)
    assert not out[~real].any()
