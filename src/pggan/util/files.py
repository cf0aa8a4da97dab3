"""Writing files so that a crash never leaves a half-written one: atomic replace, JSON lines."""
from __future__ import annotations

import json
import os
import tempfile


def atomic_write(path: str, write_fn) -> None:
    """Write through ``write_fn(file)`` to a temporary file beside ``path``, fsync, then rename."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)      # mkstemp's 0600 would make outputs private to their writer
        with os.fdopen(fd, "wb") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def append_jsonl(path: str, record: dict) -> None:
    """One JSON object as one line at the end of ``path``."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def truncate_jsonl(path: str, max_kimg: float) -> None:
    """Drop the records after ``max_kimg`` (on resume: they belong to a trajectory now discarded)."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        keep = [line for line in f if line.strip() and (json.loads(line).get("kimg") or 0) <= max_kimg + 1e-9]
    atomic_write(path, lambda f: f.write("".join(keep).encode()))
