"""The progress bar of a training run, for a terminal only: a redirected run logs one line per tick.

A budgeted run's total kimg is re-planned as it goes (it moves); the bar's time left is then the
budget's own clock, never an extrapolation past the budget's end, and its total never falls below
what has been trained.
"""
from __future__ import annotations

import sys
import time


def wanted(progress: bool | None) -> bool:
    """--progress / --no-progress, or by default: only when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else progress


class TrainingBar:
    def __init__(self, total_kimg: float, cur_kimg: float, ends_at: float | None = None):
        from tqdm import tqdm

        self.ends_at = ends_at
        clock = "{elapsed}<{remaining}" if ends_at is None else "{elapsed}"        # a budget: its own time left
        self.bar = tqdm(total=max(total_kimg, cur_kimg), initial=cur_kimg, unit="kimg", file=sys.stderr,
                        dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} kimg [" + clock + "{postfix}]")

    def set_total(self, total_kimg: float) -> None:
        self.bar.total = max(total_kimg, self.bar.n)

    def update(self, kimg: float, resolution: int, alpha: float, rate: float) -> None:
        self.bar.total = max(self.bar.total, self.bar.n + kimg)
        status = f"res {resolution} alpha {alpha:.2f} {rate:.1f} img/s"
        if self.ends_at is not None:
            s = max(0, int(self.ends_at - time.time()))
            status = f"{s // 60:02d}:{s % 60:02d} left, {status}"
        self.bar.set_postfix_str(status, refresh=False)
        self.bar.update(kimg)

    def write(self, line: str) -> None:
        self.bar.write(line)

    def close(self) -> None:
        self.bar.close()
