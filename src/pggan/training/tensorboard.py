"""TensorBoard events of a run, beside its stats.jsonl and metric-*.jsonl: the tick stats, every metric and
the image grids, so that ``tensorboard --logdir runs`` shows them. Steps are images shown (cur_nimg).

A resumed run opens the event log with ``purge_step`` at its checkpoint: TensorBoard then drops the points
that the interrupted part of the run wrote after it, as stats.jsonl is cut back, so the curves continue
without duplicates.
"""
from __future__ import annotations

import threading

import numpy as np

from ..metrics.registry import METRICS
from ..util.errors import UsageError

GROUPS = {"loss_d": "Loss/D", "loss_g": "Loss/G", "score_real": "Loss/score_real", "score_fake": "Loss/score_fake",
          "penalty": "Loss/penalty", "resolution": "Progress/resolution", "lod": "Progress/lod",
          "alpha": "Progress/alpha", "batch": "Progress/batch", "kimg": "Progress/kimg", "aug_p": "Progress/aug_p",
          "img_per_s": "Timing/img_per_s", "sec_per_kimg": "Timing/sec_per_kimg", "mem_mb": "Resources/mem_mb"}


def available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def open_events(setting: str, run_path: str, purge_nimg: int | None):
    """An :class:`Events` for the run directory, or None when ``setting`` is off (or auto without the package)."""
    if setting == "off" or (setting == "auto" and not available()):
        return None
    if not available():
        raise UsageError("tensorboard=on needs the tensorboard package: pip install 'pggan[all]' (or tensorboard), "
                         "or --set tensorboard=off")
    return Events(run_path, purge_nimg)


def metric_scalars(name: str, value) -> dict[str, float]:
    """One metric's result as TensorBoard scalars."""
    return {f"Metrics/{tag}": v for tag, v in METRICS[name].scalars(value).items()}


def quiet_writer_thread_errors() -> None:
    """Keep Python from printing a traceback when TensorBoard's writer thread fails to write (a full disk).
    The thread keeps its error and the writer raises it again in the training thread at its next call,
    where it becomes pggan's one-line message; other threads' errors are printed as before."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook
    if getattr(previous, "pggan_quiet", False):
        return

    def hook(args):
        if not (isinstance(args.thread, _AsyncWriterThread) and issubclass(args.exc_type, OSError)):
            previous(args)

    hook.pggan_quiet = True
    threading.excepthook = hook


class Events:
    def __init__(self, run_path: str, purge_nimg: int | None):
        from torch.utils.tensorboard import SummaryWriter

        quiet_writer_thread_errors()
        self.writer = SummaryWriter(run_path, purge_step=purge_nimg, flush_secs=30)

    def stats(self, nimg: int, record: dict) -> None:
        for key, tag in GROUPS.items():
            if key in record:
                self.writer.add_scalar(tag, record[key], nimg)
        self.writer.flush()

    def metrics(self, nimg: int, result: dict, names) -> None:
        for name in names:
            if name in result:
                for tag, v in metric_scalars(name, result[name]).items():
                    self.writer.add_scalar(tag, v, nimg)
        self.writer.flush()

    def image(self, tag: str, nimg: int, grid: np.ndarray) -> None:
        """grid: uint8 [H, W, C]."""
        self.writer.add_image(tag, grid if grid.shape[2] == 3 else grid[..., 0], nimg,
                              dataformats="HWC" if grid.shape[2] == 3 else "HW")

    def close(self) -> None:
        self.writer.close()
