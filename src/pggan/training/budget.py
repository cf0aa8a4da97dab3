"""``--budget``: plan a run's schedule so that it reaches its resolution and ends within a wall-clock budget.

Before training, a throwaway Trainer times a few training steps at every level (stabilise, and fade
for the levels above the first) on this machine, with this config and data, and a run directory's
other costs (grids, checkpoints, metrics) are timed too. ``plan_schedule`` then divides the time left:

- the top resolution's stabilise phase gets ``budget_top_share`` of it (the images a user looks at come
  from there), more when that would leave every earlier phase over ``PHASE_KIMG_CAP`` kimg: then the
  earlier phases get that many kimg and the top phase the rest, up to ``TOP_SHARE_MAX`` of the time
  (docs/budget.md has the measurements behind these values),
- every earlier phase (each lower resolution's stabilise phase, each fade) the same number of images,
  as in the paper, with what remains.

The plan is a :class:`BudgetPlan` of the run's :class:`~pggan.training.plan.RunSpec`, and its tables
are written into the run's config (``sched.stabilise_kimg_table``, ``sched.fade_kimg_table``,
``sched.total_kimg``), so that the schedule is the usual pure function of images shown. While the run
trains, its own state (never the config) moves the end to meet the deadline (:class:`EndPace`) and,
where a tick's measured speed departs from the plan by more than REPLAN_FACTOR, re-plans the phases not
yet begun with the same rules (:func:`replan`): a busy minute during the measurement no longer fixes the
growth of a machine many times slower.
"""
from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import asdict, dataclass, field

import torch

from ..checkpoint import save_checkpoint
from ..config import ConfigError, TrainConfig, parse_duration
from ..data.base import ImageSet
from ..presets import BUDGET_PRESETS, WIDTH_OPTIONS, scaled_cpu_small
from ..schedule import batch_for, fade_kimg, levels, phase_for_level, stabilise_kimg
from ..util.device import synchronize
from ..util.dist import DistInfo, all_max
from ..util.grids import make_grid, save_png
from ..util.timing import timeit
from .trainer import Trainer, grid_latents

END_RESERVE = 0.015       # of the budget: what timing noise may add over the run
PHASE_KIMG_CAP = 10.0     # earlier phases longer than this give the top phase more time instead ...
TOP_SHARE_MAX = 0.85      # ... up to this share of the training time (docs/budget.md has the measurements)
MIN_PHASE_KIMG = 0.5      # shorter fades and stabilise phases are not worth growing for
WIDTH_SCALES = (1, 2, 4, 8)   # budget_network auto: cpu-small's feature maps times these ...
TOP_KIMG_WANTED = 150.0   # ... the widest that still stabilises the top resolution this long (docs/budget.md)
REPLAN_FACTOR = 2.0       # a tick this many times slower or faster than planned re-plans the phases not yet begun


@dataclass
class Costs:
    """Measured seconds: per kimg at each level, and per grid / checkpoint / metrics evaluation."""
    stabilise: dict            # {res: s per kimg}
    fade: dict                 # {res: s per kimg} (levels above the first)
    grid: float = 0.0
    checkpoint: float = 0.0
    metrics: float = 0.0


@dataclass
class Plan:
    stabilise_kimg: dict       # {res: kimg}, the top resolution's included
    fade_kimg: dict            # {res: kimg to fade it in}
    total_kimg: float
    seconds: float             # planned training time, extras included

    def lines(self, costs: Costs) -> list[str]:
        out = [f"{'phase':<16}{'kimg':>9}{'s/kimg':>9}{'minutes':>9}"]
        for res in sorted(self.stabilise_kimg):
            if res in self.fade_kimg:
                k = self.fade_kimg[res]
                out.append(f"{'fade ' + str(res):<16}{k:>9.1f}{costs.fade[res]:>9.2f}{k * costs.fade[res] / 60:>9.1f}")
            k = self.stabilise_kimg[res]
            out.append(f"{'stabilise ' + str(res):<16}{k:>9.1f}{costs.stabilise[res]:>9.2f}"
                       f"{k * costs.stabilise[res] / 60:>9.1f}")
        out.append(f"{'total':<16}{self.total_kimg:>9.1f}{'':>9}{self.seconds / 60:>9.1f}")
        return out


