"""LoRA DPO with TRL's DPOTrainer + PEFT on (prompt, chosen = accepted revision, rejected = the
original answer the judge flagged): the pairs each IterAlign revision gives, as the Hugging Face
Constitutional AI recipe trains them after SFT.

In: the base model folder, the adapter to start from (or none), preference pairs, train settings
(`dpo_beta`, `dpo_loss_type`, `dpo_learning_rate`), a seed, the folder to write. Out: the adapter
and the loss, with DPO's own figures per run (mean over the logged steps and at the last step):
rewards of chosen and rejected, their margin, and how often chosen won (reward accuracy).

The reference model. With no `ref_model`, TRL 1.16 takes the reference from the PEFT model it is
handed: a new (zero-initialised) adapter is disabled, which gives the base model, the same
function; a model that already carries an adapter (the previous iteration's, or this
iteration's SFT under `sft+dpo`) gets a frozen copy of it named "ref" (DPOTrainer.__init__,
`model.add_adapter("ref", ...)`), and the reference log-probs are computed with it. So the
reference is the model this training started from, as IterAlign's iterations need. Only the
trained adapter ("default") is saved.
"""
from __future__ import annotations

import time
from pathlib import Path

from iteralign.config import TrainConfig
from iteralign.records import PreferencePair
from iteralign.train.common import global_loss, load_tokenizer, train_and_save, trainable_model, trainer_settings
from iteralign.train.lora_sft import TrainResult

FIGURES = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def dpo_figures(log_history: list[dict]) -> dict:
    """DPO's figures from the trainer's per-step log: the mean over steps and the last step's."""
    steps = [entry for entry in log_history if "rewards/margins" in entry and "loss" in entry]
    if not steps:
        return {}
    out = {}
    for key in ("loss",) + FIGURES:
        values = [float(s[key]) for s in steps if key in s]
        name = key.replace("/", "_")
        out[f"{name}_mean"] = round(sum(values) / len(values), 6)
        out[f"{name}_last"] = round(values[-1], 6)
    return out


def train_dpo(base_model_dir: str, start_adapter: Path | None, pairs: list[PreferencePair], config: TrainConfig,
              seed: int, out_dir: Path, trust_remote_code: bool = False) -> TrainResult:
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOConfig, DPOTrainer

    start = time.perf_counter()
    set_seed(seed)

    # --- set up: model (the adapter to start from is also the reference), data
    tokenizer = load_tokenizer(base_model_dir, trust_remote_code)
    model = trainable_model(base_model_dir, start_adapter, config, trust_remote_code)
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": p.prompt}],
         "chosen": [{"role": "assistant", "content": p.chosen}],
         "rejected": [{"role": "assistant", "content": p.rejected}]}
        for p in pairs
    ])
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    args = DPOConfig(**trainer_settings(config, seed, tmp_dir / "trainer", config.dpo_learning_rate),
                     beta=config.dpo_beta, loss_type=[config.dpo_loss_type])

    # --- train, then save the trained adapter only and move it into place
    trainer, result = train_and_save(DPOTrainer, args, model, dataset, tokenizer, "train (dpo)", len(pairs), config,
                                     tmp_dir, out_dir)
    metrics = {"beta": config.dpo_beta, "loss_type": config.dpo_loss_type,
               "reference": "the model this training started from" + (" (frozen copy of its adapter)"
                                                                        if start_adapter else " (the base model)"),
               **dpo_figures(trainer.state.log_history)}
    return TrainResult(loss=global_loss(trainer, result), steps=int(result.global_step),
                       seconds=time.perf_counter() - start, metrics=metrics)
