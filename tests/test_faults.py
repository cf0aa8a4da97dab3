"""Faults: leftovers of killed writers, workers that outlive their parent, names, --resume auto, messages,
and a short run of the fault-injection suite (tools/faults.py)."""
import errno
import fcntl
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pggan.checkpoint import list_checkpoints
from pggan.cli import main
from pggan.data.create import ConvertOptions, create_dataset
from pggan.data.sources import open_source
from pggan.training.launch import auto_config, build_config
from pggan.training.run import run_training
from pggan.util.errors import describe_os_error
from pggan.util.files import LOCK_NAME, STALE_AGE_S, atomic_write, kimg_tag

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tools"))
import faults  # noqa: E402


def _old(path):
    t = time.time() - 2 * STALE_AGE_S
    os.utime(path, (t, t))


def test_temporary_files_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)                  # a process that has exited
    dead, live, young = (tmp_path / n for n in (".tmp-dead", ".tmp-live", ".tmp-young"))
    killed, mine = tmp_path / f".tmp-{dead_pid}-abc", tmp_path / f".tmp-{os.getpid()}-abc"
    for p in (dead, live, young, killed, mine):
        p.write_bytes(b"partial")
    _old(dead)
    _old(live)
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)           # its writer is alive
    try:
        atomic_write(str(tmp_path / "out.bin"), lambda f: f.write(b"done"))
        left = sorted(p.name for p in tmp_path.iterdir())
    finally:
        os.close(fd)
    # a young unlocked file may be a writer between creating and locking it: kept until it is old, or
    # until the writer named in it (the pid) is dead
    assert left == sorted([".tmp-live", ".tmp-young", f".tmp-{os.getpid()}-abc", "out.bin"])
    assert (tmp_path / "out.bin").read_bytes() == b"done"


def _images(folder, n=6):
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.full((16, 16, 3), 20 * i, np.uint8)).save(folder / f"{i}.png")


def test_partial_dataset_folder_of_a_killed_conversion_is_removed_and_said(tmp_path):
    _images(tmp_path / "imgs")
    stale = tmp_path / ".ds.partial-abc123"
    stale.mkdir()
    (stale / LOCK_NAME).write_bytes(b"")
    (stale / "level-0004.u8").write_bytes(b"x" * 10)
    live = tmp_path / ".ds.partial-live99"
    live.mkdir()
    fd = os.open(live / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)           # another conversion to the same place, still running
    heard = []
    old_umask = os.umask(0o022)
    try:
        create_dataset(open_source(str(tmp_path / "imgs"), "auto"), str(tmp_path / "ds"),
                       ConvertOptions(resolution=16, workers=1), progress=False, echo=heard.append)
    finally:
        os.umask(old_umask)
        os.close(fd)
    assert not stale.exists() and live.exists()
    assert len(heard) == 1 and str(stale) in heard[0] and "killed" in heard[0]
    assert (os.stat(tmp_path / "ds").st_mode & 0o777) == 0o755          # the umask's mode, not mkdtemp's 0700
    assert not (tmp_path / "ds" / LOCK_NAME).exists()


def test_worker_processes_end_when_their_parent_is_killed(tmp_path):
    """Both ways: the kernel's parent-death signal (Linux) and the polling watchdog (elsewhere)."""
    for use_signal in (True, False):
        pidfile = tmp_path / f"child-{use_signal}"
        code = textwrap.dedent(f"""
            import os, subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", '''
            import os, time
            import pggan.util.proc as proc
            if not {use_signal}:
                proc.set_parent_death_signal = lambda sig: False
            proc.exit_with_parent(int(os.environ["PARENT"]))
            open({str(pidfile)!r}, "w").write(str(os.getpid()))
            time.sleep(60)
            '''], env=dict(os.environ, PARENT=str(os.getpid())))
            time.sleep(60)
        """)
        parent = subprocess.Popen([sys.executable, "-c", code])
        deadline = time.time() + 20
        while not (pidfile.exists() and pidfile.read_text()) and time.time() < deadline:
            time.sleep(0.05)
        child = int(pidfile.read_text())
        assert faults.alive({child})
        parent.kill()
        parent.wait()
        deadline = time.time() + 5
        while faults.alive({child}) and time.time() < deadline:
            time.sleep(0.05)
        assert not faults.alive({child}), f"the child outlived its parent (parent-death signal: {use_signal})"


