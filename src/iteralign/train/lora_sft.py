"""LoRA SFT with TRL + PEFT on (original prompt -> accepted revision).

In: the base model folder, the adapter of the previous iteration (or none), SFT examples,
train settings, a seed, the folder to write. Out: a PEFT adapter folder (written to a temporary
folder, then moved into place) and the training loss.
Reads top to bottom like a script: set up -> train -> save. The dataset is in TRL's
conversational prompt/completion form and the loss is on the completion only (TRL's
assistant-only loss does not work with SmolLM2's chat template, which has no generation
markers). Each iteration continues training the previous iteration's adapter, so the
principles accumulate in the weights.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from iteralign.config import TrainConfig
from iteralign.records import SFTExample
from iteralign.train.common import global_loss, load_tokenizer, train_and_save, trainable_model, trainer_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    loss: float
    steps: int
    seconds: float
    metrics: dict = field(default_factory=dict)  # objective-specific figures (DPO: rewards, margins)


def train_lora(base_model_dir: str, previous_adapter: Path | None, examples: list[SFTExample], config: TrainConfig,
               seed: int, out_dir: Path, trust_remote_code: bool = False) -> TrainResult:
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    start = time.perf_counter()
    set_seed(seed)

    # --- set up: model, adapter, data
    tokenizer = load_tokenizer(base_model_dir, trust_remote_code)
    model = trainable_model(base_model_dir, previous_adapter, config, trust_remote_code)
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": ex.prompt}],
         "completion": [{"role": "assistant", "content": ex.completion}]}
        for ex in examples
    ])
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")
    args = SFTConfig(**trainer_settings(config, seed, tmp_dir / "trainer"), completion_only_loss=True)

    # --- train, then save the adapter only (a few MB) and move it into place
    trainer, result = train_and_save(SFTTrainer, args, model, dataset, tokenizer, "train", len(examples), config,
                                     tmp_dir, out_dir)
    return TrainResult(loss=global_loss(trainer, result), steps=int(result.global_step),
                       seconds=time.perf_counter() - start)
