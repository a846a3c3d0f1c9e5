"""One iteration's training, in this process or on `train.processes` processes.

In: what train/objective.py takes. Out: its training record. With `processes: 1` the training
runs here. With more, the job is written beside the adapter (`.train_job/`: job.json, the
examples and pairs as JSON Lines) and run as a subprocess per rank by
- `torchrun --standalone --nproc_per_node N -m iteralign.train.worker JOB` (CPU: gloo; GPUs:
  NCCL, one process per GPU), or
- `accelerate launch --config_file F --num_processes N -m iteralign.train.worker JOB` (DDP, FSDP,
  DeepSpeed ZeRO-3: configs/accelerate/). On CPU, `accelerate launch --cpu --num_processes 2`
  starts a single process (accelerate 1.15), so CPU multi-process training uses torchrun.
The subprocesses print their own progress (rank 0). A failed launch is one line naming the
exit code; the job folder is kept for a look and replaced by the next attempt.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from iteralign.config import TrainConfig
from iteralign.errors import TrainingError
from iteralign.records import PreferencePair, SFTExample
from iteralign.store.run_dir import read_json, write_json, write_records
from iteralign.train.objective import train_iteration

JOB_DIR = ".train_job"


def launch_command(config: TrainConfig, job: Path) -> list[str]:
    worker = ["-m", "iteralign.train.worker", str(job)]
    if config.launcher == "accelerate":
        command = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", str(config.processes)]
        if config.accelerate_config:
            command += ["--config_file", config.accelerate_config]
        return command + worker
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1",
            "--nproc_per_node", str(config.processes)] + worker


def train(base_model_dir: str, adapter_in: Path | None, examples: list[SFTExample], pairs: list[PreferencePair],
          config: TrainConfig, seed: int, adapter_dir: Path, trust_remote_code: bool) -> dict:
    if config.processes == 1 or not examples:
        return train_iteration(base_model_dir, adapter_in, examples, pairs, config, seed, adapter_dir,
                               trust_remote_code)
    folder = adapter_dir.parent / JOB_DIR
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    write_records(folder / "examples.jsonl", examples)
    write_records(folder / "pairs.jsonl", pairs)
    job = folder / "job.json"
    write_json(job, {"base_model_dir": base_model_dir, "adapter_in": str(adapter_in) if adapter_in else None,
                     "examples": str(folder / "examples.jsonl"), "pairs": str(folder / "pairs.jsonl"),
                     "config": config.model_dump(mode="json"), "seed": seed, "adapter_dir": str(adapter_dir),
                     "trust_remote_code": trust_remote_code, "result": str(folder / "result.json")})
    command = launch_command(config, job)
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0 or not (folder / "result.json").is_file():
        raise TrainingError(f"training on {config.processes} processes ({config.launcher}) failed with exit code "
                            f"{completed.returncode}; its output is above, its job in {folder}")
    info = read_json(folder / "result.json")
    shutil.rmtree(folder, ignore_errors=True)
    return {**info, "processes": config.processes, "launcher": config.launcher}
