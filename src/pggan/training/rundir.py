"""The run directory ``runs/NNNNN-desc/``: the one owner of every file of a run.

training_options.json (the run's plan), log.txt, stats.jsonl, replans.jsonl (a budgeted run's re-plans),
metric-*.jsonl, reals.png, fakesKKKKKK.KKK.png, checkpoint-KKKKKK.KKK.pt (the newest ``keep`` kept) and
generator-final.safetensors; files are named by kimg with 3 decimals, the exact images shown. Only rank 0
of a multi-process run has one.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re

import numpy as np

from ..checkpoint import GENERATOR_FILE, checkpoint_name, list_checkpoints, prune_checkpoints, save_checkpoint, save_generator
from ..config import NetworkConfig, TrainConfig
from ..metrics.evaluate import append_results
from ..util.files import append_jsonl, atomic_write, kimg_tag, truncate_jsonl
from ..util.grids import make_grid, save_png
from .tensorboard import Events, open_events

RUN_RE = re.compile(r"^(\d{5})-")
REQUEST_FILE = "requested_options.json"
OPTIONS_FILE = "training_options.json"


def run_description(cfg: TrainConfig) -> str:
    data = cfg.data.split(":", 1)[1] if cfg.data.startswith("builtin:") else os.path.basename(os.path.normpath(cfg.data))
    parts = [re.sub(r"[^A-Za-z0-9_.-]+", "_", data), str(cfg.net.resolution), cfg.preset or "custom"]
    if cfg.desc:
        parts.append(re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.desc))
    return "-".join(parts)


def run_options(path: str) -> dict:
    """A run's final config (a dict) from its training_options.json: the plan's "config", or the whole
    file in runs made before plans were saved."""
    with open(os.path.join(path, OPTIONS_FILE)) as f:
        d = json.load(f)
    return d["config"] if "config" in d and "request" in d else d


def find_latest_checkpoint(outdir: str) -> str | None:
    """The newest checkpoint of the highest-numbered run in ``outdir`` that has one."""
    if not os.path.isdir(outdir):
        return None
    for d in sorted((d for d in os.listdir(outdir) if RUN_RE.match(d)), reverse=True):
        ckpts = list_checkpoints(os.path.join(outdir, d))
        if ckpts:
            return ckpts[-1]
    return None


def find_matching_checkpoint(request: TrainConfig) -> str | None:
    """The newest checkpoint of the newest run under ``request.outdir`` that was started with exactly
    these options (its requested_options.json)."""
    if not os.path.isdir(request.outdir):
        return None
    wanted = json.loads(request.to_json())
    for d in sorted((d for d in os.listdir(request.outdir) if RUN_RE.match(d)), reverse=True):
        path = os.path.join(request.outdir, d)
        try:
            with open(os.path.join(path, REQUEST_FILE)) as f:
                if json.load(f) != wanted:
                    continue
        except (OSError, ValueError):
            continue
        ckpts = list_checkpoints(path)
        if ckpts:
            return ckpts[-1]
    return None


class RunDir:
    def __init__(self, path: str, echo, events: Events | None = None):
        self.path, self.echo, self.events = path, echo, events      # events: TensorBoard's, when on

    @classmethod
    def create(cls, spec, echo) -> "RunDir":
        """A new ``outdir/NNNNN-desc`` folder (an existing one is never reused) holding the run's plan
        (training_options.json: the RunSpec, its final config under "config") and the options as the
        command asked for them (requested_options.json, for --resume auto)."""
        cfg = spec.config
        os.makedirs(cfg.outdir, exist_ok=True)
        while True:
            ids = [int(m.group(1)) for d in os.listdir(cfg.outdir) if (m := RUN_RE.match(d))]
            path = os.path.join(cfg.outdir, f"{max(ids, default=-1) + 1:05d}-{run_description(cfg)}")
            try:
                os.makedirs(path)
                break
            except FileExistsError:
                continue
        run = cls(path, echo, open_events(cfg.tensorboard, path, None))
        for name, text in ((OPTIONS_FILE, spec.to_json()), (REQUEST_FILE, spec.request.to_json())):
            atomic_write(run.file(name), lambda f, text=text: f.write((text + "\n").encode()))
        return run

    @classmethod
    def resume(cls, checkpoint: str, cur_nimg: int, cfg: TrainConfig, echo) -> "RunDir":
        """The run directory of ``checkpoint``, its records cut back to ``cur_nimg`` (the later ones belong
        to a trajectory now discarded; TensorBoard drops them too)."""
        path = os.path.dirname(os.path.abspath(checkpoint))
        for name in ["stats.jsonl", "replans.jsonl"] + [f for f in os.listdir(path) if f.startswith("metric-")]:
            truncate_jsonl(os.path.join(path, name), cur_nimg / 1000.0)
        return cls(path, echo, open_events(cfg.tensorboard, path, cur_nimg + 1))

    def file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def log(self, msg: str) -> None:
        with open(self.file("log.txt"), "a") as f:
            f.write(msg + "\n")
        self.echo(msg)

    def append_stats(self, cur_nimg: int, record: dict) -> None:
        append_jsonl(self.file("stats.jsonl"), record)
        if self.events is not None:
            self.events.stats(cur_nimg, record)

    def append_replan(self, replan) -> None:
        append_jsonl(self.file("replans.jsonl"), dataclasses.asdict(replan))

    def append_metrics(self, result: dict, cur_nimg: int, names) -> list[str]:
        if self.events is not None:
            self.events.metrics(cur_nimg, result, names)
        return append_results(self.path, result, cur_nimg / 1000.0, names)

    def write_grid(self, name: str, images: np.ndarray, cols: int, size: int | None = None, cur_nimg: int = 0) -> str:
        path = self.file(name)
        grid = make_grid(images, cols, size)
        save_png(path, grid)
        if self.events is not None:
            self.events.image(os.path.splitext(name)[0].rstrip("0123456789."), cur_nimg, grid)   # fakes, reals
        return path

    def write_fakes(self, cur_nimg: int, images: np.ndarray, cols: int, size: int) -> str:
        return self.write_grid(fakes_name(cur_nimg), images, cols, size, cur_nimg)

    def close(self) -> None:
        if self.events is not None:
            self.events.close()

    def write_checkpoint(self, cur_nimg: int, state: dict, keep: int) -> str:
        path = self.file(checkpoint_name(cur_nimg))
        save_checkpoint(path, state)
        prune_checkpoints(self.path, keep)
        return path

    def write_generator(self, G_ema, net: NetworkConfig, extra: dict) -> str:
        path = self.file(GENERATOR_FILE)
        save_generator(path, G_ema, net, extra)
        return path


def fakes_name(cur_nimg: int) -> str:
    return f"fakes{kimg_tag(cur_nimg)}.png"
