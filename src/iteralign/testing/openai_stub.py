"""A small OpenAI-compatible HTTP server for tests and benchmarks, and a llama.cpp server launcher.

`StubServer` answers POST /v1/chat/completions on 127.0.0.1 (a free port) with a canned judge
reply, the text of a `reply(request_json)` callable (the request's headers under "_headers"), or
whatever a real `upstream` server says, after `latency_s`. `echo_headers_on_error` makes its
HTTP 500s repeat the request headers, as some proxies do: the test of keeping keys off disk. With `fault_rate` > 0 it injects faults: HTTP 500, a hang of `hang_s` (the
client should time out first) or a malformed answer. Whether a request faults is a pure function
of (seed, request body, how often this same body was sent before), so a client's retry of one
request may succeed where the first try failed, yet a whole run is reproducible.

    with StubServer(latency_s=0.1, fault_rate=0.2) as srv:
        backend = build_backend(OpenAIModel(backend="openai", model="stub", base_url=srv.base_url))
        ...
        srv.stats  # {"requests": ..., "ok": ..., "500": ..., "timeout": ..., "malformed": ...}

`llama_server(gguf_path)` runs llama-cpp-python's OpenAI server (`pip install
'llama-cpp-python[server]'`) as a subprocess and yields its base URL once it answers.
Standard library only, except httpx for `upstream` forwarding and the readiness probe.
"""
from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

CANNED_REPLY = json.dumps({"verdict": "ok", "categories": [], "rationale": "stub"})
FAULT_KINDS = ("500", "timeout", "malformed", "malformed_body", "malformed_content")
# "malformed" alternates (deterministically) between the two concrete kinds below; all three
# are counted under stats["malformed"].
_TRUNCATED_BODY = b'{"choices": ['
_NOT_JSON_CONTENT = "Sure! The answer is ok"