def plan_schedule(seconds: float, costs: Costs, levels: list[int], cfg: TrainConfig) -> Plan:
    """Divide ``seconds`` between the phases of growing through ``levels`` (resolutions, smallest
    first); the extras (grids, checkpoints, metrics every so many kimg, and one of each at the end) are
    paid from the same time. Raises ConfigError when the time cannot even grow to the top level."""
    extra = _extra_per_kimg(costs, cfg)
    train_s = seconds - end_seconds(costs, cfg)
    top = levels[-1]
    lower = [costs.stabilise[r] + extra for r in levels[:-1]] + [costs.fade[r] + extra for r in levels[1:]]
    k = _lower_kimg(train_s, lower, cfg.budget_top_share)
    if k < MIN_PHASE_KIMG and lower:
        need = MIN_PHASE_KIMG * sum(lower) / (1.0 - cfg.budget_top_share) + end_seconds(costs, cfg)
        raise ConfigError(f"budget: {seconds / 60:.1f} minutes left after set-up is too short to grow to "
                          f"{top}x{top} on this machine (at least {need / 60:.1f} minutes); raise --budget, "
                          f"lower --resolution or use a smaller network")
    top_kimg = (train_s - k * sum(lower)) / (costs.stabilise[top] + extra)
    stabilise = {r: k for r in levels[:-1]} | {top: top_kimg}
    fade = {r: k for r in levels[1:]}
    total = sum(stabilise.values()) + sum(fade.values())
    return Plan(stabilise, fade, total, seconds)


def _extra_per_kimg(costs: Costs, cfg: TrainConfig) -> float:
    """Seconds per kimg of the grids, checkpoints and metrics written every so many kimg."""
    return sum(c / every for c, every in ((costs.grid, cfg.image_kimg), (costs.checkpoint, cfg.checkpoint_kimg),
                                          (costs.metrics, cfg.metrics_kimg)) if every > 0)


def end_seconds(costs: Costs, cfg: TrainConfig) -> float:
    """Seconds the last grid, checkpoint and metrics take after the last step."""
    return costs.grid + costs.checkpoint + (costs.metrics if cfg.metrics.strip() else 0.0)


def _lower_kimg(train_s: float, lower: list[float], top_share: float) -> float:
    """The kimg of each earlier phase (``lower``: their seconds per kimg) when ``train_s`` seconds are
    left for them and the top phase: the top gets ``top_share`` of the time, more when that would leave
    every earlier phase over PHASE_KIMG_CAP kimg (up to TOP_SHARE_MAX of it)."""
    if not lower:
        return 0.0
    k = (1.0 - top_share) * train_s / sum(lower)
    if k > PHASE_KIMG_CAP:       # enough to grow through a level: the rest makes the images better
        k = max(PHASE_KIMG_CAP, (1.0 - TOP_SHARE_MAX) * train_s / sum(lower))
    return k


def measure_costs(cfg: TrainConfig, images: ImageSet, device: torch.device, levels: list[int],
                  info: DistInfo = DistInfo(), seconds: float = 1.5) -> Costs:
    """Time this machine's training steps at every level and phase, and the extras. Every rank
    measures its own device with a throwaway single-process Trainer (on its share of the minibatch);
    the ranks then agree on the slowest."""
    probe_cfg = copy.deepcopy(cfg)
    probe_cfg.sched.auto_batch = False
    trainer = Trainer(probe_cfg, images, device)
    costs = Costs({}, {})
    for res in levels:
        batch = batch_for(res, cfg.sched, info.world) // info.world
        for alpha, table in ((1.0, costs.stabilise), (0.5, costs.fade)):
            if alpha < 1.0 and res == levels[0]:
                continue
            ph = phase_for_level(res, alpha, batch, cfg.sched, cfg.net.resolution)
            dt, _ = timeit(lambda: _step(trainer, ph), seconds, min_iters=2)
            table[res] = dt / (batch * info.world) * 1000.0          # seconds per kimg of the whole group
    z, labels = grid_latents(cfg, trainer.classes)
    with tempfile.TemporaryDirectory() as tmp:
        costs.grid = timeit(lambda: save_png(f"{tmp}/g.png", make_grid(trainer.sample(z, labels), cfg.grid_size)),
                            0.2, min_iters=1, warmup=0)[0]
        costs.checkpoint = timeit(lambda: save_checkpoint(f"{tmp}/c.pt", trainer.state_dict()), 0.2,
                                  min_iters=1, warmup=0)[0]
    if cfg.metrics.strip():
        from .metric_tracker import TrainingMetrics
        trainer.cur_nimg = 10 ** 12                                    # the top level, where it costs the most
        costs.metrics = timeit(lambda: TrainingMetrics(trainer).run(None, 0.0, lambda m: None), 0, min_iters=1,
                               warmup=0)[0]
    if info.enabled:
        flat = torch.tensor([*costs.stabilise.values(), *costs.fade.values(), costs.grid, costs.checkpoint,
                             costs.metrics], dtype=torch.float64, device=device)
        flat = all_max(flat).cpu().tolist()
        n, m = len(costs.stabilise), len(costs.fade)
        costs = Costs(dict(zip(costs.stabilise, flat[:n])), dict(zip(costs.fade, flat[n:n + m])), *flat[n + m:])
    return costs


