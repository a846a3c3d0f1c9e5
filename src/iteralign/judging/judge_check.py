"""`iteralign judge-check`: a judge named on the command line, checked, written, tabulated.

In: the judge ("refusal" or an oracle model string/file), its mode, the checks to run
(judging/check_sets.py), completion files (default: the shared XSTest completions), a limit and
seed, where to write, and the call cache. Out: the figures document (also written to `out` when
given, atomically, after everything was computed) and the lines to print.

Every data file is read before a model is loaded. Every oracle call goes through a call cache
(default `judge_check_calls.sqlite` in iteralign's cache folder, see `backends.embedded.cache_root`): a second
judge-check of the same judge costs nothing. The cache holds requests and replies, never a key.
"""
from __future__ import annotations

import time
from pathlib import Path

from iteralign.errors import UserError
from iteralign.judging.check_sets import SET_NAMES, dry_run, report_lines, run_checks
from iteralign.judging.questions import CheckedJudge

REFUSAL = "refusal"
MODES = ("structured", "paper")


def default_cache() -> Path:
    from iteralign.backends.embedded import cache_root  # one cache folder for every iteralign command

    return cache_root() / "judge_check_calls.sqlite"


def judge_check(judge: str, mode: str, sets: list[str], files: list[Path], data_dir: Path | None,
                limit: int | None, out: Path | None, seed: int = 0, cache_path: Path | None = None,
                max_attempts: int = 3) -> tuple[dict, list[str]]:
    if mode not in MODES:
        raise UserError(f"--mode {mode}: choose structured or paper")
    sets = sets or list(SET_NAMES)
    if out is not None and out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name such as judge_check.json")
    dry_run(sets, data_dir, limit, seed, files)  # every file read and checked before any model loads
    start = time.perf_counter()
    if judge.strip().lower() == REFUSAL:
        name, counts = "refusal (model-free)", None
        document = run_checks(sets, CheckedJudge(name), data_dir, limit, seed, files)
    else:
        from iteralign.backends.cached import CachedModel
        from iteralign.backends.registry import build_backend, check_spec, parse_model_string, spec_id
        from iteralign.store.call_cache import CallCache

        spec = parse_model_string(judge, "judge")
        check_spec(spec, "judge")
        name = f"{spec_id(spec)} ({mode})"
        cache_path = cache_path or default_cache()
        try:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--cache {cache_path}: cannot create its folder ({exc.strerror}); give a writable path")
        cache = CallCache(cache_path)
        model = CachedModel(build_backend(spec), cache)
        try:
            document = run_checks(sets, CheckedJudge(name, model, mode, seed, max_attempts), data_dir, limit, seed,
                                  files)
        finally:
            model.backend.close()
            cache.close()
        counts = {"made": model.counts.made, "cached": model.counts.cached, "failed": model.counts.failed}
    document = {"judge": name, "check_sets": sets, "limit": limit, "seed": seed, **document,
                "seconds": round(time.perf_counter() - start, 2)}
    if counts is not None:
        document["calls"] = counts
    if out is not None:
        from iteralign.store.run_dir import write_json

        write_json(out, document)
    lines = report_lines(document)
    if counts is not None:
        lines.append(f"model calls: {counts['made']} made, {counts['cached']} served from the cache "
                     f"({cache_path}), {counts['failed']} failed")
    return document, lines