def completion_body(content: Any, model: str = "stub", n: int = 0) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-stub-{n}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
    }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler hanging on purpose must not hold up close()
    stub: "StubServer"

    def handle_error(self, request, client_address) -> None:
        pass  # a client that timed out and hung up is expected here, not news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like a real server
    # headers and body go out as two writes; with Nagle on, the client's delayed ACK adds ~40 ms
    # to every keep-alive request, which would swamp the latency a benchmark injects
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _send_json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"))

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send_json(200, {"object": "list", "data": [{"id": "stub", "object": "model", "owned_by": "iteralign"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route GET {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path.rstrip("/") in ("/v1/load_lora_adapter", "/load_lora_adapter"):
            self.server.stub._handle_lora_load(self, body)
            return
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._send_json(404, {"error": {"message": f"no route POST {self.path}", "type": "not_found"}})
            return
        self.server.stub._handle_completion(self, body)


class StubServer:
    """An OpenAI-compatible chat-completions server on 127.0.0.1; use as a context manager."""

    def __init__(self, upstream: str | None = None, latency_s: float = 0.0, fault_rate: float = 0.0,
                 faults: Sequence[str] = ("500", "timeout", "malformed"), hang_s: float = 5.0, seed: int = 0,
                 reply: Callable[[dict[str, Any]], Any] | None = None, echo_headers_on_error: bool = False,
                 lora_base_model: str | None = None):
        unknown = [f for f in faults if f not in FAULT_KINDS]
        if unknown or (fault_rate > 0 and not faults):
            raise ValueError(f"faults must be a non-empty subset of {FAULT_KINDS}, got {tuple(faults)}")
        self.upstream = upstream.rstrip("/") if upstream else None
        self.latency_s, self.fault_rate, self.faults = latency_s, fault_rate, tuple(faults)
        # reply(request_json) -> the message content: normally a str; anything JSON-serialisable is
        # sent as-is, to imitate servers that answer with content parts or null
        self.hang_s, self.seed, self.reply = hang_s, seed, reply
        # like some proxies and debug servers: a 500's error message repeats the request headers
        self.echo_headers_on_error = echo_headers_on_error
        # vLLM's runtime LoRA: with a base model name, POST /v1/load_lora_adapter registers
        # {lora_name: lora_path} (a second load of a name is HTTP 400 "already loaded"), and a chat
        # request must name the base model or a loaded adapter (else 404, as vLLM answers)
        self.lora_base_model = lora_base_model
        self.loaded_adapters: dict[str, str] = {}
        self.load_requests: list[dict[str, Any]] = []
        self.models_asked: list[str] = []
        self.stats: dict[str, int] = {"requests": 0, "ok": 0, "500": 0, "timeout": 0, "malformed": 0}
        self.headers: list[dict[str, str]] = []  # request headers as received, in arrival order
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._upstream_client = None

    # ---- lifecycle --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "StubServer":
        if self.upstream:
            import httpx

            self._upstream_client = httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0))
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai-stub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()  # wakes handlers sleeping on latency or a hang
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._upstream_client is not None:
            self._upstream_client.close()

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ---- requests ---------------------------------------------------------------------------

    def _decide(self, body: bytes) -> str | None:
        """The fault for this request (a concrete kind), or None; deterministic per run."""
        body_hash = hashlib.sha256(body).hexdigest()
        with self._lock:
            attempt = self._attempts.get(body_hash, 0)
            self._attempts[body_hash] = attempt + 1
        if self.fault_rate <= 0:
            return None
        digest = hashlib.sha256(f"{self.seed}\0{body_hash}\0{attempt}".encode()).digest()
        if int.from_bytes(digest[:8], "big") / 2**64 >= self.fault_rate:
            return None
        kind = self.faults[digest[8] % len(self.faults)]
        if kind == "malformed":
            kind = "malformed_body" if digest[9] % 2 == 0 else "malformed_content"
        return kind

    def _count(self, outcome: str) -> None:
        key = "malformed" if outcome.startswith("malformed") else outcome
        with self._lock:
            self.stats[key] += 1

    def _handle_lora_load(self, handler: _Handler, body: bytes) -> None:
        request = json.loads(body or b"{}")
        with self._lock:
            self.load_requests.append(request)
            name, path = request.get("lora_name"), request.get("lora_path")
            if self.lora_base_model is None:
                handler._send_json(404, {"error": {"message": "runtime LoRA is not enabled", "type": "not_found"}})
            elif not name or not path:
                handler._send_json(400, {"error": {"message": "lora_name and lora_path are required"}})
            elif name in self.loaded_adapters:
                handler._send_json(400, {"error": {"message": f"The lora adapter '{name}' has already been loaded."}})
            else:
                self.loaded_adapters[name] = path
                handler._send(200, f"Success: LoRA adapter '{name}' added successfully.".encode(), "text/plain")

    def _handle_completion(self, handler: _Handler, body: bytes) -> None:
        if self.lora_base_model is not None:
            model = json.loads(body or b"{}").get("model")
            with self._lock:
                self.models_asked.append(model)
                known = model == self.lora_base_model or model in self.loaded_adapters
            if not known:
                handler._send_json(404, {"error": {"message": f"The model `{model}` does not exist.",
                                                   "type": "NotFoundError"}})
                return
        with self._lock:
            self.stats["requests"] += 1
            number = self.stats["requests"]
            self.headers.append({k.lower(): v for k, v in handler.headers.items()})
        fault = self._decide(body)
        if fault is not None:
            self._count(fault)
        if fault == "500":
            message = "injected server error"
            if self.echo_headers_on_error:
                message += f"; request headers: {dict(handler.headers.items())}"
            handler._send_json(500, {"error": {"message": message, "type": "server_error"}})
            return
        if fault == "timeout":
            self._closing.wait(self.hang_s)
        elif self.latency_s > 0:
            self._closing.wait(self.latency_s)
        if fault == "malformed_body":
            handler._send(200, _TRUNCATED_BODY)
            return
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            handler._send_json(400, {"error": {"message": "request body is not JSON", "type": "invalid_request_error"}})
            return
        model = str(request.get("model", "stub"))
        if fault == "malformed_content":
            handler._send_json(200, completion_body(_NOT_JSON_CONTENT, model, number))
            return
        if self.upstream:
            status, content_type, answer = self._forward(handler, body)
            handler._send(status, answer, content_type)
        else:
            # the reply callable may read the request's headers too, under "_headers"
            request["_headers"] = {k.lower(): v for k, v in handler.headers.items()}
            content = self.reply(request) if self.reply is not None else CANNED_REPLY
            handler._send_json(200, completion_body(content, model, number))
        if fault is None:
            self._count("ok")

    def _forward(self, handler: _Handler, body: bytes) -> tuple[int, str, bytes]:
        import httpx

        headers = {"Content-Type": "application/json"}
        if handler.headers.get("Authorization"):
            headers["Authorization"] = handler.headers["Authorization"]
        try:
            answer = self._upstream_client.post(f"{self.upstream}/chat/completions", content=body, headers=headers)
        except httpx.HTTPError as exc:
            error = {"error": {"message": f"upstream {self.upstream} failed: {exc}", "type": "upstream_error"}}
            return 502, "application/json", json.dumps(error).encode("utf-8")
        return answer.status_code, answer.headers.get("content-type", "application/json"), answer.content


# ---- llama.cpp's OpenAI server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_llama_server(gguf_path: str | Path, port: int | None = None, extra_args: Sequence[str] = (),
                       ready_timeout_s: float = 120.0) -> tuple[subprocess.Popen, str]:
    """Start `python -m llama_cpp.server` on 127.0.0.1 and wait until GET /v1/models answers.

    Returns (process, base_url); the caller terminates the process (or use `llama_server`).
    Its output goes to a temporary log file, quoted in the error if it fails to come up.
    """
    import httpx

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"llama.cpp's server is not installed ({exc}); pip install 'llama-cpp-python[server]'") from None
    port = port or free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_file = tempfile.NamedTemporaryFile(prefix="llama-server-", suffix=".log", delete=False)
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_path), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", "4096", *extra_args]
    process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    log_file.close()
    process.log_path = log_file.name  # type: ignore[attr-defined]
    deadline = time.monotonic() + ready_timeout_s
    while True:
        if process.poll() is not None:
            tail = Path(log_file.name).read_text(errors="replace")[-2000:]
            raise RuntimeError(f"llama.cpp server exited with code {process.returncode}; log {log_file.name}:\n{tail}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2.0).status_code == 200:
                return process, base_url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_process(process)
            raise RuntimeError(f"llama.cpp server did not answer on {base_url} within {ready_timeout_s:.0f} s; "
                               f"log {log_file.name}")
        time.sleep(0.5)


def stop_process(process: subprocess.Popen, grace_s: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def llama_server(gguf_path: str | Path, port: int | None = None, extra_args: Sequence[str] = (),
                 ready_timeout_s: float = 120.0) -> Iterator[str]:
    """Yield the base URL of a running llama.cpp OpenAI server; stop it on exit."""
    process, base_url = start_llama_server(gguf_path, port, extra_args, ready_timeout_s)
    try:
        yield base_url
    finally:
        stop_process(process)
        Path(process.log_path).unlink(missing_ok=True)
