"""Running a folder's stages once: compute, record, write; on resume, check and skip.

In: a folder (the baseline or an iteration), a way to read the call counts of the live models,
and whether unscored-after-an-outage answers may be kept. `stage(name, artifact, compute, cls,
check)` returns the stage's value:
- the artifact exists and holds what it should (it parses, and `check(value)` finds its counts
  agree with the stage's inputs): it is read and the stage skipped;
- it exists but is damaged (a line cut or removed, a stray edit): a warning names it, it is
  deleted and computed again; every call it had made comes from the call cache, so the same
  value comes back at no cost;
- it does not exist: `compute()` runs, its seconds and calls (made / cached / failed / retried)
  go into stages.json, then the artifact is written atomically.
A stage whose judge got no reply at all for some answers (`transport_failed`, after the
backend's own retries) is not written unless `accept_unscored`: the run stops with one line,
and the same command retries exactly those calls.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Callable

from iteralign.backends.cached import CallCounts
from iteralign.errors import OutageError
from iteralign.records import Revision, StageStats, Verdict
from iteralign.store import layout
from iteralign.store.reader import Damaged, load
from iteralign.store.run_dir import read_json, write_json, write_records

log = logging.getLogger(__name__)

Check = Callable[[object], "str | None"]  # what is wrong with a stage's value, or None


def transport_failures(value) -> tuple[int, str]:
    """(answers the judge got no reply for, the first such error) in a stage's value."""
    verdicts: list[Verdict] = []
    if isinstance(value, list):
        for item in value:
            if isinstance(item, Verdict):
                verdicts.append(item)
            elif isinstance(item, Revision):
                verdicts += item.judged()
    failed = [v for v in verdicts if v.transport_failed]
    if isinstance(value, dict) and isinstance(value.get("benchmarks"), dict):  # eval.json
        examples = [e for b in value["benchmarks"].values() for e in b.get("examples", [])]
        bad = [e for e in examples if (e.get("details") or {}).get("transport_failed")]
        return len(bad), (bad[0]["details"].get("error", "") if bad else "")
    return len(failed), (failed[0].error if failed else "")


class StageRunner:
    def __init__(self, folder: Path, counts: Callable[[], CallCounts], accept_unscored: bool = False,
                 root: Path | None = None):
        self.dir, self._counts, self.accept_unscored = folder, counts, accept_unscored
        self._root = root or folder.parent
        stats_path = self.dir / layout.STAGES
        self.stats: dict[str, dict] = {}
        if stats_path.is_file():
            try:
                loaded = read_json(stats_path)
                self.stats = loaded if isinstance(loaded, dict) else {}
            except (OSError, UnicodeDecodeError, ValueError):
                log.warning("%s is damaged; its stage times start again", self._name(stats_path))

    def _name(self, path: Path) -> str:
        try:
            return path.relative_to(self._root).as_posix()
        except ValueError:
            return str(path)

    def stage(self, name: str, artifact: str, compute: Callable, cls=None, check: Check | None = None):
        path = self.dir / artifact
        if path.exists():
            try:
                value, problem = load(path, cls), None
            except Damaged as exc:
                value, problem = None, str(exc)
            if problem is None and check is not None:
                problem = check(value)
            if problem is None:
                return value
            log.warning("%s is damaged (%s); computing it again from the call cache", self._name(path), problem)
            path.unlink()
        before, start = self._counts(), time.perf_counter()
        value = compute()
        delta = self._counts().minus(before)
        failed, error = transport_failures(value)
        self.stats[name] = StageStats(seconds=round(time.perf_counter() - start, 2), calls_made=delta.made,
                                      calls_cached=delta.cached, calls_failed=delta.failed,
                                      calls_retried=delta.retried, transport_failed=failed).model_dump()
        write_json(self.dir / layout.STAGES, self.stats)  # before the artifact: a skipped stage keeps its stats
        if failed and not self.accept_unscored:
            raise OutageError(f"{self._name(path)}: {failed} answers got no reply from the judge after every retry "
                              f"({error[:160]}); run the same command again to retry exactly those calls, or add "
                              "--accept-unscored to keep them unscored")
        if cls:
            write_records(path, value)
        else:
            write_json(path, value)
        return value


def same_ids(expected: list[str], field: str = "prompt_id") -> Check:
    """A check that a stage's records are exactly one per expected id, in order."""
    def check(records) -> str | None:
        if not isinstance(records, list):
            return "not a list of records"
        got = [getattr(r, field) for r in records]
        if got != expected:
            return f"{len(got)} records where {len(expected)} were expected" if len(got) != len(expected) else \
                "records out of order or for other prompts"
        return None
    return check
