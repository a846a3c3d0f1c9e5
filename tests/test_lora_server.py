"""The OpenAI-compatible runtime-LoRA path (vLLM, SGLang), against local HTTP servers on
127.0.0.1 that implement vLLM's endpoints and check the adapter's name and path."""
from __future__ import annotations

import json

import pytest

from iteralign.backends.base import GenParams
from iteralign.backends.lora_server import adapter_name, load_url, server_path
from iteralign.backends.registry import adapter_sha256, build_backend, spec_id
from iteralign.config import HFModel
from iteralign.errors import ModelSpecError
from iteralign.testing.openai_stub import StubServer


def _adapter(folder):
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    (folder / "adapter_model.safetensors").write_bytes(f"weights of {folder}".encode())
    return folder


def _spec(urls, adapter=None, **engine):
    return HFModel(backend="hf", model="embedded", adapter=str(adapter) if adapter else None,
                   generate_with={"backend": "openai", "model": "base-7b", "base_urls": urls, "max_retries": 0,
                                  **engine})


def test_each_iterations_adapter_is_loaded_by_name_on_every_server_and_requests_name_it(tmp_path):
    first, second = _adapter(tmp_path / "runs" / "r" / "iter_000" / "adapter"), \
        _adapter(tmp_path / "runs" / "r" / "iter_001" / "adapter")
    chat = [{"role": "user", "content": "hi"}]
    with StubServer(lora_base_model="base-7b") as a, StubServer(lora_base_model="base-7b") as b:
        urls = [a.base_url, b.base_url]
        base = build_backend(_spec(urls))
        [text] = base.generate_batch([chat], GenParams(max_new_tokens=4))
        base.generate_batch([chat], GenParams(max_new_tokens=4))
        base.close()
        assert text  # no adapter: the base model by its own name, round robin over both servers
        for adapter in (first, second):
            spec = _spec(urls, adapter, adapter_path_from=str(tmp_path / "runs"), adapter_path_to="/mnt/shared/runs")
            backend = build_backend(spec)
            for _ in range(4):
                backend.generate_batch([chat], GenParams(max_new_tokens=4))
            backend.close()
            assert spec_id(spec).endswith(f"+lora:{adapter_sha256(adapter)[:16]}")
        names = [adapter_name(adapter_sha256(p)) for p in (first, second)]
        assert names[0] != names[1]  # a new adapter is a new name, never a same-name reload
        for server in (a, b):
            assert server.loaded_adapters == {
                names[0]: "/mnt/shared/runs/r/iter_000/adapter", names[1]: "/mnt/shared/runs/r/iter_001/adapter"}
            # the base model once, then each adapter on its half of the 4 requests (round robin)
            assert server.models_asked == ["base-7b", names[0], names[0], names[1], names[1]]
        # a resumed run loads the same adapter again: the server's "already loaded" is fine
        build_backend(_spec(urls, first, adapter_path_from=str(tmp_path / "runs"),
                            adapter_path_to="/mnt/shared/runs")).close()
        assert len(a.load_requests) == 3


def test_a_server_without_runtime_lora_is_one_clear_error(tmp_path):
    adapter = _adapter(tmp_path / "adapter")
    with StubServer() as plain:
        with pytest.raises(ModelSpecError, match="enable-lora") as refused:
            build_backend(_spec([plain.base_url], adapter))
    assert "\n" not in str(refused.value)


def test_paths_and_endpoints(tmp_path):
    assert server_path(tmp_path / "runs" / "x", str(tmp_path / "runs"), "/srv") == "/srv/x"
    assert server_path(tmp_path / "other", str(tmp_path / "runs"), "/srv") == str((tmp_path / "other").resolve())
    assert load_url("http://h:8000/v1", "vllm") == "http://h:8000/v1/load_lora_adapter"
    assert load_url("http://h:30000/v1", "sglang") == "http://h:30000/load_lora_adapter"
