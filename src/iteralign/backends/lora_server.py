"""The model being aligned, answered by OpenAI-compatible servers that load LoRA adapters at run
time (vLLM, SGLang), balanced over several servers on the client side.

In: the servers' base URLs and base model name, the adapter folder (or none), and how the servers
see our paths. Out: a backend whose requests name the adapter as their `model`. On build, the
adapter is loaded on every server under a name of its own, `iteralign-<sha256[:16]>` of the
adapter's files: a re-trained adapter is a new name, never a same-name reload (vLLM has known
bugs there, vLLM #42125), and a resumed run asks for the name already loaded, which the servers
answer as "already loaded" (accepted).
- vLLM: `POST {base_url}/load_lora_adapter {"lora_name", "lora_path"}` (base_url ends in /v1;
  the server needs `--enable-lora` and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True);
- SGLang: `POST {server root}/load_lora_adapter`, the same body.
The path sent is ours with `adapter_path_from` replaced by `adapter_path_to` (the servers may
mount the run directory elsewhere).
"""
from __future__ import annotations

import itertools
import threading
from pathlib import Path

from iteralign.backends.base import Backend, Chat, GenParams
from iteralign.backends.openai_compat import OpenAIBackend, read_api_key
from iteralign.errors import ModelSpecError
from iteralign.redact import scrub


def adapter_name(sha256: str) -> str:
    return f"iteralign-{sha256[:16]}"


def server_path(adapter: Path, path_from: str | None, path_to: str | None) -> str:
    local = str(Path(adapter).resolve())
    if path_from and path_to:
        prefix = str(Path(path_from).resolve())
        if local == prefix or local.startswith(prefix.rstrip("/") + "/"):
            return path_to.rstrip("/") + local[len(prefix.rstrip("/")):]
    return local


def load_url(base_url: str, server: str) -> str:
    root = base_url.rstrip("/")
    if server == "sglang" and root.endswith("/v1"):
        root = root[:-3]
    return f"{root}/load_lora_adapter"


def load_adapter(base_url: str, server: str, name: str, path: str, api_key: str, timeout_s: float) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        reply = httpx.post(load_url(base_url, server), json={"lora_name": name, "lora_path": path},
                           headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise ModelSpecError(scrub(f"models.base.generate_with: {base_url} could not load adapter {name} "
                                   f"({type(exc).__name__}); is the server up?")) from None
    if reply.status_code == 200 or (reply.status_code == 400 and "already" in reply.text.lower()):
        return
    raise ModelSpecError(scrub(f"models.base.generate_with: {base_url} refused to load adapter {name} from {path} "
                               f"(HTTP {reply.status_code}: {reply.text[:160]}); start vLLM with --enable-lora and "
                               "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, and check adapter_path_from/to"))


class LoRAServerBackend(Backend):
    supports_json_schema = True

    def __init__(self, *, spec_id: str, model: str, base_urls: list[str], server: str, adapter: Path | None,
                 adapter_sha256: str | None, api_key_env: str | None, path_from: str | None, path_to: str | None,
                 max_concurrency: int, timeout_s: float, max_retries: int):
        self.spec_id = spec_id
        self.max_concurrency = max_concurrency * len(base_urls)
        served = model
        if adapter is not None:
            served = adapter_name(adapter_sha256 or "")
            path = server_path(adapter, path_from, path_to)
            key = read_api_key(api_key_env) if api_key_env else ""
            for url in base_urls:
                load_adapter(url, server, served, path, key, timeout_s)
        self.served_model = served
        self.clients = [OpenAIBackend(served, spec_id=spec_id, base_url=url, api_key_env=api_key_env,
                                      max_concurrency=max_concurrency, timeout_s=timeout_s, max_retries=max_retries)
                        for url in base_urls]
        self._turn = itertools.cycle(range(len(self.clients)))
        self._lock = threading.Lock()

    def generate_batch(self, chats: list[Chat], params: GenParams) -> list[str]:
        with self._lock:  # round robin over the servers, one engine call each
            client = self.clients[next(self._turn)]
        return client.generate_batch(chats, params)

    def close(self) -> None:
        for client in self.clients:
            client.close()
