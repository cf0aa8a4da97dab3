"""A training run: set-up, the loop with its tick / grid / metrics / checkpoint cadences, signals, the end."""
from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from dataclasses import dataclass

import torch

from ..checkpoint import load_checkpoint
from ..config import TrainConfig
from ..schedule import Phase
from ..util.device import configure_cuda, peak_memory_mb, precision_note, resolve_device
from ..util.dist import DistInfo, ProcessGroupError, all_mean, all_min, any_rank, check_identical, init_from_env, shutdown
from ..util.grids import sample_indices
from .budget import EndPace, replan
from .plan import RunRequest, RunSpec, plan_run
from .progress import TrainingBar
from .rundir import RunDir, fakes_name
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


def run_training(cfg: TrainConfig | RunRequest, resume: str | None = None, progress: bool = True,
                 step_callback=None, echo=None, started: float | None = None) -> RunResult:
    """Plan (:func:`~pggan.training.plan.plan_run`) and train (or resume) a run. ``cfg``: the options, or a
    RunRequest that also says which the user gave; ``started``: when the budget (``cfg.budget``) began,
    a time.time() (default: now).

    ``step_callback(trainer, step)`` is called after every minibatch; returning True requests a stop,
    which behaves exactly like SIGINT (checkpoint, then return). Under torchrun every process calls
    this; only rank 0 writes anything.
    """
    req = cfg if isinstance(cfg, RunRequest) else RunRequest(cfg)
    req = dataclasses.replace(req, resume=resume or req.resume, started=started or req.started or time.time())
    device = resolve_device(req.config.device)
    info = init_from_env(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    try:
        if req.config.deterministic:
            torch.use_deterministic_algorithms(True)
        spec, images = plan_run(req, device, info)
        result = Run(spec, images, device, info, progress, echo, req.started).loop(step_callback)
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
    """One training run, as planned (``spec``): the trainer, its run directory (rank 0) and the loop's cadences."""

    def __init__(self, spec: RunSpec, images, device, info: DistInfo, progress: bool, echo, started: float):
        cfg, resumed = spec.config, spec.start == "resume"
        self.spec, self.cfg, self.device, self.info = spec, cfg, device, info
        self.trainer = t = Trainer(cfg, images, device, info)
        self.metrics = None
        if cfg.metrics.strip():
            from .metric_tracker import TrainingMetrics
            self.metrics = TrainingMetrics(t)   # a bad weights file fails here, before any output
        if spec.start != "new":
            (t.load_state_dict if resumed else t.load_init)(load_checkpoint(spec.checkpoint), spec.checkpoint)
        self._start_clock(started if spec.budget and not resumed else time.time() - t.wall_offset)
        self.bar = TrainingBar(t.schedule.total_kimg, t.cur_nimg / 1000.0, self.ends_at) if progress and info.is_main else None
        self.run_dir: RunDir | None = None
        self._open_run_dir(echo or (self.bar.write if self.bar is not None else print), images)
        if cfg.cuda_graphs:
            why = t.use_graphs(self.log)
            self.log(f"cuda_graphs: {'steps run eagerly: ' + why if why else 'each step is replayed as a CUDA graph'}")
        self.grid_z, self.grid_labels = grid_latents(cfg, t.classes)
        if spec.start == "init" and self.run_dir is not None:     # where fine-tuning starts: the network as loaded
            self.log(f"fine-tuning {cfg.init} from {cfg.sched.start_resolution}x{cfg.sched.start_resolution}")
            self.run_dir.write_fakes(0, t.sample(self.grid_z, self.grid_labels), cfg.grid_size, cfg.net.resolution)
        self.tick = int(t.cur_nimg // (cfg.tick_kimg * 1000))
        self.iterations = 0
        self.last_phase = t.phase()
        self._reset_tick()

    def _start_clock(self, session_start: float) -> None:
        """A budgeted run's clock starts with the process, so that its set-up counts against the budget."""
        budget = self.spec.budget
        self.session_start = session_start
        self.ends_at = self.session_start + budget.seconds if budget else None
        self.pace = EndPace(self.ends_at - budget.end_s) if budget else None
        self.costs = budget.costs if budget else None        # what a re-plan compares the speed with
        self.pace_steps = 0

    def _open_run_dir(self, echo, images) -> None:
        """Rank 0's run directory (a new one, or the resumed run's cut back to its checkpoint), and the first log lines."""
        spec, t, info = self.spec, self.trainer, self.info
        if not info.is_main:
            return
        if spec.start == "resume":
            self.run_dir = RunDir.resume(spec.checkpoint, t.cur_nimg, self.cfg, echo)
            self.log(f"resumed from {spec.checkpoint} at kimg {t.cur_nimg / 1000:.1f} on {self.device}"
                     + (f" with {info.world} processes" if info.enabled else ""))
        else:
            self.run_dir = RunDir.create(spec, echo)
            self._describe_new_run(images)
        for note in [*spec.notes, precision_note(self.device, spec.precision),
                     configure_cuda(self.device, self.cfg.deterministic)]:
            if note:
                self.log(note)

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
        self.tick_start_phase = self.trainer.phase()

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
        if self.costs is not None:
            self.replan_if_off(rec, self.tick_start_phase, now)
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
        path = self.run_dir.write_checkpoint(t.cur_nimg, {**t.state_dict(), "spec": self.spec.to_json()},
                                             self.cfg.keep_checkpoints)
        self.log(f"{tag} checkpoint {path}")
        return path

    def evaluate_metrics(self) -> None:
        start = time.time()
        self.metrics.run(self.run_dir, start - self.session_start, self.log)
        self.tick_start_time += time.time() - start      # the tick's images/s measure training only

    def end_on_time(self, step: Step, now: float) -> None:
        """A budgeted run in its last phase moves its end (the trainer's schedule, saved with every
        checkpoint; never the config) after every step to where it meets the deadline at the speed
        measured (``EndPace``): the plan's speeds were measured in seconds, and a machine's speed drifts
        over a run or drops when another job starts. In a multi-process run every AGREE_STEPS steps, on
        every rank alike: the ranks agree on the earliest end."""
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
        t.set_schedule(total_kimg=total / 1000.0)
        if self.bar is not None:
            self.bar.set_total(t.schedule.total_kimg)

    def replan_if_off(self, rec: dict, phase_at_start: Phase, now: float) -> None:
        """After a tick spent in one phase of a budgeted run's growth: where its speed departs from the plan
        by more than REPLAN_FACTOR, the phases not yet begun are planned again (budget.replan), logged in
        one line and recorded in replans.jsonl. Every rank decides on the same figures (rank 0's, agreed)."""
        ph, t = self.last_phase, self.trainer
        if (ph.resolution, ph.fading) != (phase_at_start.resolution, phase_at_start.fading):
            return
        measured, left = rec["sec_per_kimg"], self.ends_at - now
        if self.info.enabled:
            measured, left = all_mean(torch.tensor([measured, left], dtype=torch.float64, device=self.device),
                                      self.info.world).tolist()
        new = replan(self.cfg, t.schedule, self.costs, t.cur_nimg / 1000.0, ph.resolution, ph.fading, measured, left)
        if new is None:
            return
        t.set_schedule(**new.schedule)
        self.costs = new.costs
        self.pace = EndPace(self.ends_at - (new.costs.grid + new.costs.checkpoint + new.costs.metrics))
        if self.bar is not None:
            self.bar.set_total(t.schedule.total_kimg)
        if self.run_dir is not None:
            self.run_dir.append_replan(new)
        self.log(new.line())

    def loop(self, step_callback=None) -> RunResult:
        stop, rate = StopRequest(), 0.0
        with stop.installed():
            try:
                stopping = False            # agreed by all ranks (a signal may reach one rank only)
                while self.trainer.cur_nimg < int(self.trainer.schedule.total_kimg * 1000) and not stopping:
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
        done = t.cur_nimg >= int(t.schedule.total_kimg * 1000)
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

