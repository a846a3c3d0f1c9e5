"""Reading artifacts back: one reader, strict for resume, lenient for reports.

`load(path, kind)` returns a JSON document (`kind=None`), a list of dicts (`kind=dict`, for a
JSON Lines file read by a report) or a list of records (`kind=` a record class, for resume). A
file that does not parse as its stage wrote it raises `Damaged` with what is wrong (which line,
cut off, not JSON, not a record of that type). The stage runner turns `Damaged` into a warning and
a recomputation; the report reader turns it into a note and leaves the file out.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError


class Damaged(Exception):
    """The file exists but does not hold what its stage writes."""


def load(path: Path, kind=None):
    try:
        if kind is None:
            return json.loads(path.read_text(encoding="utf-8"))
        items = []
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                if not line.endswith("\n"):  # every writer ends each record with a newline
                    raise Damaged(f"line {number} is cut off")
                try:
                    items.append(json.loads(line) if kind is dict else kind.model_validate_json(line))
                except json.JSONDecodeError:
                    raise Damaged(f"line {number} is not JSON") from None
                except ValidationError as exc:
                    raise Damaged(f"line {number} is not a {kind.__name__} record ({exc.errors()[0]['msg']})") from None
        return items
    except UnicodeDecodeError as exc:
        raise Damaged(f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise Damaged(f"not JSON (line {exc.lineno})") from None
    except OSError as exc:
        raise Damaged(f"unreadable ({exc.strerror})") from None
