"""The principle library: every principle ever written in a run, with its status and record.

In: principles proposed by the oracle, revisions judged after using them, settings.
Out: the library (a list of `Principle`s, ids unique) and what each step changed:
- `merge_new`: each new principle is compared by sentence-embedding cosine similarity with the
  active principles (and the new ones accepted before it); at or above the threshold it is kept
  with status "merged" and `merged_into` the closest one, whose evidence gains the new
  principle's failures (the same rule now covers them). Otherwise it becomes active.
- `record_fixes`: a principle's fix attempts are the revisions of its own evidence failures made
  with it in the prompt; the judge passing such a revision is a fix.
- `retire`: with a rule configured, a principle with enough attempts and a fix rate below it
  stops being used (status "retired"), and says why in the record.
Records are immutable: each step returns a new list. `constitution.json` stores the library;
`load_start` reads one from an earlier run as this run's starting constitution.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from iteralign.constitution.embedding import Embedder, cosine
from iteralign.errors import ConfigError
from iteralign.records import Principle, Revision

FORMAT_VERSION = 1


@dataclass
class MergeResult:
    library: list[Principle]
    added: list[Principle] = field(default_factory=list)  # now active
    merged: list[dict] = field(default_factory=list)  # {"id", "new", "into", "similarity"}


def active(library: list[Principle]) -> list[Principle]:
    return [p for p in library if p.status == "active"]


def merge_new(library: list[Principle], new: list[Principle], embedder: Embedder, threshold: float) -> MergeResult:
    if not new:
        return MergeResult(list(library))
    by_id = {p.id: p for p in library}
    candidates = active(library)
    if not candidates and len(new) == 1:  # nothing to compare with: no need to embed
        return MergeResult(list(library) + list(new), added=list(new))
    vectors = embedder.embed([p.text for p in candidates] + [p.text for p in new])
    known, fresh = vectors[: len(candidates)], vectors[len(candidates):]
    result = MergeResult([])
    order = list(by_id)
    for k, principle in enumerate(new):
        sims = cosine(fresh[k:k + 1], known)[0]
        best = int(sims.argmax()) if len(sims) else -1
        if best >= 0 and sims[best] >= threshold:
            target = by_id[candidates[best].id]
            extra = [e for e in principle.evidence if e not in target.evidence]
            by_id[target.id] = target.model_copy(update={"evidence": target.evidence + extra})
            similarity = round(float(sims[best]), 4)
            by_id[principle.id] = principle.model_copy(update={"status": "merged", "merged_into": target.id,
                                                               "similarity": similarity})
            result.merged.append({"id": principle.id, "new": principle.text, "into": target.id,
                                  "similarity": similarity})
        else:
            by_id[principle.id] = principle
            result.added.append(principle)
            candidates.append(principle)  # later new principles may merge into this one
            known = np.vstack([known, fresh[k:k + 1]])
        order.append(principle.id)
    result.library = [by_id[i] for i in order]
    return result


def record_fixes(library: list[Principle], revisions: list[Revision]) -> list[Principle]:
    """Add this iteration's revisions to each principle's fix record: every judged attempt at
    one of its own failures counts (a failure fixed on the 4th sample is 1 fix in 4 attempts);
    unscored attempts do not count. A loaded principle's failures are every revision that
    had it in the prompt."""
    counts: dict[str, list[int]] = {}
    for principle in library:
        evidence = set(principle.evidence)
        # a loaded principle (seed, or another run's) has no failures of this run: every
        # revision written with it in the prompt is its attempt
        loaded = principle.iteration == -1
        for revision in revisions:
            if principle.id not in revision.principle_ids or not (loaded or revision.prompt_id in evidence):
                continue
            judged = [v for v in revision.judged() if v.status != "unscored"]
            if judged:
                tally = counts.setdefault(principle.id, [0, 0])
                tally[0] += len(judged)
                tally[1] += sum(v.status == "ok" for v in judged)
    return [p.model_copy(update={"fix_attempts": p.fix_attempts + counts[p.id][0],
                                 "fix_passed": p.fix_passed + counts[p.id][1]}) if p.id in counts else p
            for p in library]


def retire(library: list[Principle], below: float | None, min_attempts: int) -> tuple[list[Principle], list[str]]:
    if below is None:
        return library, []
    out, retired = [], []
    for p in library:
        if p.status == "active" and p.fix_attempts >= min_attempts and (p.fix_rate or 0.0) < below:
            p = p.model_copy(update={"status": "retired"})
            retired.append(p.id)
        out.append(p)
    return out, retired


def to_document(library: list[Principle], run_name: str, embedding_model: str) -> dict:
    return {"format": FORMAT_VERSION, "run": run_name, "embedding_model": embedding_model,
            "counts": {status: sum(p.status == status for p in library) for status in ("active", "merged", "retired")},
            "principles": [p.model_dump(mode="json") | {"fix_rate": p.fix_rate} for p in library]}


def from_document(document: dict, where: str) -> list[Principle]:
    try:
        rows = document["principles"]
        return [Principle.model_validate({k: v for k, v in row.items() if k != "fix_rate"}) for row in rows]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: not an iteralign constitution.json ({str(exc).splitlines()[0]})") from None


SEED = "seed"  # constitution.start_from: the seed constitution shipped with iteralign


def seed_path() -> Path:
    return Path(__file__).resolve().parents[1] / "configs" / "constitutions" / "seed.json"


def load_start(path: str | Path) -> list[Principle]:
    """The active principles of a constitution.json (an earlier run's, or `seed`: the one shipped
    in configs/constitutions/seed.json), renamed S1, S2, ... Their evidence points at another
    run's prompts (the seed's: none); `origin` says where each came from."""
    path = seed_path() if str(path) == SEED else Path(path)
    if not path.is_file():
        raise ConfigError(f"constitution.start_from: {path} not found; point it at a run's constitution.json, "
                          f"or use {SEED!r} for the shipped seed constitution")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"constitution.start_from: {path} is not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ConfigError(f"constitution.start_from: {path} is not an iteralign constitution.json (not a mapping)")
    loaded = active(from_document(document, f"constitution.start_from: {path}"))
    return [p.model_copy(update={"id": f"S{k + 1}", "iteration": -1, "origin": f"{path.name}#{p.id}",
                                 "fix_attempts": 0, "fix_passed": 0, "merged_into": None, "similarity": None})
            for k, p in enumerate(loaded)]
