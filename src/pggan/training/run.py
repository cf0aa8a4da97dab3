"""A training run: set-up, the loop with its tick / grid / metrics / checkpoint cadences, signals, the end."""
from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass

import torch

from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..data.clusters import with_clusters
from ..schedule import Phase, check_batches
from ..util.device import configure_cuda, peak_memory_mb, precision_note, resolve_device
from ..util.dist import DistInfo, ProcessGroupError, all_mean, all_min, any_rank, check_identical, init_from_env, shutdown
from ..util.grids import sample_indices
from .budget import EndPace, budget_seconds, clusters_for_budget, plan_budget
from .progress import TrainingBar
from .rundir import RunDir, fakes_name
from .setup import check_init_labels, load_training_data, resolve_config
from .trainer import Step, Trainer, grid_latents

STAT_KEYS = ("loss_d", "loss_g", "score_real", "score_fake", "penalty")


@dataclass(frozen=True)
class RunResult:
    run_dir: str | None          # None on ranks other than 0
    cur_nimg: int
    signal: int | None           # the signal that stopped the run (-1: a stop request), None if it finished

    @property
    def interrupted(self) -> bool:
        return self.signal is not None

    @property
    def exit_code(self) -> int:
        """0 when finished; 130 / 143 after SIGINT / SIGTERM (the shell's convention); 1 otherwise."""
        if not self.interrupted:
            return 0
        return {signal.SIGINT: 130, signal.SIGTERM: 143}.get(self.signal, 1)


