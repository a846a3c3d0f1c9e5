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

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from iteralign import failpoints, progress
from iteralign.config import TrainConfig
from iteralign.records import SFTExample
from iteralign.store.run_dir import replace_dir_atomic

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    loss: float
    steps: int
    seconds: float


def _canonical_adapter_config(path: Path) -> None:
    """PEFT writes target_modules from a set, in an order that changes with Python's hash seed;
    sort it so the same training gives the same bytes (and the same adapter hash)."""
    config = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX on this CPU (Linux: /proc/cpuinfo); without them bf16 matmuls are emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_precision(choice: str) -> tuple[bool, bool]:
    """(bf16, fp16) for the trainer from train.precision."""
    import torch

    if choice == "auto":
        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported(), False
        return cpu_has_native_bf16(), False
    return choice == "bf16", choice == "fp16"


def train_lora(base_model_dir: str, previous_adapter: Path | None, examples: list[SFTExample], config: TrainConfig,
               seed: int, out_dir: Path, trust_remote_code: bool = False) -> TrainResult:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback, set_seed
    from trl import SFTConfig, SFTTrainer

    start = time.perf_counter()
    set_seed(seed)

    # --- set up: model, adapter, data
    tokenizer = AutoTokenizer.from_pretrained(base_model_dir, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32,
                                                 trust_remote_code=trust_remote_code)
    if previous_adapter is not None:
        model = PeftModel.from_pretrained(model, str(previous_adapter), is_trainable=True)
    else:
        model = get_peft_model(model, LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=config.target_modules, task_type="CAUSAL_LM",
        ))
    dataset = Dataset.from_list([
        {"prompt": [{"role": "user", "content": ex.prompt}],
         "completion": [{"role": "assistant", "content": ex.completion}]}
        for ex in examples
    ])
    steps = math.ceil(len(examples) / config.batch_size) * math.ceil(config.epochs)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp")

    class Progress(TrainerCallback):
        def __init__(self, task):
            self.task = task

        def on_step_end(self, args, state, control, **kwargs):
            self.task.advance(1)
            failpoints.hit("train.step")

    bf16, fp16 = autocast_precision(config.precision)
    args = SFTConfig(
        output_dir=str(tmp_dir / "trainer"),
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        completion_only_loss=True,
        seed=seed,
        data_seed=seed,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        use_cpu=not torch.cuda.is_available(),
        bf16=bf16,
        fp16=fp16,
        gradient_checkpointing=config.gradient_checkpointing,
    )

    # --- train
    with progress.track("train", steps) as task:
        trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                             callbacks=[Progress(task)])
        trainer.remove_callback(PrinterCallback)  # it prints every log dict; our progress bar is enough
        result = trainer.train()

    # --- save the adapter only (a few MB), then move it into place
    adapter_tmp = tmp_dir / "adapter"
    trainer.model.save_pretrained(str(adapter_tmp))
    _canonical_adapter_config(adapter_tmp / "adapter_config.json")
    replace_dir_atomic(adapter_tmp, out_dir)
    shutil.rmtree(tmp_dir, ignore_errors=True)
    return TrainResult(loss=float(result.training_loss), steps=int(result.global_step),
                       seconds=time.perf_counter() - start)
