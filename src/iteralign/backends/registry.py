"""Model spec (from the config, or one string) -> a live backend, and the spec's stable identity.

`BACKENDS` has one entry per backend name, with how to name a spec (`spec_id`: backend, model,
and the content hash of any adapter, so a cached answer is never served for a different model;
never a key or secret), how to check it without loading weights (run before anything is
written), and how to build it. Adding a backend is one config class and one entry here.
`parse_model_string` reads a spec from one string or YAML file (`iteralign eval --oracle`,
`judge-check --judge`).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from iteralign.backends.base import Backend
from iteralign.backends.embedded import embedded_gguf, is_embedded
from pydantic import TypeAdapter, ValidationError

from iteralign.config import HFModel, LlamaCppModel, ModelSpec, OpenAIModel
from iteralign.config_loading import _UNION_TAGS, describe_error, read_yaml
from iteralign.errors import ConfigError, ModelSpecError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
_DEVICE = re.compile(r"cpu|auto|mps|cuda(:\d+)?")


def adapter_sha256(adapter: str | Path) -> str:
    digest = hashlib.sha256()
    for name in ADAPTER_FILES:
        path = Path(adapter) / name
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _model_name(spec: ModelSpec) -> str:
    return "embedded:smollm2-135m-instruct-q4_1" if is_embedded(spec.model) else spec.model


def _hf_id(spec: HFModel) -> str:
    if spec.generate_with is not None:  # another engine answers: another identity, same adapter hash
        engine = spec.generate_with
        if engine.backend == "openai":
            sid = f"hf:{_model_name(spec)}@openai:{','.join(engine.base_urls)}:{engine.model}"
        else:
            sid = f"hf:{_model_name(spec)}@llamacpp:{_model_name(engine)}"
    else:
        sid = f"hf:{_model_name(spec)}:{spec.dtype}"
    if spec.adapter:
        sid += f"+lora:{adapter_sha256(spec.adapter)[:16]}"
    return sid


def gguf_lora_for(spec: HFModel) -> Path | None:
    """The spec's adapter as a GGUF LoRA for llama.cpp: converted once, next to the adapter, named
    by the adapter's hash (a re-trained adapter gets a new file; an unchanged one is reused)."""
    if not spec.adapter:
        return None
    from iteralign.backends.gguf_lora import convert_adapter, converted_path

    adapter = Path(spec.adapter)
    path = converted_path(adapter, adapter_sha256(adapter))
    if not path.is_file():
        from iteralign.backends.hf import resolve_hf_model

        config_path = Path(resolve_hf_model(spec.model)) / "config.json"
        if not config_path.is_file():
            raise ModelSpecError(f"models.base.generate_with: converting the adapter needs the base model's "
                                 f"config.json, not found at {config_path}; use a local model folder")
        convert_adapter(adapter, json.loads(config_path.read_text(encoding="utf-8")), path)
    return path


