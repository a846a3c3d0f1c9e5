"""Reading a run config: YAML (duplicate keys refused), `key=value` overrides, validation into
`Config` (config.py), and every validation error as one line naming the field, never echoing a
value that could be a secret. Also the resolved config written back as YAML (config.yaml).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import ValidationError

from iteralign.config import Config, ModelSpec
from iteralign.errors import ConfigError

# ---- loading --------------------------------------------------------------------------------

# the backend names ("hf", ...), from the specs themselves: pydantic puts them into error locations
_UNION_TAGS = {get_args(cls.model_fields["backend"].annotation)[0] for cls in get_args(get_args(ModelSpec)[0])}


def _field_path(loc: tuple[Any, ...]) -> str:
    # pydantic puts the union tag into the location (models.base.hf.adapter); users never wrote it
    parts = [str(p) for p in loc if str(p) not in _UNION_TAGS]
    return ".".join(parts) or "(top level)"


def describe_error(err: dict[str, Any]) -> str:
    where = _field_path(err["loc"])
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    if err["type"] == "missing":
        return f"{where}: required key is missing"
    message = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    # a rejected string is never echoed: it may be a key typed into the wrong field
    if isinstance(got, (bool, int, float)) or got is None:
        return f"{where}: {message} (got {got!r})"
    if isinstance(got, str):
        return f"{where}: {message}"
    return f"{where}: {message} (got a {type(got).__name__})"


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Apply `a.b.c=value` overrides; the value is parsed as a YAML scalar (so 3 is an int)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. loop.iterations=2")
        key, _, text = item.partition("=")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            value = text
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    return raw


def parse_config(raw: Any, source: str) -> Config:
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(describe_error(e) for e in exc.errors())
        raise ConfigError(f"{source}: {problems}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """safe_load that refuses a key given twice in one mapping (plain YAML keeps the last one,
    so a second `loop:` block would silently reset the first one's settings)."""

    def construct_mapping(self, node, deep=False):
        first_seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in first_seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first at line {first_seen[key] + 1}); keep one",
                    key_node.start_mark)
            first_seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """A YAML file as data; every problem is a ConfigError naming the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: {'is a folder, not a file' if path.is_dir() else 'file not found'}")
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid UTF-8 at byte {exc.start}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML ({getattr(exc, 'problem', None) or exc})") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    path = Path(path)
    raw = read_yaml(path) or {}
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides or [], str(path))
    return parse_config(raw, str(path))


def config_to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
