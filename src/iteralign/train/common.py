"""What every trainer shares: the trainable model, the trainer's common settings, progress, saving.

- `trainable_model`: the base model in fp32 with the LoRA adapter to train: the previous
  iteration's (loaded trainable, so the principles accumulate in the weights) or a new one.
- `trainer_settings`: the keyword arguments TRL's SFTConfig and DPOConfig take alike.
- `progress_callback`: advances the progress line per optimiser step and hits the `train.step`
  failpoint (the kill/resume tests stop training there).
- `save_adapter`: the trained adapter only (a few MB), with a canonical adapter_config.json, moved
  into place atomically.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from iteralign import failpoints
from iteralign.config import TrainConfig
from iteralign.store.run_dir import replace_dir_atomic

TRAINED_ADAPTER = "default"  # PEFT's name for the adapter being trained (DPO adds a frozen "ref")


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


def load_tokenizer(base_model_dir: str, trust_remote_code: bool):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_model_dir, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def trainable_model(base_model_dir: str, previous_adapter: Path | None, config: TrainConfig, trust_remote_code: bool):
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_model_dir, dtype=torch.float32,
                                                 trust_remote_code=trust_remote_code)
    if previous_adapter is not None:
        return PeftModel.from_pretrained(model, str(previous_adapter), is_trainable=True)
    return get_peft_model(model, LoraConfig(
        r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=config.target_modules, task_type="CAUSAL_LM",
    ))


def trainer_settings(config: TrainConfig, seed: int, output_dir: Path, learning_rate: float | None = None) -> dict:
    import torch

    bf16, fp16 = autocast_precision(config.precision)
    return dict(output_dir=str(output_dir), num_train_epochs=config.epochs,
                # the global batch stays train.batch_size however many processes share it
                per_device_train_batch_size=config.batch_size // config.processes, learning_rate=learning_rate or config.learning_rate,
                max_length=config.max_length, seed=seed, data_seed=seed, logging_steps=1, save_strategy="no",
                report_to="none", disable_tqdm=True, dataloader_num_workers=0,
                use_cpu=not torch.cuda.is_available(), bf16=bf16, fp16=fp16,
                gradient_checkpointing=config.gradient_checkpointing)


def progress_callback(task):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            task.advance(1)
            failpoints.hit("train.step")

    return Progress()


def quiet(trainer) -> None:
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # it prints every log dict; our progress line is enough


def save_adapter(trainer, tmp_dir: Path, out_dir: Path) -> None:
    """Rank 0 writes the adapter (every rank holds the same weights after DDP's all-reduce); the
    others wait for it, so a following step (DPO after SFT) can load it on every rank."""
    if trainer.is_world_process_zero():
        adapter_tmp = tmp_dir / "adapter"
        trainer.model.save_pretrained(str(adapter_tmp), selected_adapters=[TRAINED_ADAPTER])
        _canonical_adapter_config(adapter_tmp / "adapter_config.json")
        replace_dir_atomic(adapter_tmp, out_dir)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()


def global_loss(trainer, result) -> float:
    """The training loss over every process: with one, the trainer's own; with several, the mean
    of the logged per-step losses (each already averaged over the processes by the trainer)."""
    if trainer.args.world_size <= 1:
        return float(result.training_loss)
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    return sum(losses) / len(losses) if losses else float(result.training_loss)


def train_and_save(trainer_cls, args, model, dataset, tokenizer, label: str, rows: int, config: TrainConfig,
                   tmp_dir: Path, out_dir: Path):
    """Run a TRL trainer with a progress line, save the adapter; (trainer, TrainOutput)."""
    import math

    from iteralign import progress

    steps = math.ceil(rows / config.batch_size) * math.ceil(config.epochs)
    with progress.track(label, steps) as task:
        trainer = trainer_cls(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                              callbacks=[progress_callback(task)])
        quiet(trainer)
        result = trainer.train()
    save_adapter(trainer, tmp_dir, out_dir)
    return trainer, result
