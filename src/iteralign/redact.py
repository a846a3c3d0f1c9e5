"""Keeping API keys off disk and off the terminal.

A key enters iteralign in one place: `read_api_key` (backends/openai_compat.py) reads it from the
environment variable the config names, and `register`s it here. Every string that is stored
(artifacts, the call cache) or printed (logs, errors) and could carry text from a server passes
through `scrub`, which replaces
- every registered key, wherever it appears (a server that echoes its request headers in an
  error body echoes the key);
- `Authorization: ...` and `Bearer ...` material, and `api_key=...`-style pairs, whatever the
  key (an echo of a key we never saw, such as a proxy's);
- credentials in URLs (`scheme://user:password@host`).
`ScrubbingFilter` applies it to log records; the CLI installs it on its handler.
"""
from __future__ import annotations

import logging
import re
import threading

MASK = "***"
_lock = threading.Lock()
_secrets: set[str] = set()

_PATTERNS = [
    # "Authorization: Bearer abc", '"authorization": "Bearer abc"', "x-api-key: abc", "api_key=abc"
    (re.compile(r"(?i)((?:authorization|proxy-authorization|x-api-key|api[-_]?key)[\"']?\s*[:=]\s*[\"']?)"
                r"(?:bearer\s+|basic\s+)?[^\s\"',;}]{4,}"), r"\1" + MASK),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 " + MASK),
    (re.compile(r"(?i)([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@"), r"\1" + MASK + "@"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), "sk-" + MASK),  # an OpenAI-style key on its own
]


def register(secret: str | None) -> None:
    """Remember a secret's value so that `scrub` removes it (values under 6 characters are too
    short to tell from ordinary text and are not registered)."""
    if secret and len(secret) >= 6:
        with _lock:
            _secrets.add(secret)


def scrub(text: str) -> str:
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class ScrubbingFilter(logging.Filter):
    """Rewrites each record's message, arguments merged, through `scrub`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
