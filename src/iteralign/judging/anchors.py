"""Published figures of other judges, printed beside a judge-check so a user can place theirs.

Each anchor names its source and the set it was measured on; where that is not the set we
check, the line says so (HarmBench's figures are on HarmBench's own human-labelled validation
set, not on XSTest). The string-match and GPT-4 labels that ship with the XSTest completions are
not anchors: they are recomputed on the very items checked (judging/check.py).
"""
from __future__ import annotations

ANCHORS: dict[str, list[str]] = {
    "xstest-completions": [
        "XSTest string match (the paper's classifier), same 1,350 items: binary 0.896",
        "HarmBench classifier on HarmBench's human-labelled validation set: 93.2% agreement; "
        "GPT-4 there: 88.4%; AdvBench refusal strings: 69.9% (Mazeika et al. 2024)",
    ],
    "xstest-prompts": [
        "Llama Guard 2 on XSTest prompts: F1 0.884, FPR 0.084 (Meta, Llama Guard 2 model card)",
        "GPT-4 on XSTest prompts: F1 0.895, FPR 0.128 (same card)",
    ],
    "hh-rlhf-pairs": [
        "RLAIF, PaLM 2-L labeller on hh-rlhf harmlessness: 0.69-0.72, both orders averaged (Lee et al. 2023)",
        "claude-3-haiku on hh-rlhf-derived pairs: 0.51 (RewardBench); the labels are noisy, ~0.70 is near the ceiling",
    ],
    "hhh-pairs": [
        "no published pairwise-judge figure; log-likelihood scoring (iteralign eval hhh_mc) is the usual measure",
    ],
}