def test_checkpoint_names_keep_the_fraction_and_old_names_still_read(tmp_path):
    assert kimg_tag(1500) == "000001.500" and kimg_tag(2_000_000) == "002000.000"
    for name in ["checkpoint-000001.pt", "checkpoint-000000.500.pt", "checkpoint-000002.000.pt",
                 "checkpoint-000001.500.pt", "checkpoint-x.pt", "checkpoint-000003.pt.tmp"]:
        (tmp_path / name).write_bytes(b"")
    assert [os.path.basename(p) for p in list_checkpoints(str(tmp_path))] == [
        "checkpoint-000000.500.pt", "checkpoint-000001.pt", "checkpoint-000001.500.pt", "checkpoint-000002.000.pt"]


def test_resume_auto_continues_the_same_commands_run_and_starts_otherwise(tmp_path):
    flags = {"data": "builtin:shapes", "net.resolution": 8, "sched.total_kimg": 0.6, "outdir": str(tmp_path / "runs"),
             "precision": "fp32"}
    sets = ["data_count=32", "net.fmap_base=32", "net.fmap_max=8", "net.latent_size=8", "sched.batch_base=8",
            "sched.lod_training_kimg=0.2", "sched.lod_transition_kimg=0.2", "checkpoint_kimg=0.2"]
    def auto(flags, sets):
        return auto_config(build_config(None, None, flags, sets))
    cfg, ckpt = auto(flags, sets)
    assert ckpt is None                                  # nothing yet: a new run
    steps = iter(range(1000))
    result = run_training(cfg, progress=False, echo=lambda m: None, step_callback=lambda t, s: next(steps) == 5)
    assert result.interrupted
    cfg2, ckpt = auto(flags, sets)
    assert ckpt == list_checkpoints(result.run_dir)[-1] and cfg2.sched.total_kimg == 0.6
    # another command (here: another length) never continues this run
    assert auto(dict(flags, **{"sched.total_kimg": 0.8}), sets)[1] is None
    # a newer run of the same command that died before its first checkpoint does not hide the older one
    os.makedirs(os.path.join(flags["outdir"], "00001-shapes-8-cpu-small"))
    assert auto(flags, sets)[1] == ckpt
    r = CliRunner().invoke(main, ["train", "--resume", "auto", "--no-progress", "--data", "builtin:shapes", "--resolution", "8",
                                  "--kimg", "0.6", "--outdir", flags["outdir"], "--precision", "fp32"]
                           + [a for s in sets for a in ("--set", s)])
    assert r.exit_code == 0, r.output
    assert "resumed from" in open(os.path.join(result.run_dir, "log.txt")).read()


def test_messages_for_ctrl_c_and_file_system_errors(tmp_path, monkeypatch):
    _images(tmp_path / "imgs")

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("pggan.data.create.create_dataset", interrupted)
    r = CliRunner().invoke(main, ["dataset", "create", str(tmp_path / "imgs"), str(tmp_path / "ds"), "--resolution", "16"])
    assert r.exit_code == 130 and "Interrupted (Ctrl-C): nothing was written" in r.output and "Aborted" not in r.output
    monkeypatch.undo()

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / ".ds.partial-0r1cg7zx"))

    monkeypatch.setattr("tempfile.mkdtemp", read_only)
    r = CliRunner().invoke(main, ["dataset", "create", str(tmp_path / "imgs"), str(tmp_path / "ds"), "--resolution", "16",
                                  "--no-progress"])
    assert r.exit_code == 1 and ".partial-" not in r.output and len(r.output.strip().splitlines()) == 1
    assert f"'{tmp_path / 'ds'}': Read-only file system (a read-only file system: choose a writable destination)" in r.output
    assert describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/x/c.pt")) == \
        "'/x/c.pt': No space left on device (the disk is full: free some space or choose another destination)"


def test_fault_injection_short(tmp_path):
    """One random kill each of `pggan train` and `pggan dataset create`, and a full disk where a tmpfs
    can be mounted; the slow test below runs more, and the 2-process case."""
    import random

    rng = random.Random(1)
    assert faults.train_case(str(tmp_path), 1, rng) == []
    assert faults.dataset_case(str(tmp_path), 1, rng) == []
    assert faults.disk_case(str(tmp_path)) == []


@pytest.mark.slow
def test_fault_injection_full(tmp_path):
    r = subprocess.run([sys.executable, faults.__file__, "--kills", "5", "--workdir", str(tmp_path)])
    assert r.returncode == 0
