"""One iteration's training, by `train.objective`: what 07_train.json records.

In: the base model folder, the adapter the iteration started from, its SFT examples and DPO
pairs, train settings, a seed, the adapter folder to write. Out: the training record: trained or
not (and why not), loss, steps, the objective, and for DPO its beta, loss type, reference and
reward figures (train/lora_dpo.py).
- `sft`: SFT on (prompt -> accepted revision);
- `dpo`: DPO on (prompt, accepted revision, flagged answer), from the iteration's starting model;
- `sft+dpo`: SFT first, then DPO from the SFT adapter (the reference is the SFT model, as in
  the Constitutional AI recipe); the intermediate SFT adapter is removed.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from iteralign.config import TrainConfig
from iteralign.records import PreferencePair, SFTExample


def train_iteration(base_model_dir: str, adapter_in: Path | None, examples: list[SFTExample],
                    pairs: list[PreferencePair], config: TrainConfig, seed: int, adapter_dir: Path,
                    trust_remote_code: bool) -> dict:
    objective = config.objective
    if not examples:
        return {"trained": False, "reason": "no accepted revision", "loss": None, "steps": 0, "objective": objective}
    if objective != "sft" and not pairs:
        return {"trained": False, "reason": "no preference pair (every accepted revision equals its answer)",
                "loss": None, "steps": 0, "objective": objective}
    from iteralign.train.lora_dpo import train_dpo
    from iteralign.train.lora_sft import train_lora

    record: dict = {"trained": True, "objective": objective}
    if objective == "sft":
        result = train_lora(base_model_dir, adapter_in, examples, config, seed, adapter_dir, trust_remote_code)
        return {**record, "loss": round(result.loss, 6), "steps": result.steps}
    start_from = adapter_in
    if objective == "sft+dpo":
        sft_dir = adapter_dir.with_name(f".{adapter_dir.name}.sft")
        sft = train_lora(base_model_dir, adapter_in, examples, config, seed, sft_dir, trust_remote_code)
        record["sft"] = {"loss": round(sft.loss, 6), "steps": sft.steps}
        start_from = sft_dir
    dpo = train_dpo(base_model_dir, start_from, pairs, config, seed, adapter_dir, trust_remote_code)
    if objective == "sft+dpo":
        shutil.rmtree(start_from, ignore_errors=True)
    return {**record, "loss": round(dpo.loss, 6), "steps": dpo.steps + record.get("sft", {}).get("steps", 0),
            "dpo": {"pairs": len(pairs), **dpo.metrics}}
