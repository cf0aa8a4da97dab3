"""The growing schedule: a pure function of the number of real images shown (spec "Schedule")."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .config import ConfigError, NetworkConfig, ScheduleConfig


@dataclass(frozen=True)
class Phase:
    kimg: float
    lod: float          # 0 = full resolution; fractional during a fade
    res_log2: int       # resolution the networks run at (the new one during a fade)
    alpha: float        # weight of the new layers, 1 outside a fade
    batch: int          # global minibatch
    g_lr: float
    d_lr: float

    @property
    def resolution(self) -> int:
        return 2 ** self.res_log2

    @property
    def fading(self) -> bool:
        return self.alpha < 1.0


PAPER_BATCH = {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 16, 256: 14, 512: 6, 1024: 3}
# The authors' v2 presets (preset-v2-1gpu ... -8gpus), by GPU count: the global minibatch per resolution,
# the minibatch above that table, and the learning rates per resolution (0.001 elsewhere).
V2_PRESETS = {
    1: ({4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}, 4, {1024: 0.0015}),
    2: ({4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}, 8, {512: 0.0015, 1024: 0.002}),
    4: ({4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16}, 16, {256: 0.0015, 512: 0.002, 1024: 0.003}),
    8: ({4: 512, 8: 256, 16: 128, 32: 64, 64: 32}, 32, {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003}),
}
V2_BATCH, V2_LR = V2_PRESETS[1][0], V2_PRESETS[1][2]


def levels(start: int, resolution: int) -> list[int]:
    """The resolutions from ``start`` to ``resolution``, powers of two: [4, 8, ..., resolution]."""
    return [2 ** k for k in range(int(math.log2(start)), int(math.log2(resolution)) + 1)]


def v2_batch(res: int, gpus: int = 1) -> int:
    """The global minibatch at ``res`` of the authors' v2 preset for ``gpus`` GPUs."""
    table, base, _ = V2_PRESETS[gpus]
    return table.get(res, base)


def use_v2_batches(sched: ScheduleConfig, resolution: int, presets: dict | None = None) -> None:
    """The authors' v2 minibatches and learning rates, in place: at every resolution preset-v2-1gpu's,
    or those of the preset for ``presets[res]`` GPUs (auto_batch's choice, a larger batch that fits
    one GPU). The config's own learning rates win, but for preset-v2-1gpu's own (celebahq-1024-v2's),
    which a larger preset's replace."""
    presets = presets or {}
    sched.batch_table = {r: v2_batch(r, presets.get(r, 1)) for r in levels(4, resolution) if r <= 512 or r in presets}
    sched.batch_base = 4
    for r in levels(4, resolution):
        lr = V2_PRESETS[presets.get(r, 1)][2].get(r)
        for table in (sched.g_lr_table, sched.d_lr_table):
            if lr is not None and table.get(r, V2_LR.get(r)) == V2_LR.get(r):
                table[r] = lr


def lod_at(kimg: float, sched: ScheduleConfig, resolution: int) -> float:
    """The reference's level-of-detail formula, clipped at 0 (full resolution); with per-resolution
    phase lengths (``stabilise_kimg_table`` / ``fade_kimg_table``, as the budget planner writes) the same
    timeline with each phase's own length."""
    if not sched.growing:
        return 0.0
    if sched.stabilise_kimg_table or sched.fade_kimg_table:
        return _lod_by_level(kimg, sched, resolution)
    phase_dur = sched.lod_training_kimg + sched.lod_transition_kimg
    phase = math.floor(kimg / phase_dur)
    pk = kimg - phase * phase_dur
    lod = math.log2(resolution) - math.log2(sched.start_resolution) - phase
    if sched.lod_transition_kimg > 0:
        lod -= max(pk - sched.lod_training_kimg, 0.0) / sched.lod_transition_kimg
    return max(lod, 0.0)


def stabilise_kimg(res: int, sched: ScheduleConfig) -> float:
    return float(sched.stabilise_kimg_table.get(res, sched.lod_training_kimg))


def fade_kimg(res: int, sched: ScheduleConfig) -> float:
    """kimg to fade in resolution ``res`` (from res / 2)."""
    return float(sched.fade_kimg_table.get(res, sched.lod_transition_kimg))


def _lod_by_level(kimg: float, sched: ScheduleConfig, resolution: int) -> float:
    max_log2, start_log2 = int(math.log2(resolution)), int(math.log2(sched.start_resolution))
    t = 0.0
    for k in range(start_log2, max_log2 + 1):
        if k > start_log2:
            f = fade_kimg(2 ** k, sched)
            if kimg < t + f:                              # fading in 2**k: lod from max_log2 - k + 1 down
                return max_log2 - k + 1 - (kimg - t) / f
            t += f
        if k == max_log2:
            return 0.0
        t += stabilise_kimg(2 ** k, sched)
        if kimg < t:
            return float(max_log2 - k)
    return 0.0


def growth_kimg(sched: ScheduleConfig, resolution: int) -> float:
    """kimg at which the last fade ends (the top resolution's stabilise phase begins)."""
    if not sched.growing:
        return 0.0
    trained = levels(sched.start_resolution, resolution)
    return sum(stabilise_kimg(r, sched) for r in trained[:-1]) + sum(fade_kimg(r, sched) for r in trained[1:])