def _step(trainer: Trainer, ph) -> None:
    trainer.step(ph)
    synchronize(trainer.device)


def budget_seconds(cfg: TrainConfig) -> float:
    """The seconds a budgeted run plans for: its budget less a reserve for timing noise."""
    return parse_duration(cfg.budget) * (1.0 - END_RESERVE)


@dataclass(frozen=True)
class BudgetPlan:
    """What ``--budget`` chose, as the run's spec saves it."""
    budget: str                       # as given: 25m, 2h
    seconds: float                    # what it plans for (the budget less END_RESERVE)
    setup_s: float                    # spent before the plan was made (start-up, data, measurement)
    sizes_network: bool               # True: the budget chose the widths (no network option was given)
    width_scale: int                  # cpu-small's maps times this (0 where the network was given)
    clusters: int                     # the clusters it conditions on (0: none)
    lr_rampdown: float
    stabilise_kimg: dict              # {res: kimg}, the top resolution's included
    fade_kimg: dict                   # {res: kimg}
    total_kimg: float
    costs: Costs = field(default_factory=lambda: Costs({}, {}))   # the seconds it planned from

    @property
    def end_s(self) -> float:
        """Seconds after the last step: the last grid, checkpoint and metrics."""
        return self.costs.grid + self.costs.checkpoint + self.costs.metrics

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BudgetPlan:
        c = d["costs"]
        costs = Costs(_res_keys(c["stabilise"]), _res_keys(c["fade"]), c["grid"], c["checkpoint"], c["metrics"])
        return cls(**{**d, "stabilise_kimg": _res_keys(d["stabilise_kimg"]), "fade_kimg": _res_keys(d["fade_kimg"]),
                      "costs": costs})


def _res_keys(d: dict) -> dict:
    return {int(k): v for k, v in d.items()}


def budget_family(cfg: TrainConfig, given=frozenset()) -> bool:
    """The explicit rule: a --budget run chooses its network's widths (``budget_network`` auto) and
    conditions on clusters only where its network is the budget's own, cpu-small's family: a preset of
    BUDGET_PRESETS, no network width option given (``given``: the options the user set) and no --init."""
    return (bool(cfg.budget) and cfg.preset in BUDGET_PRESETS and not cfg.init
            and not any(k == o or k.startswith(o + ".") for k in given for o in WIDTH_OPTIONS))


def plan_budget(cfg: TrainConfig, images: ImageSet, device: torch.device, info: DistInfo, started: float,
                sizes_network: bool, clusters: int = 0, log=print) -> tuple[TrainConfig, BudgetPlan]:
    """(the config with its schedule, and where ``sizes_network`` its network, planned to end ``cfg.budget``
    after ``started``, a time.time(); the plan)."""
    res, levels = cfg.net.resolution, []
    r = cfg.sched.start_resolution if cfg.sched.growing else res
    while r <= res:
        levels.append(r)
        r *= 2
    cfg, costs, plan, scale = choose_network(cfg, images, device, info, levels,
                                             lambda: _time_left(cfg, started, info, device), sizes_network, log)
    cfg = copy.deepcopy(cfg)
    if cfg.sched.growing:
        cfg.sched.stabilise_kimg_table = {r: _round(k) for r, k in plan.stabilise_kimg.items() if r < res}
        cfg.sched.fade_kimg_table = {r: _round(k) for r, k in plan.fade_kimg.items()}
    cfg.sched.total_kimg = _round(plan.total_kimg)
    if not cfg.sched.lr_rampdown:          # a run that knows its end lands its G there (docs/budget.md)
        cfg.sched.lr_rampdown = cfg.budget_lr_rampdown
    ramp = (f"; learning rates ramp down to 0 over the last {cfg.sched.lr_rampdown:.0%} of it"
            if cfg.sched.lr_rampdown else "")
    setup_s = time.time() - started
    log(f"budget {cfg.budget}: {setup_s:.0f} s of set-up and measurement; the plan "
        f"(each earlier phase {plan.fade_kimg.get(res, 0):.1f} kimg, the rest stabilising {res}x{res}{ramp}):")
    for line in plan.lines(costs):
        log("  " + line)
    if not cfg.metrics.strip():
        costs = Costs(costs.stabilise, costs.fade, costs.grid, costs.checkpoint, 0.0)
    return cfg, BudgetPlan(cfg.budget, budget_seconds(cfg), setup_s, sizes_network, scale, clusters,
                           cfg.sched.lr_rampdown, {r: _round(k) for r, k in plan.stabilise_kimg.items()},
                           dict(cfg.sched.fade_kimg_table), cfg.sched.total_kimg, costs)


