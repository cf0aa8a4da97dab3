"""Writing files so that a crash never leaves a half-written one: atomic replace, partial folders, JSON lines.

Every temporary file or folder is written beside its destination under a hidden name and holds an
exclusive ``flock`` for as long as its writer lives. The kernel drops the lock when the writer dies
(even by ``kill -9``), so a later writer of the same place can tell leftovers of a dead process from
work in progress and removes them.
"""
from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time

from .proc import pid_alive

try:
    import fcntl
except ImportError:                    # Windows: no advisory locks; leftovers are then never removed
    fcntl = None

TMP_PREFIX = ".tmp-"
LOCK_NAME = ".owner.lock"
STALE_AGE_S = 10.0      # a leftover without a lock must be older than this: its writer may be between create and lock


def output_mode(mode: int = 0o666) -> int:
    """``mode`` as the user's umask would give it (mkstemp/mkdtemp make 0600/0700, private to the writer)."""
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _is_stale(lock_path: str, created: float) -> bool:
    """True when no live process holds ``lock_path``. An unlocked temporary file may belong to a writer
    between creating and locking it: it counts once its writer (the pid in its name) is dead, or it is old."""
    if fcntl is None:
        return False
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return time.time() - created > STALE_AGE_S
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False                      # held: its writer is alive
    finally:
        os.close(fd)
    if os.path.basename(lock_path) == LOCK_NAME or time.time() - created > STALE_AGE_S:
        return True
    m = re.match(re.escape(TMP_PREFIX) + r"(\d+)-", os.path.basename(lock_path))
    return bool(m) and not pid_alive(int(m.group(1)))


def remove_stale(folder: str, prefix: str) -> list[str]:
    """Remove the entries of ``folder`` named ``prefix*`` that no live process owns; returns their paths."""
    removed = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        path = os.path.join(folder, name)
        try:
            created = os.lstat(path).st_mtime
            is_dir = os.path.isdir(path) and not os.path.islink(path)
            if not _is_stale(os.path.join(path, LOCK_NAME) if is_dir else path, created):
                continue
            shutil.rmtree(path) if is_dir else os.unlink(path)
            removed.append(path)
        except OSError:
            continue                      # gone already, or not ours to remove
    return removed


def partial_file(path: str, suffix: str = "") -> tuple[int, str]:
    """A new locked temporary file beside ``path`` (fd, name); stale ones of dead writers are removed first."""
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale(folder, TMP_PREFIX)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=suffix, dir=folder)
    except OSError as e:
        raise about(e, path) from None
    os.fchmod(fd, output_mode())
    _lock(fd)
    return fd, tmp


def partial_dir(dest: str) -> tuple[str, int, list[str]]:
    """A new locked hidden folder beside ``dest`` to build it in: (path, lock fd, stale partial folders of
    ``dest`` that were removed). Publish with ``os.replace(path, dest)``, then close the fd."""
    dest = os.path.abspath(dest)
    parent, base = os.path.dirname(dest), os.path.basename(dest)
    prefix = f".{base}.partial-"
    try:
        os.makedirs(parent, exist_ok=True)
        removed = remove_stale(parent, prefix)
        tmp = tempfile.mkdtemp(prefix=prefix, dir=parent)
    except OSError as e:
        raise about(e, dest) from None
    os.chmod(tmp, output_mode(0o777))
    fd = os.open(os.path.join(tmp, LOCK_NAME), os.O_RDWR | os.O_CREAT, 0o600)
    _lock(fd)
    return tmp, fd, removed


def about(e: OSError, path: str) -> OSError:
    """The same error about ``path`` (the one the user gave), not a hidden temporary name."""
    return OSError(e.errno, e.strerror or os.strerror(e.errno or errno.EIO), path)


class _Writes:
    """A file whose write errors are kept: some writers (torch.save) turn a full disk into their own
    RuntimeError, and the user should hear about the disk."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data):
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def __getattr__(self, name):
        return getattr(self.f, name)


def atomic_write(path: str, write_fn) -> None:
    """Write through ``write_fn(file)`` to a temporary file beside ``path``, fsync, then rename."""
    fd, tmp = partial_file(path)
    f = _Writes(os.fdopen(fd, "wb"))
    try:
        with f.f:
            try:
                write_fn(f)
            except Exception:
                if f.error is not None:
                    raise f.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)            # while the lock is held: the file is never both unlocked and temporary
    except OSError as e:
        _remove_quietly(tmp)
        raise about(e, path) from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


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


# ---- files named by the images shown -----------------------------------------------------

def kimg_tag(nimg: int) -> str:
    """``nimg`` images as kimg with a fixed 3 decimals (exact, so no two moments share a name; zero-padded,
    so sorting names sorts by time): 1500 -> '000001.500'."""
    return f"{nimg // 1000:06d}.{nimg % 1000:03d}"


def tagged_files(folder: str, prefix: str, suffix: str) -> list[tuple[int, str]]:
    """(nimg, path) of the files ``prefix<kimg tag>suffix`` in ``folder``, oldest first. Also reads the
    older whole-kimg names (``checkpoint-000140.pt``)."""
    pattern = re.compile(re.escape(prefix) + r"(\d{6,})(?:\.(\d{3}))?" + re.escape(suffix) + "$")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    found = [(int(m.group(1)) * 1000 + int(m.group(2) or 0), os.path.join(folder, n))
             for n in names if (m := pattern.match(n))]
    return sorted(found)
