"""Everything about a run that can be checked before its run directory exists.

In: a validated `Config`. Out: the red-team prompts (train / held-out), or a `UserError` naming
the field, file or line, with nothing written. Checked here, in this order: the model specs
(files, adapter, device, API-key variables), that output_dir can be written, the data (every
record of every source), the starting constitution, the evaluation request, judge-check's files,
and that `train.target_modules` name modules of the base model (from its config, on the meta
device: no weights are loaded).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from iteralign.backends.registry import check_spec
from iteralign.config import Config, HFModel
from iteralign.constitution.library import load_start
from iteralign.data.redteam import RedTeamSet, load_redteam, resolve_data_dir
from iteralign.errors import ConfigError, DataError, RunDirError

log = logging.getLogger(__name__)


def validate(config: Config) -> RedTeamSet:
    if not isinstance(config.models.base, HFModel):
        raise ConfigError("models.base.backend: must be hf, because the base model is the one fine-tuned")
    check_spec(config.models.base, "base")
    check_spec(config.models.oracle, "oracle")
    check_output_dir(config.output_dir, config.run_dir)
    redteam = load_redteam(config.data, config.seed)
    if config.constitution.start_from:
        load_start(config.constitution.start_from)  # a bad path fails now, not after the baseline
    if config.eval.benchmarks:
        from iteralign.evaluate.runner import check_request

        check_request(config.models.base, config.eval.benchmarks, resolve_data_dir(config.data), config.models.oracle,
                      redteam.heldout, config.judge.mode)
    if config.judge.check:  # every file the checks read, read now (no model is asked)
        from iteralign.judging.check_sets import dry_run

        folder = resolve_data_dir(config.data)
        if folder is None:
            raise DataError("judge.check needs the data folder; set data.dir or ITERALIGN_DATA_DIR")
        dry_run(list(config.judge.check.sets), folder, config.judge.check.limit, config.seed)
    if not redteam.train:
        raise DataError("data.sources: no prompt landed in the train split; add prompts or lower data.heldout_fraction")
    if not redteam.heldout:
        raise DataError("data.sources: no prompt landed in the held-out split; raise data.heldout_fraction")
    check_training(config)
    return redteam


def check_output_dir(output_dir: str, run_dir: Path) -> None:
    """The run directory can be created and written (or, resuming, written again)."""
    out = Path(output_dir)
    for path, what in ((out, "output_dir"), (run_dir, "the run directory")):
        if path.exists() and not path.is_dir():
            raise RunDirError(f"output_dir: {what} {path} is a file; point output_dir at a folder")
    existing = run_dir
    while not existing.exists():
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunDirError(f"output_dir: {existing} is not writable; choose another output_dir or fix its permissions")
    if run_dir.exists():
        locked = [p for p in [run_dir, *run_dir.iterdir()] if p.is_file() and not os.access(p, os.W_OK)]
        if locked:
            raise RunDirError(f"{locked[0]}: not writable, so the run cannot be resumed; fix its permissions, or "
                              "copy the run somewhere writable")


def check_training(config: Config) -> None:
    """train.* settings that would only fail once training starts, minutes into the run."""
    if config.train.precision == "fp16" and config.models.base.device == "cpu":
        raise ConfigError("train.precision: fp16 autocast needs a CUDA GPU; use fp32, bf16 or auto on a CPU")
    names = linear_module_names(config.models.base)
    if names is None:
        return
    missing = [t for t in config.train.target_modules if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        shown = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ConfigError(f"train.target_modules: {', '.join(missing)} name no module of {config.models.base.model}; "
                          f"its linear layers are {', '.join(shown[:12])}")


def linear_module_names(base: HFModel) -> list[str] | None:
    """The names of the base model's linear layers, built from its config on the meta device;
    None when the config is not on this machine (a hub id while offline)."""
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    from iteralign.backends.hf import resolve_hf_model

    try:
        model_config = AutoConfig.from_pretrained(resolve_hf_model(base.model), trust_remote_code=base.trust_remote_code)
    except OSError as exc:
        log.debug("train.target_modules not checked: no config for %s here (%s)", base.model, exc)
        return None
    with init_empty_weights():
        model = AutoModelForCausalLM.from_config(model_config, trust_remote_code=base.trust_remote_code)
    return [name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)]
