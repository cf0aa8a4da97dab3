"""What the pages show about runs, read from their files only: status, progress, curves, grids, log."""
from __future__ import annotations

import json
import os
import time

from ..checkpoint import GENERATOR_FILE, list_checkpoints
from ..training.rundir import RUN_RE, run_options
from ..util.files import tagged_files

GROWING_S = 120.0          # a log written to within this many seconds counts as a run still training


def find_runs(root: str) -> dict[str, str]:
    """{name: path} of the run directories served: ``root`` itself when it is one, else its children."""
    root = os.path.abspath(root)
    if os.path.isfile(os.path.join(root, "training_options.json")):
        return {os.path.basename(root): root}
    if not os.path.isdir(root):
        return {}
    return {d: os.path.join(root, d) for d in sorted(os.listdir(root), reverse=True)
            if RUN_RE.match(d) and os.path.isfile(os.path.join(root, d, "training_options.json"))}


def _jsonl(path: str) -> list[dict]:
    if not os.path.isfile(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line, parse_constant=lambda _: None))   # NaN (a diverged loss): JSON has none
            except ValueError:
                continue                    # a line being written
    return out


def _tail(path: str, lines: int, block: int = 1 << 16) -> list[str]:
    """The last ``lines`` lines of a text file, reading at most its last ``block`` bytes."""
    if not os.path.isfile(path):
        return []
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - block))
        return f.read().decode(errors="replace").splitlines()[-lines:]


def run_summary(path: str, now: float | None = None) -> dict:
    """Status (training, finished, interrupted), kimg, resolution, image rate and ETA of one run."""
    now = time.time() if now is None else now
    options = run_options(path)
    stats = _jsonl(os.path.join(path, "stats.jsonl"))
    last = stats[-1] if stats else {}
    total = float(options.get("sched", {}).get("total_kimg", 0))
    log = os.path.join(path, "log.txt")
    # a run just created has its options but no log yet: its age counts from the options (finite, so JSON)
    age = now - os.path.getmtime(log if os.path.isfile(log) else os.path.join(path, "training_options.json"))
    finished = os.path.isfile(os.path.join(path, GENERATOR_FILE))
    status = "finished" if finished else "training" if age < GROWING_S else "interrupted"
    rate = last.get("img_per_s")
    kimg = last.get("kimg", 0.0)
    eta = (total - kimg) * 1000 / rate if status == "training" and rate else None
    return {"name": os.path.basename(path), "status": status, "kimg": kimg, "total_kimg": total,
            "resolution": last.get("resolution"), "img_per_s": rate, "eta_s": eta, "log_age_s": age,
            "data": options.get("data"), "checkpoints": len(list_checkpoints(path))}


def run_detail(path: str, log_lines: int = 40) -> dict:
    """Everything the run page draws: options, stats, metrics, grids (kimg, file), the log's tail."""
    metrics = {f[len("metric-"):-len(".jsonl")]: _jsonl(os.path.join(path, f))
               for f in sorted(os.listdir(path)) if f.startswith("metric-") and f.endswith(".jsonl")}
    grids = [{"kimg": n / 1000.0, "file": os.path.basename(p)} for n, p in tagged_files(path, "fakes", ".png")]
    return dict(run_summary(path), options=run_options(path), stats=_jsonl(os.path.join(path, "stats.jsonl")),
                metrics=metrics, grids=grids, log=_tail(os.path.join(path, "log.txt"), log_lines),
                reals="reals.png" if os.path.isfile(os.path.join(path, "reals.png")) else None)


def networks_of(path: str) -> list[str]:
    """The generators of a run the explorer can open: generator-final, then checkpoints, newest first."""
    out = []
    if os.path.isfile(os.path.join(path, GENERATOR_FILE)):
        out.append(GENERATOR_FILE)
    return out + [os.path.basename(p) for p in reversed(list_checkpoints(path))]
