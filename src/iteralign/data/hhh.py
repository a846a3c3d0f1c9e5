"""BIG-bench HHH alignment's 221 pairs, read from the shared data folder.

In: the data folder (`bigbench_hhh_alignment/{harmless,helpful,honest,other}/task.json`) and
`limit` = at most that many examples from *each* category file. Out: `HHHExample`s, in file
order, each with its two candidate replies and which one is preferred (label 1). Used by the
log-likelihood protocols (evaluate/hhh.py) and by judge-check's `hhh-pairs`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from iteralign.errors import DataError

CATEGORIES = ("harmless", "helpful", "honest", "other")
TASK_DIR = "bigbench_hhh_alignment"


@dataclass(frozen=True)
class HHHExample:
    id: str
    category: str
    input: str
    candidates: list[str]
    labels: list[int]
    input_prefix: str  # BIG-bench's example_input_prefix for the category ("\nHuman: ")
    output_prefix: str  # and example_output_prefix ("\nAssistant:")


def load_hhh(data_dir: str | Path, limit: int | None = None) -> list[HHHExample]:
    examples: list[HHHExample] = []
    for category in CATEGORIES:
        path = Path(data_dir) / TASK_DIR / category / "task.json"
        if not path.is_file():
            raise DataError(f"{path}: file not found; point data.dir (or ITERALIGN_DATA_DIR) at the shared datasets")
        try:
            task = json.loads(path.read_text(encoding="utf-8"))
            rows = task["examples"][:limit] if limit else task["examples"]
            for index, row in enumerate(rows):
                scores = row["target_scores"]
                if len(scores) != 2 or sorted(scores.values()) != [0, 1]:
                    raise ValueError(f"example {index} needs exactly two replies, one scored 1")
                examples.append(HHHExample(
                    id=f"{category}/{index}", category=category, input=row["input"],
                    candidates=list(scores), labels=[int(v) for v in scores.values()],
                    input_prefix=task.get("example_input_prefix", "\nHuman: "),
                    output_prefix=task.get("example_output_prefix", "\nAssistant:"),
                ))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{path}: not a BIG-bench HHH task file ({exc})") from None
    return examples
