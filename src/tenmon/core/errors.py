"""The one rooted exception hierarchy of tenmon; exceptions carry data and never log or exit."""

from __future__ import annotations


class TenmonError(Exception):
    """Root of every error tenmon raises on purpose."""


class ConfigError(TenmonError):
    """A configuration file or value is invalid.

    ``problems`` lists ``(key_path, line_or_None, message)`` tuples, one per problem.
    """

    def __init__(self, message: str, problems: list[tuple[str, int | None, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


class DeviceError(TenmonError):
    """A device failed; ``device`` names it as the config does (e.g. ``"dome"``, ``"relays.main"``)."""

    def __init__(self, device: str, message: str):
        super().__init__(f"{device}: {message}")
        self.device = device
        self.detail = message


class DeviceNotFound(DeviceError):
    """The configured hardware is not there (port missing, pin unavailable, board unplugged at start)."""


class DeviceDisconnected(DeviceError):
    """A device that was connected stopped answering (board unplugged, serial link lost)."""


class DeviceTimeout(DeviceError):
    """A motion or a reply did not complete within its configured time."""


class InterlockError(DeviceError):
    """A command was refused by a relay interlock (opposite direction on, channel not allowed)."""


class ProtocolError(DeviceError):
    """A device replied with bytes that do not follow its protocol."""


class EncoderLost(DeviceError):
    """The position encoder has no trustworthy reading."""


class CommandRefused(TenmonError):
    """The daemon refused an operator or scheduler command; ``code`` is a stable machine-readable word."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class StorageError(TenmonError):
    """The daemon's database cannot be read or written now (full, read-only, locked, corrupt,
    gone). Writes never raise it: they wait in memory; reads that cannot be answered do."""


class VisionError(TenmonError):
    """Image input that cannot be processed (unreadable, empty, wrong shape)."""


class SolveError(TenmonError):
    """Plate solving could not run (as opposed to a clean ``solved: false`` answer)."""


class ArchiveError(TenmonError):
    """The frame archive cannot be opened, written or queried (names the archive and the problem)."""


class ApiError(TenmonError):
    """The daemon's HTTP API answered with an error or could not be reached."""

    def __init__(self, code: str, message: str, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status