def choose_network(cfg: TrainConfig, images: ImageSet, device: torch.device, info: DistInfo, levels: list[int],
                   time_left, sizes_network: bool, log=print) -> tuple[TrainConfig, Costs, Plan, int]:
    """The widest of cpu-small's network scaled by WIDTH_SCALES that still stabilises its top resolution
    for TOP_KIMG_WANTED kimg in the time left (the smallest when none does), with its costs, plan and
    scale; ``cfg`` as it is (scale 0) unless ``sizes_network``. Scales are measured smallest first, and
    the next only while this one's plan leaves room for a network at least twice as slow (each doubling
    of the maps costs 1.8-3x the time per image on a CPU)."""
    top = levels[-1]
    if not sizes_network:
        costs = measure_costs(cfg, images, device, levels, info)
        return cfg, costs, plan_schedule(time_left(), costs, levels, cfg), 0
    chosen, seen = None, []
    for scale in WIDTH_SCALES:
        net = scaled_cpu_small(cfg.net, scale)
        cand = cfg.replace(net=net)
        costs = measure_costs(cand, images, device, levels, info)
        try:
            plan = plan_schedule(time_left(), costs, levels, cand)
        except ConfigError:
            if chosen is None:
                raise
            break
        top_kimg = plan.stabilise_kimg[top]
        seen.append(f"x{scale} ({'/'.join(str(net.width(r)) for r in levels)} maps, latent {net.z_dim}): "
                    f"{top_kimg:.0f} kimg at {top}x{top}")
        if chosen is not None and top_kimg < TOP_KIMG_WANTED:
            break
        chosen = (cand, costs, scale)
        if top_kimg < 2 * TOP_KIMG_WANTED:
            break
    cand, costs, scale = chosen
    log(f"budget_network auto: {'; '.join(seen)}; chose x{scale}, the widest that trains its top resolution "
        f"{TOP_KIMG_WANTED:.0f} kimg or more (the smallest when none does)")
    return cand, costs, plan_schedule(time_left(), costs, levels, cand), scale


IMAGES_PER_CLUSTER = 100       # a budgeted run's clusters hold this many images or more on average


