"""Errors a person can act on.

An `IterAlignError` carries a one-line message that says what is wrong and what to do; the CLI
prints it and exits with its `exit_code`, no traceback:
- `UserError` (exit 2): the input is wrong (config, data, a path, the environment);
- `OutageError` (exit 1): a model could not be reached; nothing is wrong with the input, and
  running the same command again retries exactly the calls that failed.
Anything else is a bug and exits 1 with a traceback.
"""
from __future__ import annotations


class IterAlignError(Exception):
    exit_code = 1


class UserError(IterAlignError):
    """A problem in the user's input; the message says where it is and what to do."""

    exit_code = 2


class ConfigError(UserError):
    """The config file or a key=value override is invalid."""


class DataError(UserError):
    """A data file is missing, unreadable or holds a bad record."""


class ModelSpecError(UserError):
    """A model spec cannot be resolved (file missing, package not installed, key not set)."""


class RunDirError(UserError):
    """The run directory cannot be used (config changed since it was created, not a run, locked...)."""


class JudgeCheckError(UserError):
    """The run's judge agrees with human labels less than judge.check.min_agreement asks."""


class OutageError(IterAlignError):
    """Calls failed at the transport level after every retry; the stage is left unfinished."""


class TrainingError(IterAlignError):
    """Training in subprocesses (train.processes > 1) failed; its own output says why."""
