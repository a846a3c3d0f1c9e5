"""OpenAI-compatible HTTP backend: OpenAI, vLLM serve, llama.cpp server, Ollama, TGI.

In: a model name, a base URL, and the *name* of an environment variable holding the API key
(the key itself is read from the environment at start and lives only in the client's headers;
it is never part of `spec_id`, the cache, logs or the run directory). Out: one chat completion
per call, up to `max_concurrency` in flight. The openai client retries 408/409/429/5xx and
timeouts with exponential backoff (`max_retries`); what still fails, or answers with a body that
is not a chat completion, raises `BackendCallError` for that one request.
"""
from __future__ import annotations

import logging
import os

from iteralign.backends.base import Backend, BackendCallError, Chat, GenParams
from iteralign.errors import ModelSpecError
from iteralign.redact import register, scrub

log = logging.getLogger(__name__)


def read_api_key(api_key_env: str | None) -> str:
    if not api_key_env:
        return "not-needed"  # local servers ignore the key, but the client wants one
    key = os.environ.get(api_key_env)
    if not key:
        raise ModelSpecError(f"environment variable {api_key_env} is not set (named by api_key_env); export it and re-run")
    register(key)  # from now on scrubbed from everything stored or printed
    return key


class OpenAIBackend(Backend):
    supports_json_schema = True

    def __init__(self, model: str, *, spec_id: str, base_url: str | None = None, api_key_env: str | None = None,
                 max_concurrency: int = 8, timeout_s: float = 60.0, max_retries: int = 4,
                 structured_output: str = "json_schema"):
        import openai

        self.spec_id = spec_id
        self.model = model
        self.max_concurrency = max_concurrency
        self.structured_output = structured_output
        self._openai = openai
        self.client = openai.OpenAI(
            api_key=read_api_key(api_key_env), base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    def _response_format(self, schema: dict | None) -> dict | None:
        if schema is None or self.structured_output == "none":
            return None
        if self.structured_output == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": False}}

    def generate_batch(self, chats: list[Chat], params: GenParams) -> list[str]:
        texts = []
        for chat in chats:
            kwargs = {}
            fmt = self._response_format(params.json_schema)
            if fmt is not None:
                kwargs["response_format"] = fmt
            try:
                reply = self.client.chat.completions.create(
                    model=self.model,
                    messages=chat,
                    max_tokens=params.max_new_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed,
                    **kwargs,
                )
                content = reply.choices[0].message.content
            except (self._openai.AuthenticationError, self._openai.PermissionDeniedError,
                    self._openai.NotFoundError) as exc:
                # no retry can fix a wrong key or model name: stop the run with what to change
                raise ModelSpecError(f"{self.spec_id} refused the request ({exc.status_code}): check the model name, "
                                     f"base_url and api_key_env") from None
            except self._openai.APIError as exc:  # status errors, timeouts, connection errors
                # the body of an error can echo the request, headers included: never keep the key
                raise BackendCallError(scrub(f"{type(exc).__name__}: {str(exc)}")[:200]) from None
            except (ValueError, AttributeError, IndexError, TypeError) as exc:  # a body that is not a completion
                raise BackendCallError(scrub(f"malformed reply: {type(exc).__name__}: {str(exc)}")[:200]) from None
            if not isinstance(content, str):  # None, or a list/number from an odd server: not a crash
                raise BackendCallError(f"reply has no text message content (got {type(content).__name__})")
            texts.append(scrub(content.strip()))  # a reply, too, may echo what it was sent
        return texts

    def close(self) -> None:
        self.client.close()
