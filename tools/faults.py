"""Fault injection: kill -9 at random moments, full disks; after each, the same command continues.

    python tools/faults.py                         # every case, 5 kills each
    python tools/faults.py --cases train --kills 20 --seed 3
    python tools/faults.py --cases disk            # needs permission to mount a small tmpfs (root)

Cases:
- `train`: `pggan train` (tiny network, deterministic, fp32) killed with SIGKILL at a moment drawn
  uniformly over an uninterrupted run's wall time (so before the first checkpoint, during checkpoint
  writes and fades alike), then `--resume auto` with the same command to the end.
- `dist`: the same with `--nproc 2` (torchrun, gloo); the kill hits the `pggan` launcher only.
- `dataset`: `pggan dataset create` of a folder of PNGs with 2 worker processes, killed the same way,
  then the same command again.
- `disk`: a small tmpfs fills up during training (checkpoints) and during a conversion.

After each kill: no process of the killed job is left (within a grace period), every checkpoint loads,
no temporary file (`.tmp-*`, `.*.partial-*`) is left beside the outputs once the command has been
re-run, and the final result equals the uninterrupted run's exactly (generator tensors; dataset
checksums). Prints one line per trial and N/N per case; exits 1 if any trial failed.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

PGGAN = [sys.executable, "-m", "pggan"]
TINY = ["--data", "builtin:shapes", "--resolution", "8", "--kimg", "6", "--deterministic", "--precision", "fp32",
        "--seed", "3", "--no-progress", "--set", "data_count=64", "--set", "net.fmap_base=64", "--set", "net.fmap_max=16",
        "--set", "net.latent_size=16", "--set", "sched.lod_training_kimg=0.2", "--set", "sched.lod_transition_kimg=0.2",
        "--set", "sched.batch_base=8", "--set", "tick_kimg=0.1", "--set", "image_kimg=0.2", "--set", "checkpoint_kimg=0.2"]
GRACE_S = 30.0


# ---- processes ----------------------------------------------------------------------------

def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(name))
    found, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in found:
                found.add(c)
                todo.append(c)
    return found


def alive(pids: set[int]) -> set[int]:
    out = set()
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] != "Z":
                    out.add(p)
        except OSError:
            pass
    return out


def kill_at(cmd: list[str], delay: float, env=None) -> tuple[bool, set[int], str]:
    """Run ``cmd``, SIGKILL it after ``delay`` s. Returns (it had finished by itself, its descendants
    seen at the kill that are still alive after the grace period, its output)."""
    log = tempfile.TemporaryFile()              # not a pipe: processes left behind would hold it open
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    seen: set[int] = set()
    end = time.time() + delay
    while time.time() < end and proc.poll() is None:
        seen |= descendants(proc.pid)
        time.sleep(0.05)
    finished = proc.poll() is not None
    if not finished:
        seen |= descendants(proc.pid)
        proc.kill()
    proc.wait()
    log.seek(0)
    out = log.read().decode(errors="replace")
    deadline = time.time() + GRACE_S
    while alive(seen) and time.time() < deadline:
        time.sleep(0.1)
    left = alive(seen)
    for p in left:                      # do not leave them to the next trial
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    return finished, left, out


def run(cmd: list[str], env=None) -> tuple[int, str, float]:
    start = time.time()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    return p.returncode, p.stdout.decode(errors="replace"), time.time() - start


def leftovers(folder: str) -> list[str]:
    """Temporary files or folders anywhere under ``folder``."""
    out = []
    for root, dirs, files in os.walk(folder):
        for n in dirs + files:
            if n.startswith(".tmp-") or ".partial-" in n:
                out.append(os.path.join(root, n))
    return out


# ---- comparisons --------------------------------------------------------------------------

def final_generator(outdir: str) -> dict:
    from safetensors.numpy import load_file

    runs = sorted(d for d in os.listdir(outdir) if os.path.isfile(os.path.join(outdir, d, "generator-final.safetensors")))
    return load_file(os.path.join(outdir, runs[-1], "generator-final.safetensors"))


def same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def unloadable_checkpoints(outdir: str) -> list[str]:
    from pggan.checkpoint import CheckpointError, list_checkpoints, load_checkpoint

    bad = []
    for d in os.listdir(outdir):
        for p in list_checkpoints(os.path.join(outdir, d)):
            try:
                load_checkpoint(p)
            except CheckpointError as e:
                bad.append(f"{p}: {e}")
    return bad


# ---- cases --------------------------------------------------------------------------------

def train_case(work: str, kills: int, rng: random.Random, nproc: int = 1) -> list[str]:
    """kill -9 of `pggan train` (nproc 1) or of its torchrun launcher (nproc 2); returns failures."""
    extra = ["--nproc", str(nproc)] if nproc > 1 else []
    ref = os.path.join(work, f"ref{nproc}")
    code, out, wall = run(PGGAN + ["train", "--outdir", ref] + TINY + extra)
    if code != 0:
        return [f"the uninterrupted run failed: {out[-2000:]}"]
    reference = final_generator(ref)
    failures = []
    for i in range(kills):
        outdir = os.path.join(work, f"train{nproc}-{i}")
        delay = rng.uniform(0, wall)
        cmd = PGGAN + ["train", "--outdir", outdir, "--resume", "auto"] + TINY + extra
        finished, left, _ = kill_at(cmd, delay)
        problems = [f"processes left after the kill: {sorted(left)}"] if left else []
        code, out, _ = run(cmd)
        if code != 0:
            problems.append(f"the re-run failed ({code}): {out.strip().splitlines()[-1:]}")
        else:
            if not same_tensors(final_generator(outdir), reference):
                problems.append("the final generator differs from the uninterrupted run's")
            problems += unloadable_checkpoints(outdir)
            problems += [f"left behind: {p}" for p in leftovers(outdir)]
        what = "finished before the kill" if finished else f"killed at {delay:.1f}s of {wall:.1f}s"
        report(f"train nproc={nproc}", i, what, problems, failures)
    return failures


def make_image_folder(folder: str, count: int = 4000, size: int = 96) -> None:
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(os.path.join(folder, f"{i:05d}.png"))


def dataset_case(work: str, kills: int, rng: random.Random) -> list[str]:
    src = os.path.join(work, "images")
    if not os.path.isdir(src):
        make_image_folder(src)
    args = ["--resolution", "64", "--workers", "2", "--no-progress"]
    ref = os.path.join(work, "ds-ref")
    code, out, wall = run(PGGAN + ["dataset", "create", src, ref] + args)
    if code != 0:
        return [f"the uninterrupted conversion failed: {out[-2000:]}"]
    reference = json.load(open(os.path.join(ref, "dataset.json")))["sha256"]
    failures = []
    for i in range(kills):
        parent = os.path.join(work, f"ds-{i}")
        dest = os.path.join(parent, "ds")
        delay = rng.uniform(0, wall)
        cmd = PGGAN + ["dataset", "create", src, dest] + args
        finished, left, _ = kill_at(cmd, delay)
        problems = [f"worker processes left after the kill: {sorted(left)}"] if left else []
        had_partial = bool(leftovers(parent)) if os.path.isdir(parent) else False
        if not os.path.exists(dest):                       # killed before it was published: run it again
            code, out, _ = run(cmd)
            if code != 0:
                problems.append(f"the re-run failed ({code}): {out.strip().splitlines()[-1:]}")
            elif had_partial and "removed" not in out:
                problems.append("the re-run did not say that it removed the partial folder")
        if os.path.isfile(os.path.join(dest, "dataset.json")):
            if json.load(open(os.path.join(dest, "dataset.json")))["sha256"] != reference:
                problems.append("the dataset differs from the uninterrupted conversion's")
        else:
            problems.append("no dataset after the re-run")
        problems += [f"left behind: {p}" for p in leftovers(parent)]
        what = "finished before the kill" if finished else f"killed at {delay:.1f}s of {wall:.1f}s"
        report("dataset", i, what + (", partial folder removed by the re-run" if had_partial else ""), problems, failures)
    return failures


def small_tmpfs(path: str, size: str) -> bool:
    os.makedirs(path, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def disk_case(work: str) -> list[str]:
    """A full disk during training checkpoints and during a conversion: one clear line, exit 1, the
    previous checkpoint intact, nothing temporary left."""
    mnt = os.path.join(work, "full")
    if not small_tmpfs(mnt, "1200k"):
        print("disk: skipped (cannot mount a tmpfs here; needs root)")
        return []
    failures = []
    try:
        code, out, _ = run(PGGAN + ["train", "--outdir", os.path.join(mnt, "runs")] + TINY
                           + ["--kimg", "20", "--set", "checkpoint_kimg=0.1", "--set", "keep_checkpoints=1000"])
        lines = out.strip().splitlines()
        problems = [] if code == 1 else [f"exit code {code}, expected 1"]
        if not lines or "No space left on device" not in lines[-1] or "Traceback" in out:
            problems.append(f"not one clear line: {lines[-3:]}")
        problems += unloadable_checkpoints(os.path.join(mnt, "runs"))
        problems += [f"left behind: {p}" for p in leftovers(mnt)]
        report("disk", 0, "training until the disk is full", problems, failures)
        shutil.rmtree(os.path.join(mnt, "runs"), ignore_errors=True)

        src = os.path.join(work, "images")
        if not os.path.isdir(src):
            make_image_folder(src)
        dest = os.path.join(mnt, "ds")
        code, out, _ = run(PGGAN + ["dataset", "create", src, dest, "--resolution", "64", "--no-progress"])
        lines = out.strip().splitlines()
        problems = [] if code == 1 else [f"exit code {code}, expected 1"]
        if not lines or "No space left on device" not in lines[-1] or "Traceback" in out or ".partial-" in out:
            problems.append(f"not one clear line naming the destination: {lines[-3:]}")
        if os.path.exists(dest):
            problems.append("a dataset was published on a full disk")
        problems += [f"left behind: {p}" for p in leftovers(mnt)]
        report("disk", 1, "conversion until the disk is full", problems, failures)
    finally:
        subprocess.run(["umount", mnt])
    return failures


def report(case: str, i: int, what: str, problems: list[str], failures: list[str]) -> None:
    print(f"{case} #{i}: {what}: " + ("ok" if not problems else "FAILED: " + "; ".join(problems)), flush=True)
    failures += [f"{case} #{i}: {p}" for p in problems]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="train,dist,dataset,disk")
    ap.add_argument("--kills", type=int, default=5, help="random kills per case")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", help="keep the trials here (default: a temporary folder, removed)")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    work = a.workdir or tempfile.mkdtemp(prefix="pggan-faults-")
    os.makedirs(work, exist_ok=True)
    results = {}
    try:
        for case in a.cases.split(","):
            start = time.time()
            if case == "train":
                failed = train_case(work, a.kills, rng)
            elif case == "dist":
                failed = train_case(work, a.kills, rng, nproc=2)
            elif case == "dataset":
                failed = dataset_case(work, a.kills, rng)
            elif case == "disk":
                failed = disk_case(work)
            else:
                raise SystemExit(f"unknown case '{case}' (train, dist, dataset, disk)")
            results[case] = failed
            print(f"== {case}: {'all passed' if not failed else f'{len(failed)} problem(s)'} ({time.time() - start:.0f}s)",
                  flush=True)
    finally:
        if not a.workdir:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any(results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
