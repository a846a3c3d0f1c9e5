"""Errors a user can act on.

`UserError` is anything the person running iteralign can fix (config, data, environment): the CLI
prints its one-line message and exits with code 2, no traceback. Everything else is a bug or an
outside failure and exits 1.
"""
from __future__ import annotations


class UserError(Exception):
    """A problem in the user's input; the message says where it is and what to do."""

    exit_code = 2


class ConfigError(UserError):
    """The config file or a key=value override is invalid."""


class DataError(UserError):
    """A data file is missing, unreadable or holds a bad record."""


class ModelSpecError(UserError):
    """A model spec cannot be resolved (file missing, package not installed, key not set)."""


class RunDirError(UserError):
    """The run directory cannot be used (config changed since it was created, not a run, ...)."""


class JudgeCheckError(UserError):
    """The run's judge agrees with human labels less than judge.check.min_agreement asks."""
