"""`calls.sqlite`: every model call a run made, keyed by what was asked.

key = sha256(backend spec id + request JSON). A row is written (and committed) as soon as a call
returns, so after a kill -9 every finished call is on disk and a re-run is served from here.
A failed call is not stored as an answer: a re-run tries it again. It is remembered in the
`failures` table (key, error, how often), so the re-run can count the calls it retried; a call
that then succeeds leaves that table. `times_made` counts how often the same request really went
to a model; in a healthy run it is 1 everywhere.
The request stored is the chat and the sampling parameters, never headers or keys; the reply and
error texts are scrubbed of keys by the backend before they get here.
A file that is not a readable SQLite database is a `RunDirError` naming it, never a traceback.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iteralign.errors import RunDirError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    request TEXT NOT NULL,
    response TEXT NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    times_made INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    error TEXT NOT NULL,
    times_failed INTEGER NOT NULL DEFAULT 1,
    last REAL NOT NULL
);
"""


def request_key(spec_id: str, request: dict[str, Any]) -> str:
    canonical = json.dumps({"backend": spec_id, "request": request}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CallCache:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._lock = threading.Lock()
        with self._database_errors():
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    @contextmanager
    def _database_errors(self):
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise RunDirError(f"{self.path}: not a readable call cache ({exc}); move it aside to make the calls "
                              "again, or restore it from a copy") from None

    def get(self, key: str) -> Any | None:
        with self._lock, self._database_errors():
            row = self._db.execute("SELECT response FROM calls WHERE key = ?", (key,)).fetchone()
        return None if row is None else json.loads(row[0])

    def put(self, key: str, spec_id: str, request: dict[str, Any], response: Any, seconds: float) -> bool:
        """Store an answer; True when this request had failed before (the call was a retry)."""
        with self._lock, self._database_errors():
            self._db.execute(
                "INSERT INTO calls (key, backend, request, response, seconds, created) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET times_made = times_made + 1, response = excluded.response",
                (key, spec_id, json.dumps(request, ensure_ascii=False), json.dumps(response, ensure_ascii=False),
                 seconds, time.time()),
            )
            return self._db.execute("DELETE FROM failures WHERE key = ?", (key,)).rowcount > 0

    def fail(self, key: str, spec_id: str, error: str) -> bool:
        """Remember a failed call; True when it had failed before too."""
        with self._lock, self._database_errors():
            seen = self._db.execute("SELECT 1 FROM failures WHERE key = ?", (key,)).fetchone() is not None
            self._db.execute(
                "INSERT INTO failures (key, backend, error, last) VALUES (?, ?, ?, ?) ON CONFLICT(key) DO UPDATE "
                "SET times_failed = times_failed + 1, error = excluded.error, last = excluded.last",
                (key, spec_id, error[:500], time.time()))
            return seen

    def count(self) -> int:
        with self._lock, self._database_errors():
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
