"""A PEFT LoRA adapter as a GGUF LoRA file, so llama.cpp can generate with it (`lora_path`).

In: a PEFT adapter folder (adapter_config.json + adapter_model.safetensors, LoRA on a Llama-
architecture model such as SmolLM2) and the base model's config (heads, layers). Out: a GGUF
file of type "adapter" that llama.cpp applies on top of the base GGUF, cached next to the
adapter and named by the adapter's sha256, so a changed adapter is converted again and an
unchanged one never is.

What the conversion must get right (llama.cpp's convert_lora_to_gguf.py does the same with a
lazy-tensor wrapper; that script ships only in the llama-cpp-python sdist, with conflicting pins):
- names: `base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight` becomes
  `blk.3.attn_q.weight.lora_a` through gguf's own tensor-name map for the architecture;
- shapes: lora_a is A (r x in) and lora_b is B (out x r), as PEFT stores them;
- the q and k projections: the HF-to-GGUF conversion permutes the rows of W_q and W_k (rotary
  layout); since W + B A must be permuted alike, B's rows are permuted the same way (A is not);
- scale: llama.cpp multiplies B A by alpha / r, PEFT's `lora_alpha / r`, so alpha is written as is.
Only plain LoRA is converted (no DoRA, no rank or alpha patterns, no bias); anything else is a
clear error rather than a silently different model.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from iteralign.errors import ModelSpecError

_LAYER = re.compile(r"^(?:base_model\.model\.)?(model\.layers\.\d+\.[a-z_]+\.[a-z_]+)\.lora_([AB])\.weight$")


def permute_rows(weight, n_head: int):
    """The row order the HF-to-GGUF conversion gives W_q (n_head) and W_k (n_kv_head)."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def converted_path(adapter_dir: Path, sha256: str) -> Path:
    return adapter_dir.parent / f"{adapter_dir.name}.{sha256[:16]}.gguf"


def convert_adapter(adapter_dir: Path, base_config: dict, out_path: Path) -> Path:
    """Write the GGUF LoRA for `adapter_dir`; `base_config` is the base model's config.json."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    settings = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    unsupported = [key for key in ("use_dora", "rank_pattern", "alpha_pattern") if settings.get(key)]
    if settings.get("peft_type", "LORA") != "LORA" or unsupported or settings.get("bias", "none") != "none":
        raise ModelSpecError(f"{adapter_dir}: only plain LoRA adapters convert to GGUF "
                             f"({', '.join(unsupported) or settings.get('peft_type')} is not supported)")
    if base_config.get("model_type") not in ("llama", "mistral"):
        raise ModelSpecError(f"{adapter_dir}: GGUF LoRA conversion supports Llama-architecture models, not "
                             f"{base_config.get('model_type')!r}")
    n_head = int(base_config["num_attention_heads"])
    n_kv_head = int(base_config.get("num_key_value_heads") or n_head)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(base_config["num_hidden_layers"]))
    tensors = load_file(str(adapter_dir / "adapter_model.safetensors"))

    tmp = out_path.with_name(out_path.name + ".tmp")  # written whole, then moved: never half a file
    writer = gguf.GGUFWriter(str(tmp), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(settings["lora_alpha"]))
    written = 0
    for key in sorted(tensors):
        match = _LAYER.match(key)
        if match is None:
            raise ModelSpecError(f"{adapter_dir}: tensor {key} is not a LoRA A/B weight of a decoder layer")
        module, part = match.groups()
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise ModelSpecError(f"{adapter_dir}: no GGUF tensor for {module}")
        value = tensors[key].astype(np.float32)
        if part == "B" and module.endswith("q_proj"):
            value = permute_rows(value, n_head)
        elif part == "B" and module.endswith("k_proj"):
            value = permute_rows(value, n_kv_head)
        writer.add_tensor(f"{target}.lora_{part.lower()}", np.ascontiguousarray(value))
        written += 1
    if not written:
        raise ModelSpecError(f"{adapter_dir}: the adapter holds no LoRA weights")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(out_path)
    return out_path