def check_adapter(adapter: str, where: str) -> None:
    """A PEFT adapter folder whose adapter_config.json is a JSON mapping naming its method."""
    config = Path(adapter) / "adapter_config.json"
    if not config.is_file():
        raise ModelSpecError(f"{where}: {adapter} is not a PEFT adapter folder (no adapter_config.json)")
    try:
        document = json.loads(config.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSpecError(f"{config}: not valid JSON ({exc}); the adapter is damaged, re-train or re-copy it") from None
    if not isinstance(document, dict) or not document.get("peft_type"):
        raise ModelSpecError(f"{config}: not a PEFT adapter config (no peft_type); re-train or re-copy the adapter")


def _check_hf(spec: HFModel, role: str) -> None:
    if is_embedded(spec.model):
        embedded_gguf()
    else:
        path = Path(spec.model).expanduser()
        if path.exists():
            if not (path / "config.json").is_file():
                raise ModelSpecError(f"models.{role}.model: {spec.model} has no config.json; point it at a "
                                     "transformers model folder")
        elif spec.model.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(spec.model):
            raise ModelSpecError(f"models.{role}.model: {spec.model} is neither a model folder nor a hub id "
                                 "(org/name); check the path, or use 'embedded'")
    if spec.adapter:
        check_adapter(spec.adapter, f"models.{role}.adapter")
    if spec.generate_with is not None and spec.generate_with.backend == "llamacpp":
        _check_llamacpp(spec.generate_with, f"{role}.generate_with")
    elif spec.generate_with is not None and spec.generate_with.api_key_env:
        from iteralign.backends.openai_compat import read_api_key

        read_api_key(spec.generate_with.api_key_env)
    if not _DEVICE.fullmatch(spec.device):
        raise ModelSpecError(f"models.{role}.device: {spec.device!r} is not a device; use cpu, cuda, cuda:N, mps or auto")
    if spec.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ModelSpecError(f"models.{role}.device: {spec.device}, but torch sees no CUDA device (a CPU build, "
                                 "or no GPU here); use device: cpu")
        index = int(spec.device.split(":")[1]) if ":" in spec.device else 0
        if index >= torch.cuda.device_count():
            raise ModelSpecError(f"models.{role}.device: {spec.device}, but there are {torch.cuda.device_count()} "
                                 "CUDA devices")


def _check_llamacpp(spec: LlamaCppModel, role: str) -> None:
    if is_embedded(spec.model):
        embedded_gguf()
    elif not Path(spec.model).is_file():
        raise ModelSpecError(f"models.{role}.model: GGUF file {spec.model} not found")


def _check_openai(spec: OpenAIModel, role: str) -> None:
    if not spec.base_url and not spec.api_key_env:
        raise ModelSpecError(f"models.{role}.api_key_env: the OpenAI API needs a key; name the environment "
                             "variable that holds it (e.g. api_key_env: OPENAI_API_KEY), or set base_url")
    if spec.api_key_env:
        from iteralign.backends.openai_compat import read_api_key

        read_api_key(spec.api_key_env)


def _build_hf(spec: HFModel, sid: str) -> Backend:
    if spec.generate_with is not None and spec.generate_with.backend == "openai":
        from iteralign.backends.lora_server import LoRAServerBackend

        engine = spec.generate_with
        return LoRAServerBackend(spec_id=sid, model=engine.model, base_urls=engine.base_urls, server=engine.server,
                                 adapter=Path(spec.adapter) if spec.adapter else None,
                                 adapter_sha256=adapter_sha256(spec.adapter) if spec.adapter else None,
                                 api_key_env=engine.api_key_env, path_from=engine.adapter_path_from,
                                 path_to=engine.adapter_path_to, max_concurrency=engine.max_concurrency,
                                 timeout_s=engine.timeout_s, max_retries=engine.max_retries)
    if spec.generate_with is not None:
        from iteralign.backends.llamacpp import LlamaCppBackend

        engine = spec.generate_with
        lora = gguf_lora_for(spec)
        return LlamaCppBackend(engine.model, spec_id=sid, n_ctx=engine.n_ctx, n_threads=engine.n_threads,
                               lora_path=str(lora) if lora else None)
    from iteralign.backends.hf import HFBackend

    return HFBackend(spec.model, spec.adapter, spec_id=sid, dtype=spec.dtype, device=spec.device,
                     batch_size=spec.batch_size, trust_remote_code=spec.trust_remote_code)


def _build_llamacpp(spec: LlamaCppModel, sid: str) -> Backend:
    from iteralign.backends.llamacpp import LlamaCppBackend

    return LlamaCppBackend(spec.model, spec_id=sid, n_ctx=spec.n_ctx, n_threads=spec.n_threads)


def _build_openai(spec: OpenAIModel, sid: str) -> Backend:
    from iteralign.backends.openai_compat import OpenAIBackend

    return OpenAIBackend(spec.model, spec_id=sid, base_url=spec.base_url, api_key_env=spec.api_key_env,
                         max_concurrency=spec.max_concurrency, timeout_s=spec.timeout_s,
                         max_retries=spec.max_retries, structured_output=spec.structured_output)


@dataclass(frozen=True)
class BackendEntry:
    spec_id: Callable[[ModelSpec], str]
    check: Callable[[ModelSpec, str], None]
    build: Callable[[ModelSpec, str], Backend]


BACKENDS: dict[str, BackendEntry] = {
    "hf": BackendEntry(_hf_id, _check_hf, _build_hf),
    "llamacpp": BackendEntry(lambda s: f"llamacpp:{_model_name(s)}", _check_llamacpp, _build_llamacpp),
    # the base URL is part of the identity (another server is another model); it never holds
    # credentials: config.OpenAIModel refuses a URL with user:password@
    "openai": BackendEntry(lambda s: f"openai:{s.base_url or 'api.openai.com'}:{s.model}", _check_openai,
                           _build_openai),
}





MODEL_STRING_HELP = ('"embedded" (the embedded model on llama.cpp), "hf:PATH_OR_ID", "llamacpp:FILE.gguf", '
                     '"openai:MODEL" (OpenAI, key in $OPENAI_API_KEY), "openai:MODEL@http://host:port/v1" '
                     '(vLLM, llama.cpp server, ...), or a YAML file holding a model spec or a run config')


def parse_model_string(text: str, role: str = "oracle") -> ModelSpec:
    """A model spec from one string (see MODEL_STRING_HELP); errors name `role`, never echo values
    that could be secrets beyond the string the user typed."""
    text = text.strip()
    path = Path(text)
    if text.endswith((".yaml", ".yml")):
        raw = read_yaml(path)
        if isinstance(raw, dict) and isinstance(raw.get("models"), dict):
            raw = raw["models"].get(role) or raw["models"].get("oracle")
        where = f"{path}"
    elif text.lower() == "embedded":
        raw, where = {"backend": "llamacpp", "model": "embedded"}, role
    else:
        backend, sep, rest = text.partition(":")
        if not sep or backend not in _UNION_TAGS or not rest:
            raise ConfigError(f"{role}: {text!r} is not a model; give {MODEL_STRING_HELP}")
        raw, where = {"backend": backend, "model": rest}, role
        if backend == "openai":
            model, at, url = rest.partition("@")
            raw = {"backend": "openai", "model": model}
            if at:
                raw["base_url"] = url
            else:
                raw["api_key_env"] = "OPENAI_API_KEY"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a model spec (backend: ..., model: ...) or a run config with models")
    try:
        return TypeAdapter(ModelSpec).validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(describe_error(e) for e in exc.errors())
        raise ConfigError(f"{where}: {problems}") from None


def spec_id(spec: ModelSpec) -> str:
    return BACKENDS[spec.backend].spec_id(spec)


def check_spec(spec: ModelSpec, role: str) -> None:
    """Fail early, with the field named, on specs that cannot possibly load."""
    BACKENDS[spec.backend].check(spec, role)


def build_backend(spec: ModelSpec, *, lazy: bool = False) -> Backend:
    """The spec's backend; `lazy` (an hf model that generates itself) defers loading it to the
    first call the cache cannot answer (backends/lazy.py)."""
    sid = spec_id(spec)
    if lazy and isinstance(spec, HFModel) and spec.generate_with is None:
        from iteralign.backends.hf import resolve_hf_model, scoring_identity
        from iteralign.backends.lazy import LazyBackend

        return LazyBackend(sid, lambda: _build_hf(spec, sid), supports_loglikelihood=True,
                           scoring_identity=scoring_identity(sid, resolve_hf_model(spec.model)))
    return BACKENDS[spec.backend].build(spec, sid)