def run_training(cfg: TrainConfig, resume: str | None = None, progress: bool = True, step_callback=None,
                 echo=None, started: float | None = None) -> RunResult:
    """Train (or resume) a run. ``started``: when the budget (``cfg.budget``) began, a time.time()
    (default: now).

    ``step_callback(trainer, step)`` is called after every minibatch; returning True requests a stop,
    which behaves exactly like SIGINT (checkpoint, then return). Under torchrun every process calls
    this; only rank 0 writes anything.
    """
    device = resolve_device(cfg.device)
    info = init_from_env(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    try:
        result = Run(cfg, device, info, resume, progress, echo, started or time.time()).loop(step_callback)
        if info.enabled:
            shutdown()           # waits for every rank: none tears down the group while another still writes
        return result
    except RuntimeError as e:
        if info.enabled and _is_comm_failure(e):
            raise ProcessGroupError(f"rank {info.rank}: lost contact with another training process "
                                    f"({str(e).splitlines()[0]}); stopping. Nothing written is corrupted: "
                                    f"resume with --resume latest") from None
        raise


def _is_comm_failure(e: Exception) -> bool:
    text = str(e).lower()
    return any(w in text for w in ("gloo", "nccl", "connection", "timed out", "peer", "broken pipe"))


# Multi-process runs agree on their end (a budget's) and on a stop (a signal may reach one rank) every this
# many steps: each agreement is a round trip that the host waits for (a GPU sync), so not every step.
AGREE_STEPS = 8


class Run:
    """One training run: the trainer, its run directory (rank 0) and the loop's cadences."""

    def __init__(self, cfg: TrainConfig, device, info: DistInfo, resume: str | None, progress: bool, echo,
                 started: float):
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        check_batches(cfg.sched, cfg.net, info.world)      # before the data is read
        ckpt = load_checkpoint(resume) if resume else None
        images = load_training_data(cfg, info.local_world)
        init = load_checkpoint(cfg.init) if cfg.init and ckpt is None else None
        if init is not None:
            check_init_labels(cfg, images)
        request, notes = cfg, []
        clusters = clusters_for_budget(cfg, len(images)) if ckpt is None else 0
        if clusters:
            cfg = cfg.replace(clusters=clusters)
            images = with_clusters(images, clusters, cfg.seed)
            notes.append(f"budget: conditioned on {clusters} clusters of the images (budget_clusters; "
                         f"--set budget_clusters=0 for an unconditional generator)")
        cfg, more = resolve_config(cfg, images, device, info, fresh=ckpt is None)
        check_batches(cfg.sched, cfg.net, info.world)      # and the batches chosen for this device
        notes += more
        end_s = 0.0
        if cfg.budget and ckpt is None:            # a resumed run follows the plan saved with it
            cfg, end_s = plan_budget(cfg, images, device, info, started, log=notes.append)
        self.cfg, self.device, self.info = cfg, device, info
        self.trainer = t = Trainer(cfg, images, device, info)
        self.metrics = None
        if cfg.metrics.strip():
            from .metric_tracker import TrainingMetrics
            self.metrics = TrainingMetrics(t)   # a bad weights file fails here, before any output
        if ckpt is not None:
            t.load_state_dict(ckpt, resume)
        elif init is not None:
            t.load_init(init, cfg.init)
        # a budgeted run's clock starts with the process, so that its set-up counts against the budget
        self.session_start = started if cfg.budget and ckpt is None else time.time() - t.wall_offset
        ends_at = self.session_start + budget_seconds(cfg) if cfg.budget else None
        self.pace = EndPace(ends_at - end_s) if cfg.budget else None
        self.pace_steps = 0
        self.bar = TrainingBar(cfg.sched.total_kimg, t.cur_nimg / 1000.0, ends_at) if progress and info.is_main else None
        echo = echo or (self.bar.write if self.bar is not None else print)
        self.run_dir: RunDir | None = None
        if info.is_main and ckpt is None:
            self.run_dir = RunDir.create(cfg, request, echo)
            self._describe_new_run(images)
        elif info.is_main:
            self.run_dir = RunDir.resume(resume, t.cur_nimg, cfg, echo)
            self.log(f"resumed from {resume} at kimg {t.cur_nimg / 1000:.1f} on {device}"
                     + (f" with {info.world} processes" if info.enabled else ""))
        for note in notes + [precision_note(device, cfg.precision), configure_cuda(device, cfg.deterministic)]:
            if note:
                self.log(note)
        if cfg.cuda_graphs:
            why = t.use_graphs(self.log)
            self.log(f"cuda_graphs: {'steps run eagerly: ' + why if why else 'each step is replayed as a CUDA graph'}")
        self.grid_z, self.grid_labels = grid_latents(cfg, t.classes)
        if init is not None and self.run_dir is not None:     # where fine-tuning starts: the network as loaded
            self.log(f"fine-tuning {cfg.init} from {cfg.sched.start_resolution}x{cfg.sched.start_resolution}")
            self.run_dir.write_fakes(0, t.sample(self.grid_z, self.grid_labels), cfg.grid_size, cfg.net.resolution)
        self.tick = int(t.cur_nimg // (cfg.tick_kimg * 1000))
        self.iterations = 0
        self.last_phase = t.phase()
        self._reset_tick()

    def log(self, msg: str) -> None:
        if self.run_dir is not None:
            self.run_dir.log(msg)

    def _describe_new_run(self, images) -> None:
        cfg, t = self.cfg, self.trainer
        idx = sample_indices(len(images), cfg.grid_size ** 2, cfg.seed)
        reals = images.levels[cfg.net.resolution][idx].transpose(0, 2, 3, 1)   # [N, H, W, C]
        self.run_dir.write_grid("reals.png", reals, cfg.grid_size)
        self.log(f"run directory {self.run_dir.path}")
        procs = f"; {self.info.world} processes ({'nccl' if self.device.type == 'cuda' else 'gloo'})" if self.info.enabled else ""
        self.log(f"data: {images.description}; device {self.device}; precision {cfg.precision}{procs}")
        self.log(f"G {sum(p.numel() for p in t.G.parameters()):,} parameters, "
                 f"D {sum(p.numel() for p in t.D.parameters()):,} parameters")

    def _reset_tick(self) -> None:
        self.acc = {k: torch.zeros((), device=self.device) for k in STAT_KEYS}
        self.steps, self.tick_start_nimg, self.tick_start_time = 0, self.trainer.cur_nimg, time.time()

    def _tick(self) -> float:
        """Write one stats line and log line; returns images/s."""
        t, now, ph = self.trainer, time.time(), self.last_phase
        self.tick += 1
        acc = torch.stack([self.acc[k] for k in STAT_KEYS]).float() / max(self.steps, 1)
        if self.info.enabled:
            acc = all_mean(acc, self.info.world)
        rec = {"tick": self.tick, "kimg": t.cur_nimg / 1000.0, "resolution": ph.resolution, "lod": ph.lod,
               "alpha": ph.alpha, "batch": ph.batch}
        rec.update(zip(STAT_KEYS, acc.tolist()))
        dn, dt = t.cur_nimg - self.tick_start_nimg, max(now - self.tick_start_time, 1e-9)
        rec.update({"img_per_s": dn / dt, "sec_per_kimg": dt / max(dn, 1) * 1000.0,
                    "mem_mb": peak_memory_mb(self.device), "wall_s": now - self.session_start})
        if t.aug_policy:
            rec["aug_p"] = float(t.aug_p)
        if self.run_dir is not None:
            self.run_dir.append_stats(t.cur_nimg, rec)
            self.log(format_tick(self.tick, ph, rec))
        self._reset_tick()
        return rec["img_per_s"]

    def checkpoint(self, tag: str) -> str | None:
        """All ranks check they agree; rank 0 writes."""
        t = self.trainer
        if self.info.enabled:
            check_identical([t.G, t.D, t.G_ema], self.info)
        if self.run_dir is None:
            return None
        t.wall_offset = time.time() - self.session_start
        path = self.run_dir.write_checkpoint(t.cur_nimg, t.state_dict(), self.cfg.keep_checkpoints)
        self.log(f"{tag} checkpoint {path}")
        return path

    def evaluate_metrics(self) -> None:
        start = time.time()
        self.metrics.run(self.run_dir, start - self.session_start, self.log)
        self.tick_start_time += time.time() - start      # the tick's images/s measure training only

    def end_on_time(self, step: Step, now: float) -> None:
        """A budgeted run in its last phase moves its end (total_kimg) after every step to where it meets
        the deadline at the speed measured (``EndPace``): the plan's speeds were measured in seconds, and
        a machine's speed drifts over a run or drops when another job starts. Nothing before the end of
        the run changes. In a multi-process run every AGREE_STEPS steps, on every rank alike: the
        ranks agree on the earliest end."""
        ph, t = step.phase, self.trainer
        if ph.resolution != self.cfg.net.resolution or ph.alpha < 1.0:
            return
        self.pace_steps += 1
        if self.info.enabled and self.pace_steps % AGREE_STEPS:
            return                  # the ranks' agreement is a round trip (and a GPU sync): not every step
        total = self.pace.end_nimg(t.cur_nimg, now)
        if total is None:
            return
        if self.info.enabled:
            total = all_min(total, self.device)
        self.cfg.sched.total_kimg = total / 1000.0          # saved with the next checkpoint
        if self.bar is not None:
            self.bar.set_total(self.cfg.sched.total_kimg)

    def loop(self, step_callback=None) -> RunResult:
        stop, rate = StopRequest(), 0.0
        with stop.installed():
            try:
                stopping = False            # agreed by all ranks (a signal may reach one rank only)
                while self.trainer.cur_nimg < int(self.cfg.sched.total_kimg * 1000) and not stopping:
                    rate, stopping = self.iteration(stop, step_callback, rate)
            except RuntimeError as e:
                if self.info.enabled and _is_comm_failure(e):
                    stop.keep = True     # torchrun's SIGTERM may follow: only record it, so this error is reported
                raise
        return self.finish(stop.signal)

    def iteration(self, stop: "StopRequest", step_callback, rate: float) -> tuple[float, bool]:
        """One minibatch and whatever falls due after it (tick, grid, stop, metrics, checkpoint); returns
        the images/s of the last tick and whether the ranks agreed to stop (a signal or the callback)."""
        cfg, t = self.cfg, self.trainer
        prev = t.cur_nimg
        step = t.step()
        self.last_phase = step.phase
        for key in STAT_KEYS:
            if key in step.stats:
                self.acc[key] += step.stats[key]
        self.steps += 1
        if step_callback is not None and step_callback(t, step):
            stop.signal = -1
        if self.bar is not None:
            self.bar.update((t.cur_nimg - prev) / 1000.0, step.phase.resolution, step.phase.alpha, rate)
        if self.pace is not None:
            self.end_on_time(step, time.time())
        done = t.cur_nimg >= int(cfg.sched.total_kimg * 1000)
        if crossed(prev, t.cur_nimg, cfg.tick_kimg) or done:
            rate = self._tick()
        if (crossed(prev, t.cur_nimg, cfg.image_kimg) or done) and self.run_dir is not None:
            self.run_dir.write_fakes(t.cur_nimg, t.sample(self.grid_z, self.grid_labels), cfg.grid_size,
                                     cfg.net.resolution)
        stopping = stop.signal is not None
        self.iterations += 1
        if self.info.enabled:
            stopping = any_rank(stopping, self.device) if self.iterations % AGREE_STEPS == 0 or done else False
        if stopping:
            stop.signal = stop.signal or -1
            return rate, True
        if self.metrics is not None and (crossed(prev, t.cur_nimg, cfg.metrics_kimg) or done):
            self.evaluate_metrics()
        if crossed(prev, t.cur_nimg, cfg.checkpoint_kimg) and not done:
            self.checkpoint("saved")
        return rate, False

    def finish(self, signal_number) -> RunResult:
        t, interrupted = self.trainer, signal_number is not None
        if self.bar is not None:
            self.bar.close()
        last = self.checkpoint("interrupted: saved" if interrupted else "final")
        if interrupted:
            self.log(f"stopped at kimg {t.cur_nimg / 1000:.1f}; continue with: pggan train --resume {last}")
        elif self.run_dir is not None:
            ph = t.phase()                         # a run that ends mid-growth shares its current level
            extra = {"kimg": t.cur_nimg / 1000.0, "resolution": ph.resolution, "alpha": ph.alpha}
            if t.classes is not None:
                extra["classes"] = t.classes.to_json()
            gen_path = self.run_dir.write_generator(t.G_ema, self.cfg.net, extra)
            self.log(f"done: {t.cur_nimg / 1000:.1f} kimg; generator {gen_path}; "
                     f"final grid {self.run_dir.file(fakes_name(t.cur_nimg))}")
        if self.run_dir is not None:
            self.run_dir.close()
        return RunResult(self.run_dir.path if self.run_dir else None, t.cur_nimg, signal_number)


class StopRequest:
    """Set by SIGINT/SIGTERM (or a test callback): the loop saves a checkpoint and returns."""

    def __init__(self):
        self.signal: int | None = None
        self.keep = False        # leave the handlers installed (the process is about to exit with an error)

    def __call__(self, signum, frame):
        self.signal = signum

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        old = {s: signal.signal(s, self) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, h in old.items() if not self.keep else ():
                signal.signal(s, h)


def crossed(prev_nimg: int, cur_nimg: int, every_kimg: float) -> bool:
    """True when a multiple of ``every_kimg`` lies in (prev_nimg, cur_nimg]."""
    if every_kimg <= 0:
        return False
    every = every_kimg * 1000.0
    return math.floor(cur_nimg / every) > math.floor(prev_nimg / every)


def format_tick(tick: int, ph: Phase, s: dict) -> str:
    return (f"tick {tick:<5d} kimg {s['kimg']:<9.1f} res {ph.resolution:<4d} lod {ph.lod:<6.3f} alpha {ph.alpha:<5.3f} "
            f"batch {ph.batch:<4d} loss_d {s['loss_d']:+9.4f} loss_g {s['loss_g']:+9.4f} img/s {s['img_per_s']:8.1f} "
            f"sec/kimg {s['sec_per_kimg']:8.2f} mem {s['mem_mb']:8.1f}MB time {_fmt_time(s['wall_s'])}"
            + (f" aug_p {s['aug_p']:.3f}" if "aug_p" in s else ""))


def _fmt_time(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{(s // 60) % 60:02d}m{s % 60:02d}s" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"

