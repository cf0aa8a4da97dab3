"""pggan's own error types. The command line shortens these (and only these) to one line: anything
else is a bug and keeps its traceback."""
from __future__ import annotations


class PgganError(Exception):
    """An error the user can fix; the message says what is wrong and how."""


class UsageError(PgganError, ValueError):
    """A bad argument or value given to a command or function."""


class DeviceError(PgganError, RuntimeError):
    """The asked-for device, precision or process group cannot be used here."""
