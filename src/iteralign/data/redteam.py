"""Red-team prompts: the configured sources in, a de-duplicated train/held-out split out.

In: `DataConfig` (which sources, where the shared data sets live, the held-out fraction) and the
run seed. Out: `RedTeamSet(train, heldout)`, lists of `RedTeamPrompt` with stable ids.

The split and the order depend only on the prompt text and the seed (via sha256), never on
Python's hash randomisation, the machine, or the order of the sources, so a run that is resumed or
repeated elsewhere sees exactly the same prompts in the same order.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import os
import unicodedata
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from iteralign.config import DataConfig, DataSource
from iteralign.data.files import read_prompt_file, unencodable
from iteralign.errors import DataError
from iteralign.records import RedTeamPrompt

log = logging.getLogger(__name__)

ENV_DATA_DIR = "ITERALIGN_DATA_DIR"

# Where each built-in source lives under the shared data folder (see its README.md).
BUILTIN_FILES = {
    "hh_rlhf": "hh_rlhf/harmless-base/test.jsonl.gz",
    "harmfulqa": "harmfulqa/harmfulqa.json",
    "dangerousqa": "dangerousqa/toxic_outs.json",
    "advbench": "advbench/harmful_behaviors.csv",
    "harmbench": "harmbench/harmbench_behaviors_text_all.csv",
}

_HUMAN = "\n\nHuman: "
_ASSISTANT = "\n\nAssistant:"


@dataclass
class RedTeamSet:
    train: list[RedTeamPrompt]
    heldout: list[RedTeamPrompt]


# ---- locating the data ----------------------------------------------------------------------


def resolve_data_dir(data: DataConfig) -> Path | None:
    """`data.dir`, else $ITERALIGN_DATA_DIR, else None; an error if a built-in source needs it."""
    if data.dir:
        found, origin = data.dir, "data.dir"
    else:
        found, origin = os.environ.get(ENV_DATA_DIR) or None, ENV_DATA_DIR
    builtins = [(i, s.name) for i, s in enumerate(data.sources) if s.name != "file"]
    if found is None:
        if builtins:
            i, name = builtins[0]
            raise DataError(
                f"data.sources[{i}] ({name}) is a built-in data set but no data folder is set; "
                f"set data.dir or {ENV_DATA_DIR} to the shared datasets folder"
            )
        return None
    path = Path(found).expanduser()
    if builtins and not path.is_dir():
        raise DataError(
            f"data folder {path} (from {origin}) does not exist; "
            f"set data.dir or {ENV_DATA_DIR} to the shared datasets folder"
        )
    return path


def _user_path(raw: str, data_dir: Path | None) -> Path:
    """A relative path is taken from the current directory, else from the data folder."""
    path = Path(raw).expanduser()
    if not path.is_absolute() and not path.exists() and data_dir is not None:
        if (data_dir / path).exists():
            return data_dir / path
    return path


# ---- built-in readers: each yields raw prompt strings in file order -------------------------


def _read_hh_rlhf(path: Path) -> list[str]:
    prompts = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            chosen = json.loads(line)["chosen"]
            # The red-team prompt is the opening Human turn; later turns answer the assistant.
            start = chosen.find(_HUMAN)
            if start < 0:
                continue
            rest = chosen[start + len(_HUMAN):]
            end = rest.find(_ASSISTANT)
            prompts.append(rest if end < 0 else rest[:end])
    return prompts


def _read_harmfulqa(path: Path) -> list[str]:
    topics = json.loads(path.read_text(encoding="utf-8"))  # {topic: {subtopic: [question]}}
    return [q for subtopics in topics.values() for questions in subtopics.values() for q in questions]


def _read_dangerousqa(path: Path) -> list[str]:
    return list(json.loads(path.read_text(encoding="utf-8")))


def _read_advbench(path: Path) -> list[str]:
    with path.open(encoding="utf-8", newline="") as f:
        return [row["goal"] for row in csv.DictReader(f)]


def _read_harmbench(path: Path) -> list[str]:
    # Only "standard" behaviours stand alone: "contextual" ones need their ContextString and
    # "copyright" ones need HarmBench's hash-based classifier, neither of which we use.
    with path.open(encoding="utf-8", newline="") as f:
        return [row["Behavior"] for row in csv.DictReader(f) if row["FunctionalCategory"] == "standard"]


_READERS: dict[str, Callable[[Path], list[str]]] = {
    "hh_rlhf": _read_hh_rlhf,
    "harmfulqa": _read_harmfulqa,
    "dangerousqa": _read_dangerousqa,
    "advbench": _read_advbench,
    "harmbench": _read_harmbench,
}


def load_source(source: DataSource, data_dir: Path | None, max_chars: int, where: str) -> list[str]:
    """The prompts of one source, stripped and limited to `source.limit`, in file order."""
    if source.name == "file":
        assert source.path is not None  # DataSource's validator guarantees it
        prompts = read_prompt_file(_user_path(source.path, data_dir), source.column, max_chars, where)
        return prompts[: source.limit] if source.limit else prompts

    if data_dir is None:
        raise DataError(
            f"{where} ({source.name}) is a built-in data set but no data folder is set; "
            f"set data.dir or {ENV_DATA_DIR} to the shared datasets folder"
        )
    path = data_dir / BUILTIN_FILES[source.name]
    if not path.is_file():
        raise DataError(
            f"{where} ({source.name}): expected {path}, which is missing; "
            f"check that data.dir or {ENV_DATA_DIR} points at the shared datasets folder"
        )
    try:
        raw = _READERS[source.name](path)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, ValueError, KeyError, TypeError,
            AttributeError, csv.Error) as exc:
        # A shipped data set that does not parse is damaged or a different version.
        raise DataError(
            f"{path}: cannot read {source.name} ({type(exc).__name__}: {exc}); "
            "re-copy the shared datasets folder (its SHA256SUMS lists the expected files)"
        ) from None

    # Built-in sets are public and fixed: drop their odd empty or over-long rows rather than
    # refuse to run, but say how many went.
    prompts, too_long = [], 0
    for number, text in enumerate(raw, 1):
        text = text.strip() if isinstance(text, str) else ""
        if not text:
            continue
        bad = unencodable(text)
        if bad is not None:
            raise DataError(f"{path}: prompt {number} holds {bad}; re-copy the shared datasets folder")
        if len(text) > max_chars:
            too_long += 1
            continue
        prompts.append(text)
    if too_long:
        log.warning("%s (%s): skipped %d prompts over data.max_prompt_chars=%d",
                    where, source.name, too_long, max_chars)
    return prompts[: source.limit] if source.limit else prompts


# ---- de-duplication and the split -----------------------------------------------------------


def normalise(text: str) -> str:
    """The key two prompts share when they differ only in case, spacing or final punctuation."""
    key = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    stripped = key
    while stripped and (unicodedata.category(stripped[-1]).startswith("P") or stripped[-1].isspace()):
        stripped = stripped[:-1]
    return stripped or key  # a prompt that is all punctuation keeps it, so it stays distinct


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_redteam(data: DataConfig, seed: int) -> RedTeamSet:
    """Load every source in order, drop duplicates (first wins), split and order by seed."""
    data_dir = resolve_data_dir(data)
    seen: set[str] = set()
    kept: list[tuple[str, str, str]] = []  # (normalised, text, source name)
    duplicates: Counter[str] = Counter()
    for i, source in enumerate(data.sources):
        where = f"data.sources[{i}]"
        prompts = load_source(source, data_dir, data.max_prompt_chars, where)
        added = 0
        for text in prompts:
            key = normalise(text)
            if key in seen:
                duplicates[source.name] += 1
                continue
            seen.add(key)
            kept.append((key, text, source.name))
            added += 1
        log.debug("%s (%s): %d prompts, %d new", where, source.name, len(prompts), added)
    if duplicates:
        log.debug("removed %d duplicate prompts (%s)", sum(duplicates.values()),
                 ", ".join(f"{name}: {n}" for name, n in duplicates.items()))
    if not kept:
        raise DataError("data.sources: no prompts were loaded; check the sources and their limits")

    train: list[tuple[str, RedTeamPrompt]] = []
    heldout: list[tuple[str, RedTeamPrompt]] = []
    for key, text, name in kept:
        # sha256 as a uniform draw in [0, 1): the same on every machine and Python version.
        is_heldout = int(_sha(f"{seed}:split:{key}"), 16) / 2**256 < data.heldout_fraction
        split = "heldout" if is_heldout else "train"
        prompt = RedTeamPrompt(id=f"{name}-{_sha(key)[:12]}", text=text, source=name, split=split)
        (heldout if is_heldout else train).append((_sha(f"{seed}:order:{key}"), prompt))

    # Sorting by a seeded hash mixes the sources, and adding a source leaves the relative order
    # of the others unchanged.
    def ordered(items: list[tuple[str, RedTeamPrompt]]) -> list[RedTeamPrompt]:
        return [p for _, p in sorted(items, key=lambda item: item[0])]

    result = RedTeamSet(train=ordered(train), heldout=ordered(heldout))
    log.debug("red-team prompts: %d train, %d held out (seed %d)", len(result.train), len(result.heldout), seed)
    if not result.train or not result.heldout:
        log.warning("one split is empty (%d train, %d held out); add prompts or change "
                    "data.heldout_fraction", len(result.train), len(result.heldout))
    return result