def clusters_for_budget(cfg: TrainConfig, n_images: int, given=frozenset()) -> int:
    """How many clusters of its images a new --budget run would condition on where nothing else decides
    its labels (training/labels.py): up to ``budget_clusters``, at most one per IMAGES_PER_CLUSTER
    images, on the budget's own network (:func:`budget_family`); 0 = none."""
    if not budget_family(cfg, given):
        return 0
    k = min(cfg.budget_clusters, n_images // IMAGES_PER_CLUSTER)
    return k if k >= 2 else 0


def _time_left(cfg: TrainConfig, started: float, info: DistInfo, device: torch.device) -> float:
    """Seconds of the budget left; in a multi-process run the least of any rank, so that all plan alike."""
    left = budget_seconds(cfg) - (time.time() - started)
    if info.enabled:
        left = -float(all_max(torch.tensor([-left], dtype=torch.float64, device=device)))
    return left


class EndPace:
    """Where a budgeted run's last phase must end (in images) to meet its deadline, at the speed measured
    since the phase began. Asked after every step, so the run ends at the first step past the deadline
    however the speed changes (another job starting on the machine); the speed only places the end
    shown by the progress bar and saved with a checkpoint."""

    def __init__(self, deadline: float):
        self.deadline = deadline
        self.start: tuple[float, int] | None = None

    def end_nimg(self, cur_nimg: int, now: float) -> int | None:
        """The images at which to end; None at the phase's first step (no speed yet)."""
        if self.start is None:
            self.start = (now, cur_nimg)
            return None
        t0, n0 = self.start
        rate = (cur_nimg - n0) / max(now - t0, 1e-9)
        return cur_nimg + max(0, int((self.deadline - now) * rate))   # past the deadline: end now


def _round(kimg: float) -> float:
    """Down to 0.001 kimg (one image): the saved plan then reads back exactly."""
    return math.floor(kimg * 1000.0) / 1000.0



@dataclass(frozen=True)
class Replan:
    """A re-plan of a budgeted run's phases not yet begun, after a tick's speed departed from the plan."""
    kimg: float                       # where it was made
    phase: str                        # the phase measured: 'fade 16', 'stabilise 8'
    planned: float                    # its seconds per kimg in the plan
    measured: float                   # and in the tick
    schedule: dict                    # the new stabilise_kimg_table, fade_kimg_table and total_kimg
    costs: Costs                      # the plan's costs times measured / planned

    def line(self) -> str:
        s = self.schedule
        later = sorted(set(s["fade_kimg_table"]) | set(s["stabilise_kimg_table"]))
        return (f"budget: re-planned at kimg {self.kimg:.1f}: {self.phase} trains at {self.measured:.2f} s/kimg, "
                f"the plan said {self.planned:.2f} ({self.measured / self.planned:.2f}x); phases not yet begun: "
                + ", ".join(f"{r}: fade {s['fade_kimg_table'].get(r, 0):.1f} stabilise "
                            f"{s['stabilise_kimg_table'].get(r, 0):.1f}" for r in later)
                + f"; total {s['total_kimg']:.1f} kimg")


def replan(cfg: TrainConfig, sched, costs: Costs, cur_kimg: float, res: int, fading: bool, measured: float,
           seconds_left: float) -> Replan | None:
    """Where ``measured`` (a tick's seconds per kimg, all in one phase: ``res``, ``fading``) departs from the
    plan's cost of that phase by more than REPLAN_FACTOR either way: every cost scaled by the same ratio,
    and the phases after the current one planned again by :func:`plan_schedule`'s rules in the
    ``seconds_left`` (the current one keeps its length, so the schedule never steps back). None otherwise,
    and in the top resolution's stabilise phase, whose end :class:`EndPace` moves."""
    planned = (costs.fade if fading else costs.stabilise).get(res)
    top = cfg.net.resolution
    if not planned or measured <= 0 or (res == top and not fading) or not cfg.sched.growing:
        return None
    ratio = measured / planned
    if 1.0 / REPLAN_FACTOR <= ratio <= REPLAN_FACTOR:
        return None
    scaled = Costs({r: c * ratio for r, c in costs.stabilise.items()}, {r: c * ratio for r, c in costs.fade.items()},
                   costs.grid * ratio, costs.checkpoint * ratio, costs.metrics * ratio)
    phases = []                                    # (res, fading) in the order trained, the top's stabilise last
    for r in levels(sched.start_resolution, top):
        phases += ([(r, True)] if r > sched.start_resolution else []) + [(r, False)]
    now = phases.index((res, fading))
    extra = _extra_per_kimg(scaled, cfg)
    end_kimg = sum(_kimg(sched, p) for p in phases[:now + 1])
    train_s = seconds_left - end_seconds(scaled, cfg) - max(end_kimg - cur_kimg, 0.0) * (measured + extra)
    later = phases[now + 1:-1]
    lower = [(scaled.fade if f else scaled.stabilise)[r] + extra for r, f in later]
    k = max(_lower_kimg(train_s, lower, cfg.budget_top_share), MIN_PHASE_KIMG)
    top_kimg = max((train_s - k * sum(lower)) / (scaled.stabilise[top] + extra), MIN_PHASE_KIMG)
    stab, fade = dict(sched.stabilise_kimg_table), dict(sched.fade_kimg_table)
    for r, f in later:
        (fade if f else stab)[r] = _round(k)
    total = _round(end_kimg + len(later) * _round(k) + top_kimg)
    new = {"stabilise_kimg_table": stab, "fade_kimg_table": fade, "total_kimg": total}
    return Replan(cur_kimg, f"{'fade' if fading else 'stabilise'} {res}", planned, measured, new, scaled)


def _kimg(sched, phase: tuple[int, bool]) -> float:
    r, fading = phase
    return fade_kimg(r, sched) if fading else stabilise_kimg(r, sched)