def phase_kimg(sched: ScheduleConfig, resolution: int) -> list[tuple[int, bool, float]]:
    """A whole run as its phases in order: (resolution, fading, kimg), summing to ``total_kimg`` (the
    top resolution stabilises for what the growth leaves; a run shorter than its growth ends early)."""
    trained = levels(sched.start_resolution if sched.growing else resolution, resolution)
    phases, left = [], float(sched.total_kimg)
    for i, res in enumerate(trained):
        parts = ([(True, fade_kimg(res, sched))] if i else []) + [(False, stabilise_kimg(res, sched))]
        if res == trained[-1]:
            parts[-1] = (False, left - sum(k for _, k in parts[:-1]))
        for fading, kimg in parts:
            kimg = min(kimg, left)
            if kimg > 0:
                phases.append((res, fading, kimg))
                left -= kimg
    return phases


def batch_for(res: int, sched: ScheduleConfig, num_devices: int = 1) -> int:
    """Global minibatch at ``res``: the table, rounded down to a multiple of the device count and, as
    the reference, capped at ``device_batch_cap * num_devices`` (unless ``accumulate``: then devices
    keep the whole batch and accumulate gradients over micro-batches of at most the cap)."""
    batch = int(sched.batch_table.get(res, sched.batch_base))
    batch = max(batch - batch % num_devices, num_devices)
    cap = sched.device_batch_cap.get(res)
    if cap is not None and not sched.accumulate:
        batch = min(batch, int(cap) * num_devices)
    return batch


def micro_batches(share: int, res: int, sched: ScheduleConfig, group: int = 0) -> tuple[tuple[int, int], ...]:
    """One device's ``share`` of the minibatch at ``res`` as (start, end) rows of gradient-accumulation
    rounds: one without a cap, else as few equal rounds as keep each under ``device_batch_cap`` and split
    into the minibatch stddev's groups of ``group``."""
    cap = sched.device_batch_cap.get(res)
    rounds = 1 if cap is None or share <= cap else -(-share // int(cap))
    while rounds > 1 and (share % rounds or not _fits_groups(share // rounds, group)):
        rounds += 1
    return tuple((i * share // rounds, (i + 1) * share // rounds) for i in range(rounds))


def _fits_groups(n: int, group: int) -> bool:
    """Whether D's minibatch stddev can group ``n`` images (a batch below the group size is one group)."""
    return not group or n <= group or n % group == 0


def check_batches(sched: ScheduleConfig, net: NetworkConfig, num_devices: int = 1) -> None:
    """Every level's batch on one device must split into the minibatch stddev's groups; else ConfigError,
    before anything is trained."""
    group = net.mbstd_group_size
    for res in levels(sched.start_resolution if sched.growing else net.resolution, net.resolution):
        batch = batch_for(res, sched, num_devices)
        n = max(hi - lo for lo, hi in micro_batches(batch // num_devices, res, sched, group))
        if not _fits_groups(n, group):
            per = f" ({n} per process)" if num_devices > 1 else ""
            raise ConfigError(f"the minibatch {batch}{per} at {res}x{res} does not split into the minibatch stddev's "
                              f"groups of {group}: give that level a multiple of {group * num_devices} "
                              f"(sched.batch_table), or change net.mbstd_group_size")


def lod_to_level(lod: float, max_log2: int) -> tuple[int, float]:
    """Split a real level of detail into (resolution log2, alpha); in a fade the new, larger resolution."""
    k = max_log2 - int(math.floor(lod))
    alpha = 1.0 - (lod - math.floor(lod))
    return k, alpha


def lr_scale(kimg: float, sched: ScheduleConfig) -> float:
    """The learning rates' multiplier: 1, falling linearly to 0 over the last ``lr_rampdown`` share of
    ``total_kimg`` (a budgeted run moves total_kimg in its last phase, and the ramp's end with it)."""
    span = sched.lr_rampdown * sched.total_kimg
    if span <= 0:
        return 1.0
    return min(1.0, max(0.0, (sched.total_kimg - kimg) / span))


def _phase(kimg: float, lod: float, res_log2: int, alpha: float, batch: int, sched: ScheduleConfig) -> Phase:
    res, scale = 2 ** res_log2, lr_scale(kimg, sched)
    return Phase(kimg=kimg, lod=lod, res_log2=res_log2, alpha=alpha, batch=batch,
                 g_lr=scale * float(sched.g_lr_table.get(res, sched.lr_base)),
                 d_lr=scale * float(sched.d_lr_table.get(res, sched.lr_base)))


def phase_at(cur_nimg: int, sched: ScheduleConfig, resolution: int, num_devices: int = 1) -> Phase:
    """The phase of a run with target ``resolution`` after ``cur_nimg`` real images."""
    kimg = cur_nimg / 1000.0
    lod = lod_at(kimg, sched, resolution)
    res_log2, alpha = lod_to_level(lod, int(math.log2(resolution)))
    return _phase(kimg, lod, res_log2, alpha, batch_for(2 ** res_log2, sched, num_devices), sched)


def phase_for_level(res: int, alpha: float, batch: int, sched: ScheduleConfig, resolution: int) -> Phase:
    """A phase at a chosen level, outside the schedule (benchmarks, memory probes): ``res`` with the new
    layers at weight ``alpha``, minibatch ``batch``, in a network of target ``resolution``."""
    res_log2 = int(math.log2(res))
    return _phase(0.0, math.log2(resolution) - res_log2 + (1.0 - alpha), res_log2, alpha, batch, sched)


def starts_new_phase(prev_lod: float, lod: float) -> bool:
    """True when a fade or a stabilise phase begins between two steps (the reference's Adam reset rule)."""
    return math.floor(prev_lod) != math.floor(lod) or math.ceil(prev_lod) != math.ceil(lod)
