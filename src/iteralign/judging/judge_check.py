"""`iteralign judge-check`: a judge named on the command line, checked, written, tabulated.

In: the judge ("refusal" or an oracle model string/file), its mode, completion files (default:
the shared XSTest completions), a limit, where to write. Out: the figures document (also written
to `out` when given, atomically, after everything was computed) and the lines to print.
Everything that can be checked is checked before a model is loaded.
"""
from __future__ import annotations

import time
from pathlib import Path

from iteralign.config import JudgeConfig
from iteralign.errors import UserError
from iteralign.judging.check import oracle_classifier, refusal_classifier, run_check, table_lines

REFUSAL = "refusal"


def judge_check(judge: str, mode: str, files: list[Path], data_dir: Path | None, limit: int | None,
                out: Path | None) -> tuple[dict, list[str]]:
    if mode not in ("structured", "paper"):
        raise UserError(f"--mode {mode}: choose structured or paper")
    if out is not None and out.is_dir():
        raise UserError(f"--out {out}: is a folder; give a file name such as judge_check.json")
    start = time.perf_counter()
    if judge == REFUSAL:
        document = run_check(["xstest-completions"], refusal_classifier(), data_dir, limit, files)
        name = "refusal (model-free)"
    else:
        from iteralign.backends.cached import CachedModel
        from iteralign.backends.registry import build_backend, check_spec, parse_model_string, spec_id
        from iteralign.store.call_cache import CallCache

        spec = parse_model_string(judge, "judge")
        check_spec(spec, "judge")
        run_check(["xstest-completions"], lambda prompts, answers: [None] * len(prompts), data_dir, limit, files)
        cache = CallCache(":memory:")
        model = CachedModel(build_backend(spec), cache)
        try:
            document = run_check(["xstest-completions"], oracle_classifier(model, JudgeConfig(mode=mode)), data_dir,
                                 limit, files)
        finally:
            model.backend.close()
            cache.close()
        name = f"{spec_id(spec)} ({mode})"
    document = {"judge": name, **document, "seconds": round(time.perf_counter() - start, 2)}
    if out is not None:
        from iteralign.store.run_dir import write_json

        write_json(out, document)
    return document, [f"judge: {name}", *table_lines(document)]
