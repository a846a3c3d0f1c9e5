"""Attention that reads only each packed segment's own columns (the packed scorer's kernel).

In: one forward pass of the packed scorer (hf_scoring.PackedScorer): rows of segments after a
shared prefix, each segment a tree (its context, then its answers side by side).
Out: the attention output a 4D tree mask over the whole row would give, without computing the
columns that mask would zero.

Why: with one mask over the row, every token attends over the prefix plus the whole 512-wide
row, though a TruthfulQA segment needs about 85 of those columns; that was 16% of scoring
time (docs/benchmarks.md, "Profile"). Here each segment's queries meet only the prefix's keys and
their own segment's: one small scaled-dot-product call per segment and layer, the segment's
tree mask built once per pass and shared by every layer. Masked-out columns carry exactly zero
weight either way, so only the summation order differs (float rounding).

Used only for models whose attention is plain softmax(Q K^T * scale + mask) V through
transformers' AttentionInterface (`PackedScorer` checks; see `supports_segment_attention`):
no sliding window, no logit soft-capping, no attention sinks.
"""
from __future__ import annotations

from dataclasses import dataclass

NAME = "iteralign_segments"  # the name registered with transformers' attention interfaces


@dataclass
class SegmentLayout:
    """Where the segments of one pass sit: (row, start, end) in the pass's columns, and each
    segment's mask over [prefix columns | its own columns] (bool, True = attend)."""
    prefix: int
    spans: list[tuple[int, int, int]]
    masks: list  # torch.BoolTensor [1, 1, end - start, prefix + end - start] per span


def register() -> None:
    """Make NAME a valid `attn_implementation` (idempotent)."""
    from transformers import AttentionInterface, AttentionMaskInterface

    AttentionInterface.register(NAME, segment_attention_forward)
    # the layout carries every mask; transformers' own mask building is skipped
    AttentionMaskInterface.register(NAME, _no_mask)


def _no_mask(*args, **kwargs):
    return None


def supports_segment_attention(model) -> bool:
    """True when segment attention computes what this model's own attention does."""
    config = model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "sliding_window", None) or getattr(text, "attn_logit_softcapping", None):
        return False
    if any("sliding" in str(kind) for kind in (getattr(text, "layer_types", None) or [])):
        return False
    if any(getattr(module, "sinks", None) is not None for module in model.modules()):
        return False
    can_set = getattr(model, "_can_set_attn_implementation", None)
    return bool(can_set and can_set())


def segment_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                              scaling: float | None = None, **kwargs):
    """AttentionInterface signature: query [B, H, Q, D], key/value [B, KV, prefix + Q, D] (the
    shared prefix first, from the cache); returns ([B, Q, H, D], None). Padding columns,
    which no segment owns, get zeros: nothing reads them."""
    import torch
    from torch.nn.functional import scaled_dot_product_attention

    layout: SegmentLayout | None = kwargs.get("segment_layout")
    if layout is None:
        raise RuntimeError(f"attn_implementation={NAME!r} is only for the packed scorer (no segment_layout given)")
    if kwargs.get("softcap") is not None or kwargs.get("sliding_window") or getattr(module, "sinks", None) is not None:
        raise RuntimeError(f"{NAME}: this model's attention has soft-capping, a sliding window or sinks")
    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, length, dim = query.shape
    out = query.new_zeros((batch, length, heads, dim))
    p = layout.prefix
    for (row, start, end), mask in zip(layout.spans, layout.masks):
        q = query[row:row + 1, :, start:end]
        k = key[row:row + 1, :, p + start:p + end]
        v = value[row:row + 1, :, p + start:p + end]
        if p:
            k = torch.cat([key[row:row + 1, :, :p], k], dim=2)
            v = torch.cat([value[row:row + 1, :, :p], v], dim=2)
        if groups > 1:  # expand the key/value heads for the query heads (as transformers' repeat_kv)
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
        o = scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling)
        out[row, start:end] = o[0].transpose(0, 1)
    return out, None
