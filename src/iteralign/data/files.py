"""Strict readers for prompt files that users supply (`data.sources[N]` with `name: file`).

In: a path to a `.jsonl`, `.json` or `.csv` file, the name of the field or column holding the
prompt, and `data.max_prompt_chars`. Out: the prompts, stripped, in file order.

Built-in data sets are known to be clean, so their loaders skip bad rows quietly; a user's file is
not, and a silently dropped prompt is a surprise later. So here every problem raises `DataError`
with one line naming the file, the line, what is wrong and what to do about it.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterator

from iteralign.errors import DataError

_BOM = b"\xef\xbb\xbf"
_JSON_WS = " \t\n\r"


def check_prompt(text: str, file_label: str, line_no: int, max_chars: int) -> str:
    """Return `text` stripped, or raise `DataError` if it is empty or longer than `max_chars`."""
    text = text.strip()
    if not text:
        raise DataError(f"{file_label}:{line_no}: the prompt is empty; fill it in or delete the record")
    if len(text) > max_chars:
        raise DataError(
            f"{file_label}:{line_no}: the prompt is {len(text)} characters long; "
            f"the limit is data.max_prompt_chars={max_chars}"
        )
    bad = unencodable(text)
    if bad is not None:
        raise DataError(f"{file_label}:{line_no}: the prompt holds {bad}, which no model can read; fix the text")
    return text


def unencodable(text: str) -> str | None:
    """What keeps `text` from being UTF-8 (a lone surrogate, as a JSON "\\ud800" escape makes), or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"an unpaired surrogate U+{ord(text[exc.start]):04X} at character {exc.start + 1}"
    return None


def read_prompt_file(path: Path, column: str, max_chars: int, where: str) -> list[str]:
    """Read every prompt in `path`; `where` is the config field (e.g. "data.sources[2]") for hints."""
    path = Path(path)
    label = str(path)
    suffix = path.suffix.lower()
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv}
    if suffix not in readers:
        raise DataError(
            f"{label}: unsupported file type {suffix or '(no suffix)'!r} ({where}.path); "
            "use .jsonl, .json or .csv"
        )
    if not path.exists():
        raise DataError(f"{label}: file not found ({where}.path); check the path or data.dir")
    if not path.is_file():
        raise DataError(f"{label}: not a file ({where}.path); point it at a .jsonl, .json or .csv file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{label}: cannot read the file ({exc.strerror}); check its permissions") from None
    prompts = readers[suffix](_decode(raw, label), label, column, max_chars, where)
    if not prompts:
        raise DataError(f"{label}: the file holds no prompts ({where}.path); add some or remove the source")
    return prompts


# ---- decoding -------------------------------------------------------------------------------


def _decode(raw: bytes, label: str) -> str:
    """Decode UTF-8 (a leading BOM is dropped: Excel and Notepad write one) naming the bad line."""
    if raw.startswith(_BOM):
        raw = raw[len(_BOM):]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        # Everything before the bad byte decoded, so its line and column can be counted exactly.
        line_no = raw.count(b"\n", 0, exc.start) + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        col = len(raw[line_start:exc.start].decode("utf-8")) + 1
        raise DataError(
            f"{label}:{line_no}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {col}); "
            "re-save the file as UTF-8"
        ) from None


# ---- JSON and JSON Lines --------------------------------------------------------------------


def _from_record(obj: Any, label: str, line_no: int, column: str, max_chars: int, where: str) -> str:
    """A record is a bare string, or an object whose `column` field is a string."""
    if isinstance(obj, str):
        return check_prompt(obj, label, line_no, max_chars)
    if not isinstance(obj, dict):
        raise DataError(
            f'{label}:{line_no}: expected a string or an object with field "{column}", '
            f"got {_json_type(obj)}"
        )
    if column not in obj:
        fields = ", ".join(obj) or "none"
        raise DataError(f'{label}:{line_no}: no field "{column}" (fields: {fields}); set {where}.column')
    value = obj[column]
    if not isinstance(value, str):
        raise DataError(f'{label}:{line_no}: field "{column}" is {_json_type(value)}, not a string')
    return check_prompt(value, label, line_no, max_chars)


def _json_type(obj: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(obj), "a number")


def _read_jsonl(text: str, label: str, column: str, max_chars: int, where: str) -> list[str]:
    prompts = []
    # Split on "\n" only: str.splitlines would also split on U+2028, which JSON allows in strings.
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (a trailing newline, spacing) carry no record
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{label}:{line_no}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        prompts.append(_from_record(obj, label, line_no, column, max_chars, where))
    return prompts


def _read_json(text: str, label: str, column: str, max_chars: int, where: str) -> list[str]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{label}:{exc.lineno}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(doc, list):
        raise DataError(f"{label}:1: expected a JSON list of strings or objects, got {_json_type(doc)}")
    return [
        _from_record(obj, label, line_no, column, max_chars, where)
        for line_no, obj in _items_with_lines(text)
    ]


def _items_with_lines(text: str) -> Iterator[tuple[int, Any]]:
    """Yield (line number, item) for a top-level JSON list already known to be valid.

    json.loads forgets positions; walking the list with raw_decode keeps them, so an error in
    item 300 can say which line of the file to open.
    """
    decoder = json.JSONDecoder()
    idx, line_no = text.index("[") + 1, text.count("\n", 0, text.index("[")) + 1

    def skip(i: int, also: str = "") -> int:
        nonlocal line_no
        while i < len(text) and text[i] in _JSON_WS + also:
            line_no += text[i] == "\n"
            i += 1
        return i

    idx = skip(idx)
    while text[idx] != "]":
        obj, end = decoder.raw_decode(text, idx)
        yield line_no, obj
        line_no += text.count("\n", idx, end)  # a string item cannot hold a raw newline; objects can
        idx = skip(end, ",")


# ---- CSV ------------------------------------------------------------------------------------


def _read_csv(text: str, label: str, column: str, max_chars: int, where: str) -> list[str]:
    # The csv module refuses fields over 128 KiB; lift that so an over-long prompt gets the
    # max_prompt_chars message below instead of a csv one. The text is in memory already.
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, len(text) + 1))
    try:
        return _parse_csv(text, label, column, max_chars, where)
    finally:
        csv.field_size_limit(old_limit)


def _parse_csv(text: str, label: str, column: str, max_chars: int, where: str) -> list[str]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    prompts: list[str] = []
    index = -1
    start = 1  # the line a record starts on; reader.line_num is where it ends (quoted newlines)
    try:
        for row in reader:
            line_no, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in row):
                continue  # blank line
            if index < 0:  # the first non-blank row is the header
                header = [cell.strip() for cell in row]
                if column not in header:
                    raise DataError(
                        f'{label}:{line_no}: no column "{column}" (columns: {", ".join(header)}); '
                        f"set {where}.column"
                    )
                index = header.index(column)
                continue
            if index >= len(row):
                raise DataError(
                    f'{label}:{line_no}: the row has {len(row)} fields, so no "{column}" '
                    f"(field {index + 1}); check the quoting on this line"
                )
            prompts.append(check_prompt(row[index], label, line_no, max_chars))
    except csv.Error as exc:
        raise DataError(f"{label}:{reader.line_num}: not valid CSV ({exc}); check the quoting") from None
    if index < 0:
        raise DataError(f'{label}: the file is empty; expected a header row with a "{column}" column')
    return prompts
