"""Errors raised by the scheduler package (subclasses of tenmon's one exception hierarchy)."""

from __future__ import annotations

from tenmon.core.errors import ConfigError, TenmonError


class SchedulerError(TenmonError):
    """A scheduling request that cannot be carried out as asked."""


class NoNightError(SchedulerError):
    """The sun does not reach the requested twilight at the site on that date (polar summer)."""


class TargetFileError(ConfigError):
    """A target file (TOML or CSV) is unreadable or has invalid entries.

    ``problems`` holds ``(field_path, line_or_None, message)`` tuples, one per problem, with
    ``field_path`` such as ``"target[3].dec"``; the message names the file, line and field of the
    first problem.
    """


class QueueError(SchedulerError):
    """The target queue refused an operation."""


class UnknownTargetError(QueueError):
    """No target of that name in the queue."""

    def __init__(self, name: str):
        super().__init__(f"no target named {name!r} in the queue")
        self.name = name


class DuplicateTargetError(QueueError):
    """A target of that name is already in the queue (pass ``replace=True`` to overwrite)."""

    def __init__(self, name: str):
        super().__init__(f"a target named {name!r} is already in the queue")
        self.name = name
