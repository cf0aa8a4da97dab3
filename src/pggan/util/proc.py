"""Child processes that end when the process that started them dies, even by ``kill -9``.

Linux delivers a chosen signal to a child when its parent dies (``prctl(PR_SET_PDEATHSIG)``); other
systems get a watchdog thread that polls the parent. A worker blocked on a pipe or a lock is ended
either way.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
POLL_S = 0.5


def set_parent_death_signal(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent dies; False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    """End this process when ``parent_pid`` (default: the current parent) dies."""
    parent_pid = parent_pid or os.getppid()
    set_parent_death_signal(sig)
    first_ppid = os.getppid()

    def watch():
        while os.getppid() == first_ppid and pid_alive(parent_pid):
            time.sleep(POLL_S)
        os._exit(128 + int(sig))

    if first_ppid == 1 or not pid_alive(parent_pid):           # died before the death signal was armed
        os._exit(128 + int(sig))
    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def preexec_parent_death(sig: int = signal.SIGTERM):
    """A ``subprocess`` preexec_fn: the child gets ``sig`` when this process dies (Linux; a no-op elsewhere)."""
    return (lambda: set_parent_death_signal(sig)) if sys.platform.startswith("linux") else None
