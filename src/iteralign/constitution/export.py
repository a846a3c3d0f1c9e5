"""Read a run's constitution back: for `iteralign constitution RUN_DIR --format md|json`.

In: a run directory. Out: the library from `constitution.json`, the red-team prompts the run
used (iter_*/01_prompts.jsonl) and the answers judged violations (02 + 03), which the Markdown
quotes as examples. A folder without a constitution.json is not a finished-enough run: one clear
error. A run interrupted mid-iteration still has the constitution of its last finished stage.
"""
from __future__ import annotations

import json
from pathlib import Path

from iteralign.constitution.library import from_document, to_document
from iteralign.errors import ConfigError, RunDirError
from iteralign.records import Principle, RedTeamPrompt, Response, Verdict
from iteralign.report.constitution import render_constitution
from iteralign.store import layout
from iteralign.store.reader import Damaged, load
from iteralign.store.run_dir import write_json, write_text_atomic


def _lenient(path: Path, kind) -> list:
    """A file's records, or none when it is missing or damaged (the examples are optional)."""
    try:
        return load(path, kind) if path.is_file() else []
    except Damaged:
        return []


def load_failures(root: Path) -> dict[str, str]:
    """{prompt id: the answer judged a violation} over the run's iterations, for examples."""
    failed: dict[str, str] = {}
    for folder in sorted(root.glob("iter_*")):
        answers = _lenient(folder / layout.RESPONSES, Response)
        verdicts = _lenient(folder / layout.VERDICTS, Verdict)
        for answer, verdict in zip(answers, verdicts):
            if verdict.status == "violation":
                failed.setdefault(answer.prompt_id, answer.text)
    return failed


def load_prompts(root: Path) -> dict[str, RedTeamPrompt]:
    prompts: dict[str, RedTeamPrompt] = {}
    for path in sorted(root.glob(f"iter_*/{layout.PROMPTS}")):
        prompts.update({p.id: p for p in _lenient(path, RedTeamPrompt)})
    return prompts


def read_constitution(run_dir: Path) -> tuple[dict, list[Principle]]:
    path = Path(run_dir) / layout.CONSTITUTION_JSON
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{run_dir}: no such folder; give the run directory (e.g. runs/demo)")
    if not path.is_file():
        if not (Path(run_dir) / layout.MANIFEST).is_file():
            raise RunDirError(f"{run_dir}: not an iteralign run (no manifest.json); give a run directory")
        raise RunDirError(f"{path}: not found; the run has not finished a propose stage yet "
                          "(or was made by an older iteralign); run it (again) to write the constitution")
    try:
        document = load(path)
    except Damaged as exc:
        raise RunDirError(f"{path}: damaged ({exc}); re-run the run to rewrite it") from None
    if not isinstance(document, dict):
        raise RunDirError(f"{path}: not an iteralign constitution.json (a {type(document).__name__}, not a mapping); "
                          "re-run the run to rewrite it")
    try:
        return document, from_document(document, str(path))
    except ConfigError as exc:
        raise RunDirError(str(exc)) from None


def write_constitution(root: Path, library: list[Principle], run_name: str, embedding_model: str,
                       prompts: dict[str, RedTeamPrompt]) -> None:
    """constitution.json (the library) and constitution.md (the document) at the run's root."""
    write_json(root / layout.CONSTITUTION_JSON, to_document(library, run_name, embedding_model))
    write_text_atomic(root / layout.CONSTITUTION_MD,
                      render_constitution(library, prompts, run_name, failures=load_failures(root)))


def export_constitution(run_dir: Path, fmt: str) -> str:
    document, library = read_constitution(run_dir)
    if fmt == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return render_constitution(library, load_prompts(Path(run_dir)), document.get("run") or Path(run_dir).name,
                               failures=load_failures(Path(run_dir)))
