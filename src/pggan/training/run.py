"""A training run on disk: the run directory, ticks, stats, grids, checkpoints, resume and signals."""
from __future__ import annotations

import os
import re
import sys
import time

import numpy as np
import torch

from ..config import TrainConfig
from ..data.images import load_images
from .checkpoint import list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint, save_generator
from .images import make_grid, save_png, to_uint8
from .loop import (STAT_KEYS, StopRequest, Trainer, _crossed, format_tick, grid_latents, peak_memory_mb,
                   resolve_device, truncate_stats, write_json_line)

RUN_RE = re.compile(r"^(\d{5})-")


def make_run_dir(outdir: str, desc: str) -> str:
    """A new ``outdir/NNNNN-desc`` folder; an existing one is never reused."""
    os.makedirs(outdir, exist_ok=True)
    while True:
        ids = [int(m.group(1)) for d in os.listdir(outdir) if (m := RUN_RE.match(d))]
        path = os.path.join(outdir, f"{max(ids, default=-1) + 1:05d}-{desc}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue


def run_description(cfg: TrainConfig) -> str:
    data = cfg.data.split(":", 1)[1] if cfg.data.startswith("builtin:") else os.path.basename(os.path.normpath(cfg.data))
    parts = [re.sub(r"[^A-Za-z0-9_.-]+", "_", data), str(cfg.net.resolution), cfg.preset or "custom"]
    if cfg.desc:
        parts.append(re.sub(r"[^A-Za-z0-9_.-]+", "_", cfg.desc))
    return "-".join(parts)


def find_latest_checkpoint(outdir: str) -> str | None:
    """The newest checkpoint of the highest-numbered run in ``outdir`` that has one."""
    if not os.path.isdir(outdir):
        return None
    runs = sorted((d for d in os.listdir(outdir) if RUN_RE.match(d)), reverse=True)
    for d in runs:
        ckpts = list_checkpoints(os.path.join(outdir, d))
        if ckpts:
            return ckpts[-1]
    return None


class RunLog:
    def __init__(self, path: str, echo):
        self.path, self.echo = path, echo

    def __call__(self, msg: str) -> None:
        with open(self.path, "a") as f:
            f.write(msg + "\n")
        self.echo(msg)


def train(cfg: TrainConfig, resume: str | None = None, progress: bool = True, step_callback=None, echo=None) -> dict:
    """Train (or resume) a run; returns {'run_dir', 'cur_nimg', 'interrupted'}.

    ``step_callback(trainer, stats)`` is called after every minibatch; returning True requests a
    stop, which behaves exactly like SIGINT (checkpoint, then return).
    """
    device = resolve_device(cfg.device)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True)
    ckpt = None
    if resume:
        ckpt = load_checkpoint(resume)
        run_dir = os.path.dirname(os.path.abspath(resume))
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
    if images.label_size != cfg.net.label_size:
        cfg.net.label_size = images.label_size
    trainer = Trainer(cfg, images, device)
    if ckpt is not None:
        trainer.load_state_dict(ckpt, resume)
    else:
        run_dir = make_run_dir(cfg.outdir, run_description(cfg))
    bar = _progress(cfg, trainer.cur_nimg, progress)
    log = RunLog(os.path.join(run_dir, "log.txt"), echo or (bar.write if bar is not None else print))
    stats_path = os.path.join(run_dir, "stats.jsonl")
    if ckpt is None:
        with open(os.path.join(run_dir, "training_options.json"), "w") as f:
            f.write(cfg.to_json() + "\n")
        reals = torch.from_numpy(np.array(images.levels[cfg.net.resolution][: cfg.grid_size ** 2])).float() / 127.5 - 1.0
        save_png(os.path.join(run_dir, "reals.png"), make_grid(to_uint8(reals), cfg.grid_size))
        log(f"run directory {run_dir}")
        log(f"data: {images.description}; device {device}; precision {cfg.precision}")
        log(f"G {sum(p.numel() for p in trainer.G.parameters()):,} parameters, "
            f"D {sum(p.numel() for p in trainer.D.parameters()):,} parameters")
    else:
        truncate_stats(stats_path, trainer.cur_nimg / 1000.0)
        log(f"resumed from {resume} at kimg {trainer.cur_nimg / 1000:.1f} on {device}")

    grid_z, grid_labels = grid_latents(cfg, images.label_size)
    total_nimg = int(cfg.sched.total_kimg * 1000)
    stop = StopRequest()
    tick_start_nimg, tick_start_time = trainer.cur_nimg, time.time()
    session_start = time.time() - trainer.wall_offset
    tick = int(trainer.cur_nimg // (cfg.tick_kimg * 1000))
    acc = {k: torch.zeros((), device=device) for k in STAT_KEYS}
    steps, last_rate = 0, 0.0

    def checkpoint(tag: str) -> str:
        trainer.wall_offset = time.time() - session_start
        path = os.path.join(run_dir, f"checkpoint-{trainer.cur_nimg // 1000:06d}.pt")
        save_checkpoint(path, trainer.state_dict())
        prune_checkpoints(run_dir, cfg.keep_checkpoints)
        log(f"{tag} checkpoint {path}")
        return path

    with stop.installed():
        while trainer.cur_nimg < total_nimg and stop.signal is None:
            prev = trainer.cur_nimg
            s = trainer.step()
            for key in STAT_KEYS:
                if key in s:
                    acc[key] += s[key]
            steps += 1
            if bar is not None:
                ph = trainer.phase()
                bar.update((trainer.cur_nimg - prev) / 1000.0)
                bar.set_postfix_str(f"res {ph.resolution} alpha {ph.alpha:.2f} {last_rate:.1f} img/s", refresh=False)
            if step_callback is not None and step_callback(trainer, s):
                stop.signal = -1
            done = trainer.cur_nimg >= total_nimg
            if _crossed(prev, trainer.cur_nimg, cfg.tick_kimg) or done:
                tick += 1
                now = time.time()
                ph = trainer.last_phase
                rec = {"tick": tick, "kimg": trainer.cur_nimg / 1000.0, "resolution": ph.resolution, "lod": ph.lod,
                       "alpha": ph.alpha, "batch": ph.batch}
                rec.update({k: float(v) / max(steps, 1) for k, v in acc.items()})
                dn, dt = trainer.cur_nimg - tick_start_nimg, max(now - tick_start_time, 1e-9)
                rec.update({"img_per_s": dn / dt, "sec_per_kimg": dt / max(dn, 1) * 1000.0,
                            "mem_mb": peak_memory_mb(device), "wall_s": now - session_start})
                write_json_line(stats_path, rec)
                log(format_tick(tick, ph, rec))
                last_rate = rec["img_per_s"]
                acc = {k: torch.zeros((), device=device) for k in STAT_KEYS}
                steps, tick_start_nimg, tick_start_time = 0, trainer.cur_nimg, time.time()
            if _crossed(prev, trainer.cur_nimg, cfg.image_kimg) or done:
                save_png(os.path.join(run_dir, f"fakes{trainer.cur_nimg // 1000:06d}.png"),
                         trainer.grid(grid_z, grid_labels))
            if _crossed(prev, trainer.cur_nimg, cfg.checkpoint_kimg) and not done:
                checkpoint("saved")
    if bar is not None:
        bar.close()
    interrupted = stop.signal is not None
    last = checkpoint("interrupted: saved" if interrupted else "final")
    if interrupted:
        log(f"stopped at kimg {trainer.cur_nimg / 1000:.1f}; continue with: pggan train --resume {last}")
    else:
        gen_path = os.path.join(run_dir, "generator-final.safetensors")
        save_generator(gen_path, trainer.G_ema, cfg.net, {"kimg": trainer.cur_nimg / 1000.0})
        final_grid = os.path.join(run_dir, f"fakes{trainer.cur_nimg // 1000:06d}.png")
        log(f"done: {trainer.cur_nimg / 1000:.1f} kimg; generator {gen_path}; final grid {final_grid}")
    return {"run_dir": run_dir, "cur_nimg": trainer.cur_nimg, "interrupted": interrupted, "signal": stop.signal}


def _progress(cfg: TrainConfig, cur_nimg: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.sched.total_kimg, initial=cur_nimg / 1000.0, unit="kimg", file=sys.stderr,
                dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} kimg [{elapsed}<{remaining}] {postfix}")
