"""``pggan plot RUN``: the losses and metrics of a run against kimg and wall time, with the resolution
changes marked (the paper's Figure 4). Reads stats.jsonl and metric-*.jsonl; needs matplotlib."""
from __future__ import annotations

import io
import json
import os

import numpy as np

from .metrics.registry import METRICS
from .util.errors import UsageError
from .util.files import atomic_write


def read_jsonl(path: str) -> list[dict]:
    out = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    raise UsageError(f"{path}, line {n}: not valid JSON (a damaged file?)") from None
    return out


def load_run(run_dir: str) -> tuple[list[dict], dict[str, list[dict]]]:
    stats_path = os.path.join(run_dir, "stats.jsonl")
    if not os.path.isfile(stats_path):
        raise UsageError(f"'{run_dir}' is not a run directory with statistics (no stats.jsonl); "
                         f"give a folder such as runs/00000-shapes-32-cpu-small")
    stats = read_jsonl(stats_path)
    if not stats:
        raise UsageError(f"{stats_path} is empty: the run has not finished a tick yet")
    metrics = {}
    for name in METRICS:
        path = os.path.join(run_dir, f"metric-{name}.jsonl")
        if os.path.isfile(path):
            recs = sorted((r for r in read_jsonl(path) if r.get("kimg") is not None), key=lambda r: r["kimg"])
            if recs:
                metrics[name] = recs
    return stats, metrics


def resolution_changes(stats: list[dict]) -> list[tuple[float, int]]:
    """(kimg, new resolution) where the networks grow: the first tick at the new resolution, moved back
    to where that tick started."""
    out = []
    for prev, cur in zip(stats, stats[1:]):
        if cur["resolution"] != prev["resolution"]:
            out.append((prev["kimg"], cur["resolution"]))
    return out


def metric_values(name: str, rec: dict) -> dict[str, float]:
    """The curves of one metric record: {label: value}."""
    return METRICS[name].curves(rec[name])


def plot_run(run_dir: str, out: str | None = None, dpi: int = 110) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("pggan plot needs matplotlib: pip install 'pggan[plot]'") from None
    stats, metrics = load_run(run_dir)
    out = out or os.path.join(run_dir, "plot.png")
    kimg = np.array([s["kimg"] for s in stats])
    wall = np.array([s.get("wall_s", 0.0) for s in stats])
    unit, scale = next((u, d) for u, d, limit in (("seconds", 1, 120), ("minutes", 60, 7200), ("hours", 3600, np.inf))
                       if wall.max() < limit)
    wall = wall / scale
    changes = resolution_changes(stats)
    rows = ["losses"] + list(metrics)
    fig, axes = plt.subplots(len(rows), 2, figsize=(12, 2.8 * len(rows)), squeeze=False, sharex="col")
    for col, (to_x, xlabel) in enumerate(((lambda k: k, "kimg"),
                                          (lambda k: np.interp(k, kimg, wall), f"wall time ({unit})"))):
        for row, name in enumerate(rows):
            ax = axes[row][col]
            if name == "losses":
                for key, label in (("loss_d", "D loss"), ("loss_g", "G loss")):
                    ax.plot(to_x(kimg), [s[key] for s in stats], label=label, lw=1)
                ax.set_ylabel("loss")
                ax.legend(loc="upper right", fontsize=8)
            else:
                recs = metrics[name]
                xs, values = to_x(np.array([r["kimg"] for r in recs])), [metric_values(name, r) for r in recs]
                for label in values[0]:
                    ys = [v[label] for v in values]
                    ax.plot(xs, ys, marker="o", ms=3, lw=1.2, label=label)
                    for x, y, r in zip(xs, ys, recs):   # values measured at different resolutions differ in kind
                        if r.get("resolution"):
                            ax.annotate(str(r["resolution"]), (x, y), textcoords="offset points", xytext=(0, 4),
                                        fontsize=6, color="gray", ha="center")
                if len(values[0]) > 1:
                    ax.legend(loc="upper right", fontsize=8)
                ax.set_ylabel(METRICS[name].title)
            ax.grid(alpha=0.3)
            for k, res in changes:
                ax.axvline(to_x(k), color="gray", ls="--", lw=0.8)
                if row == 0:
                    ax.annotate(f"{res}x{res}", (to_x(k), 1.0), xycoords=("data", "axes fraction"),
                                fontsize=7, color="gray", rotation=90, va="top", ha="right")
        axes[-1][col].set_xlabel(xlabel)
    fig.suptitle(os.path.basename(os.path.normpath(run_dir)))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write(out, lambda f: f.write(buf.getvalue()))
    return out
