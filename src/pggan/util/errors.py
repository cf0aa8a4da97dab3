"""pggan's own error types. The command line shortens these (and only these) to one line: anything
else is a bug and keeps its traceback."""
from __future__ import annotations

import errno


class PgganError(Exception):
    """An error the user can fix; the message says what is wrong and how."""


class UsageError(PgganError, ValueError):
    """A bad argument or value given to a command or function."""


class DeviceError(PgganError, RuntimeError):
    """The asked-for device, precision or process group cannot be used here."""


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or choose another destination",
    errno.EDQUOT: "the disk quota is used up: free some space or choose another destination",
    errno.EROFS: "a read-only file system: choose a writable destination",
    errno.EACCES: "check its permissions, or choose another location",
    errno.EPERM: "check its permissions, or choose another location",
}


def describe_os_error(e: OSError) -> str:
    """One line about a file-system error: the file, what went wrong, what to do."""
    text = e.strerror or str(e)
    if e.filename:
        text = f"'{e.filename}': {text}"
    hint = _OS_HINTS.get(e.errno)
    return f"{text} ({hint})" if hint else text


def first_line(e: BaseException) -> str:
    """The first line of an error's text (without torch's appeal for better messages), for quoting
    another library's error inside one of ours, which the command line prints as one line."""
    text = str(e).strip().split("(Could this error message be improved?")[0].strip()
    return text.splitlines()[0] if text else type(e).__name__
