"""A training run on disk: the run directory, ticks, stats, grids, checkpoints, resume and signals."""
from __future__ import annotations

import dataclasses
import os
import re
import sys
import time

import numpy as np
import torch

from ..config import TrainConfig
from ..data.images import DataError, load_images
from .checkpoint import list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint, save_generator
from .images import make_grid, save_png, to_uint8
from .dist import DistInfo, all_mean, any_rank, check_identical, init_from_env, shutdown
from .loop import (STAT_KEYS, StopRequest, Trainer, _crossed, format_tick, grid_latents, peak_memory_mb,
                   precision_note, resolve_device, truncate_stats, write_json_line)

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
    """Train (or resume) a run; returns {'run_dir', 'cur_nimg', 'interrupted', 'signal'}.

    ``step_callback(trainer, stats)`` is called after every minibatch; returning True requests a
    stop, which behaves exactly like SIGINT (checkpoint, then return). Under torchrun every process
    calls this; only rank 0 writes anything.
    """
    device = resolve_device(cfg.device)
    info = init_from_env(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    try:
        result = Run(cfg, device, info, resume, progress, echo).loop(step_callback)
        if info.enabled:
            shutdown()           # waits for every rank: none tears down the group while another still writes
        return result
    except RuntimeError as e:
        if info.enabled and _is_comm_failure(e):
            raise RuntimeError(f"rank {info.rank}: lost contact with another training process ({str(e).splitlines()[0]}); "
                               f"stopping. Nothing written is corrupted: resume with --resume latest") from None
        raise


def _is_comm_failure(e: Exception) -> bool:
    text = str(e).lower()
    return any(w in text for w in ("gloo", "nccl", "connection", "timed out", "peer", "broken pipe"))


class Run:
    """One training run on disk: set-up, the loop with its tick/grid/checkpoint cadences, and the end."""

    def __init__(self, cfg: TrainConfig, device, info: DistInfo, resume: str | None, progress: bool, echo):
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        self.cfg, self.device, self.info = cfg, device, info
        ckpt = load_checkpoint(resume) if resume else None
        images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
        if cfg.conditional and not images.label_size:
            raise DataError(f"--set conditional=true needs labels, but {images.description} has none")
        if not cfg.conditional:
            images = dataclasses.replace(images, labels=None, label_size=0)
        cfg.net.label_size = images.label_size
        notes = self._auto_batch(cfg, images, device, info) if cfg.sched.auto_batch else []
        self.trainer = Trainer(cfg, images, device, info)
        self.metrics = None
        if cfg.metrics.strip():
            from .evaluation import TrainingMetrics
            self.metrics = TrainingMetrics(self.trainer)   # a bad weights file fails here, before any output
        if ckpt is not None:
            self.trainer.load_state_dict(ckpt, resume)
            self.run_dir = os.path.dirname(os.path.abspath(resume))
        else:
            self.run_dir = make_run_dir(cfg.outdir, run_description(cfg)) if info.is_main else None
        self.bar = _progress(cfg, self.trainer.cur_nimg, progress and info.is_main)
        if info.is_main:
            self.log = RunLog(os.path.join(self.run_dir, "log.txt"),
                              echo or (self.bar.write if self.bar is not None else print))
        else:
            self.log = lambda msg: None
        self.stats_path = os.path.join(self.run_dir, "stats.jsonl") if info.is_main else None
        if info.is_main and ckpt is None:
            self._describe_new_run(images)
        elif info.is_main:
            for name in ["stats.jsonl"] + [f for f in os.listdir(self.run_dir) if f.startswith("metric-")]:
                truncate_stats(os.path.join(self.run_dir, name), self.trainer.cur_nimg / 1000.0)
            self.log(f"resumed from {resume} at kimg {self.trainer.cur_nimg / 1000:.1f} on {device}"
                     + (f" with {info.world} processes" if info.enabled else ""))
        for note in notes + [precision_note(device, cfg.precision)]:
            if note:
                self.log(note)
        self.grid_z, self.grid_labels = grid_latents(cfg, images.label_size)
        self.session_start = time.time() - self.trainer.wall_offset
        self.tick = int(self.trainer.cur_nimg // (cfg.tick_kimg * 1000))
        self._reset_tick()

    @staticmethod
    def _auto_batch(cfg: TrainConfig, images, device, info: DistInfo) -> list[str]:
        if device.type != "cuda":
            return [f"auto_batch: applies to CUDA devices; on {device.type} the configured batches are used"]
        from .batchfind import find_batch_caps

        notes: list[str] = []
        caps = find_batch_caps(cfg, images, device, info, log=notes.append)
        for res, cap in caps.items():
            cfg.sched.device_batch_cap[res] = min(cap, cfg.sched.device_batch_cap.get(res, cap))
        if caps:
            cfg.sched.accumulate = True
        notes.append(f"auto_batch: per-device caps {cfg.sched.device_batch_cap or 'none needed'}")
        return notes

    def _describe_new_run(self, images) -> None:
        cfg, t = self.cfg, self.trainer
        with open(os.path.join(self.run_dir, "training_options.json"), "w") as f:
            f.write(cfg.to_json() + "\n")
        reals = torch.from_numpy(np.array(images.levels[cfg.net.resolution][: cfg.grid_size ** 2])).float() / 127.5 - 1.0
        save_png(os.path.join(self.run_dir, "reals.png"), make_grid(to_uint8(reals), cfg.grid_size))
        self.log(f"run directory {self.run_dir}")
        procs = f"; {self.info.world} processes ({'nccl' if self.device.type == 'cuda' else 'gloo'})" if self.info.enabled else ""
        self.log(f"data: {images.description}; device {self.device}; precision {cfg.precision}{procs}")
        self.log(f"G {sum(p.numel() for p in t.G.parameters()):,} parameters, "
                 f"D {sum(p.numel() for p in t.D.parameters()):,} parameters")

    def _reset_tick(self) -> None:
        self.acc = {k: torch.zeros((), device=self.device) for k in STAT_KEYS}
        self.steps, self.tick_start_nimg, self.tick_start_time = 0, self.trainer.cur_nimg, time.time()

    def _tick(self) -> float:
        """Write one stats line and log line; returns images/s."""
        t, now = self.trainer, time.time()
        self.tick += 1
        acc = torch.stack([self.acc[k] for k in STAT_KEYS]).float() / max(self.steps, 1)
        if self.info.enabled:
            acc = all_mean(acc, self.info.world)
        ph = t.last_phase
        rec = {"tick": self.tick, "kimg": t.cur_nimg / 1000.0, "resolution": ph.resolution, "lod": ph.lod,
               "alpha": ph.alpha, "batch": ph.batch}
        rec.update(zip(STAT_KEYS, acc.tolist()))
        dn, dt = t.cur_nimg - self.tick_start_nimg, max(now - self.tick_start_time, 1e-9)
        rec.update({"img_per_s": dn / dt, "sec_per_kimg": dt / max(dn, 1) * 1000.0,
                    "mem_mb": peak_memory_mb(self.device), "wall_s": now - self.session_start})
        if self.info.is_main:
            write_json_line(self.stats_path, rec)
            self.log(format_tick(self.tick, ph, rec))
        self._reset_tick()
        return rec["img_per_s"]

    def checkpoint(self, tag: str) -> str | None:
        """All ranks check they agree; rank 0 writes."""
        t = self.trainer
        if self.info.enabled:
            check_identical([t.G, t.D, t.G_ema], self.info)
        if not self.info.is_main:
            return None
        t.wall_offset = time.time() - self.session_start
        path = os.path.join(self.run_dir, f"checkpoint-{t.cur_nimg // 1000:06d}.pt")
        save_checkpoint(path, t.state_dict())
        prune_checkpoints(self.run_dir, self.cfg.keep_checkpoints)
        self.log(f"{tag} checkpoint {path}")
        return path

    def evaluate_metrics(self) -> None:
        start = time.time()
        self.metrics.run(self.run_dir, start - self.session_start, self.log)
        self.tick_start_time += time.time() - start      # the tick's images/s measure training only

    def loop(self, step_callback=None) -> dict:
        cfg, t = self.cfg, self.trainer
        total_nimg = int(cfg.sched.total_kimg * 1000)
        stop, rate = StopRequest(), 0.0
        with stop.installed():
            while t.cur_nimg < total_nimg:
                prev = t.cur_nimg
                s = t.step()
                for key in STAT_KEYS:
                    if key in s:
                        self.acc[key] += s[key]
                self.steps += 1
                if step_callback is not None and step_callback(t, s):
                    stop.signal = -1
                if self.bar is not None:
                    self.bar.update((t.cur_nimg - prev) / 1000.0)
                    self.bar.set_postfix_str(f"res {t.last_phase.resolution} alpha {t.last_phase.alpha:.2f} "
                                             f"{rate:.1f} img/s", refresh=False)
                done = t.cur_nimg >= total_nimg
                if _crossed(prev, t.cur_nimg, cfg.tick_kimg) or done:
                    rate = self._tick()
                if (_crossed(prev, t.cur_nimg, cfg.image_kimg) or done) and self.info.is_main:
                    save_png(os.path.join(self.run_dir, f"fakes{t.cur_nimg // 1000:06d}.png"),
                             t.grid(self.grid_z, self.grid_labels))
                stopping = stop.signal is not None
                if self.info.enabled:
                    stopping = any_rank(stopping, self.device)
                if stopping:
                    stop.signal = stop.signal or -1
                    break
                if self.metrics is not None and (_crossed(prev, t.cur_nimg, cfg.metrics_kimg) or done):
                    self.evaluate_metrics()
                if _crossed(prev, t.cur_nimg, cfg.checkpoint_kimg) and not done:
                    self.checkpoint("saved")
        return self.finish(stop.signal)

    def finish(self, signal_number) -> dict:
        t, interrupted = self.trainer, signal_number is not None
        if self.bar is not None:
            self.bar.close()
        last = self.checkpoint("interrupted: saved" if interrupted else "final")
        if interrupted:
            self.log(f"stopped at kimg {t.cur_nimg / 1000:.1f}; continue with: pggan train --resume {last}")
        elif self.info.is_main:
            gen_path = os.path.join(self.run_dir, "generator-final.safetensors")
            ph = t.phase()                         # a run that ends mid-growth shares its current level
            save_generator(gen_path, t.G_ema, self.cfg.net, {"kimg": t.cur_nimg / 1000.0, "resolution": ph.resolution,
                                                              "alpha": ph.alpha})
            final_grid = os.path.join(self.run_dir, f"fakes{t.cur_nimg // 1000:06d}.png")
            self.log(f"done: {t.cur_nimg / 1000:.1f} kimg; generator {gen_path}; final grid {final_grid}")
        return {"run_dir": self.run_dir, "cur_nimg": t.cur_nimg, "interrupted": interrupted, "signal": signal_number}


def _progress(cfg: TrainConfig, cur_nimg: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.sched.total_kimg, initial=cur_nimg / 1000.0, unit="kimg", file=sys.stderr,
                dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.1f}/{total:.0f} kimg [{elapsed}<{remaining}] {postfix}")
