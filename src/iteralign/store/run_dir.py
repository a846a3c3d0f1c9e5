"""The run directory: a folder a person can read, and the unit of resume (DESIGN.md section 4).

Every artifact is written atomically (a temporary file or folder in the same directory, then a
rename), so after a kill -9 a file either holds a finished stage's output or does not exist.
A stage whose artifact exists is skipped on restart. `open_run` writes `config.yaml` before any
work; re-opening checks that the config has not changed in a way that would make the finished
artifacts wrong (only the stopping rules may change, e.g. to extend a run).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Iterable, TypeVar

import yaml
from pydantic import BaseModel

from iteralign.config import Config
from iteralign.config_loading import config_to_yaml
from iteralign.errors import RunDirError
from iteralign.store import layout

T = TypeVar("T", bound=BaseModel)

# keys a resumed run may change: they decide when to stop, or where the run lives, not what was
# computed (a run directory that was moved resumes from its new place)
RESUMABLE_CHANGES = {"loop.iterations", "loop.target_violation_rate", "loop.patience", "output_dir"}


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def write_json(path: Path, value) -> None:
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def write_records(path: Path, records: Iterable[BaseModel]) -> None:
    write_text_atomic(path, "".join(r.model_dump_json() + "\n" for r in records))


def read_records(path: Path, cls: type[T]) -> list[T]:
    with open(path, encoding="utf-8") as handle:
        return [cls.model_validate_json(line) for line in handle if line.strip()]


def replace_dir_atomic(src: Path, dst: Path) -> None:
    """Move a finished folder into place; a stale destination is removed first."""
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


def _flatten(value, prefix: str = "") -> dict[str, object]:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


class RunDir:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock_handle = None

    @property
    def config_path(self) -> Path:
        return self.root / layout.CONFIG

    @property
    def calls_path(self) -> Path:
        return self.root / layout.CALLS

    @property
    def manifest_path(self) -> Path:
        return self.root / layout.MANIFEST

    def iteration(self, k: int) -> Path:
        return self.root / layout.iteration_dir(k)

    def open(self, config: Config) -> bool:
        """Create the run, or check it can be resumed, and lock it for this process. Returns True
        when resuming."""
        if self.root.exists() and not self.config_path.is_file():
            if any(self.root.iterdir()):
                raise RunDirError(f"{self.root}: exists and is not an iteralign run (no config.yaml); choose another name")
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock()
        if self.config_path.is_file():
            try:
                old = _flatten(yaml.safe_load(self.config_path.read_text(encoding="utf-8")) or {})
            except (UnicodeDecodeError, yaml.YAMLError) as exc:
                raise RunDirError(f"{self.config_path}: damaged ({' '.join(str(exc).split())[:120]}); restore it, "
                                  "or start a new run with another name=") from None
            new = _flatten(config.model_dump(mode="json"))
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
            if changed:
                raise RunDirError(
                    f"{self.config_path}: the run was started with a different config ({', '.join(changed[:5])}); "
                    "use a new name= to start another run"
                )
            write_text_atomic(self.config_path, config_to_yaml(config))
            return True
        write_text_atomic(self.config_path, config_to_yaml(config))
        return False

    def _lock(self) -> None:
        """An exclusive lock on run.lock for as long as this process runs the run: a second
        `iteralign run` on the same folder stops at once instead of interleaving its writes."""
        import fcntl

        path = self.root / layout.LOCK
        handle = open(path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            raise RunDirError(f"{self.root}: another iteralign process (PID {holder}) is running this run; wait for "
                              "it to finish or stop it, then run again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._lock_handle = handle

    def close(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()  # closing the file releases the lock
            self._lock_handle = None
