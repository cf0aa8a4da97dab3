"""--budget: the planner (a fake timer, no training), the schedule it writes, and a resumed plan."""
import dataclasses

import pytest

from pggan.config import ConfigError, parse_duration, validate
from pggan.presets import get_preset
from pggan.schedule import growth_kimg, lod_at, phase_at
from pggan.training.budget import PHASE_KIMG_CAP, TOP_SHARE_MAX, Costs, plan_schedule

LEVELS = [4, 8, 16, 32]


def costs(**extra) -> Costs:
    return Costs(stabilise={4: 0.5, 8: 2.0, 16: 4.0, 32: 6.0}, fade={8: 2.2, 16: 4.4, 32: 6.6}, **extra)


def planned_seconds(plan, c: Costs, cfg) -> float:
    """What the plan costs at the given rates, extras included (an independent sum)."""
    s = sum(k * c.stabilise[r] for r, k in plan.stabilise_kimg.items()) + sum(k * c.fade[r] for r, k in plan.fade_kimg.items())
    n = plan.total_kimg
    s += c.grid * (n / cfg.image_kimg + 1) + c.checkpoint * (n / cfg.checkpoint_kimg + 1)
    if cfg.metrics:
        s += c.metrics * ((n / cfg.metrics_kimg if cfg.metrics_kimg else 0) + 1)
    return s


@pytest.mark.parametrize("seconds", [600, 1500, 7200])
def test_the_plan_spends_the_budget_and_ends_stabilising_the_top_level(seconds):
    cfg = get_preset("cpu-small")
    c = costs(grid=0.3, checkpoint=0.5)
    plan = plan_schedule(seconds, c, LEVELS, cfg)
    assert planned_seconds(plan, c, cfg) == pytest.approx(seconds, rel=1e-9)
    lower = [plan.stabilise_kimg[r] for r in LEVELS[:-1]] + [plan.fade_kimg[r] for r in LEVELS[1:]]
    assert max(lower) == pytest.approx(min(lower))                        # the paper: equal images per phase
    extra_per_kimg = 0.3 / cfg.image_kimg + 0.5 / cfg.checkpoint_kimg    # grids and checkpoints along the way
    train_s = seconds - 0.3 - 0.5                                        # less the final grid + checkpoint
    lower_s = sum(c.stabilise[r] + extra_per_kimg for r in LEVELS[:-1]) + sum(c.fade[r] + extra_per_kimg for r in LEVELS[1:])
    k = (1 - cfg.budget_top_share) * train_s / lower_s                   # the least share for the top phase ...
    if k > PHASE_KIMG_CAP:                                               # ... more while earlier phases exceed the cap
        k = max(PHASE_KIMG_CAP, (1 - TOP_SHARE_MAX) * train_s / lower_s)
    assert lower[0] == pytest.approx(k, rel=1e-9)
    top_s = plan.stabilise_kimg[32] * (c.stabilise[32] + extra_per_kimg)
    assert top_s == pytest.approx(train_s - k * lower_s, rel=1e-9)
    assert plan.stabilise_kimg[32] * c.stabilise[32] > 0.5 * seconds        # most of the time at the top level
    assert plan.total_kimg == pytest.approx(sum(lower) + plan.stabilise_kimg[32])


def test_the_top_share_grows_from_its_least_to_its_most_with_the_budget():
    cfg = get_preset("cpu-small")

    def top_share(seconds):
        plan = plan_schedule(seconds, costs(), LEVELS, cfg)
        return plan.stabilise_kimg[32] * costs().stabilise[32] / seconds, plan.fade_kimg[8]

    assert top_share(300) == pytest.approx((cfg.budget_top_share, 300 * 0.4 / 19.7))   # short: earlier phases < cap
    share, k = top_share(600)
    assert k == PHASE_KIMG_CAP and cfg.budget_top_share < share < TOP_SHARE_MAX           # the cap binds
    share, k = top_share(7200)
    assert share == pytest.approx(TOP_SHARE_MAX) and k > PHASE_KIMG_CAP                   # long: the most share


def test_metrics_are_paid_from_the_budget():
    cfg = get_preset("cpu-small")
    cfg.metrics, cfg.metrics_kimg = "swd", 10.0
    c = costs(metrics=5.0)
    plan = plan_schedule(1500, c, LEVELS, cfg)
    assert planned_seconds(plan, c, cfg) == pytest.approx(1500, rel=1e-9)
    assert plan.total_kimg < plan_schedule(1500, costs(), LEVELS, cfg).total_kimg


def test_a_budget_too_short_to_grow_is_refused_with_the_minimum():
    with pytest.raises(ConfigError, match="too short to grow to 32x32.*at least"):
        plan_schedule(5, costs(), LEVELS, get_preset("cpu-small"))


def test_without_growing_the_whole_budget_trains_the_top_level():
    cfg = get_preset("cpu-small")
    plan = plan_schedule(600, costs(), [32], cfg)
    assert plan.fade_kimg == {} and plan.total_kimg == pytest.approx(100.0)


def test_the_planned_schedule_is_a_pure_function_of_kimg_and_ends_stabilised():
    cfg = get_preset("cpu-small")
    plan = plan_schedule(1500, costs(), LEVELS, cfg)
    s = cfg.sched
    s.stabilise_kimg_table = {r: k for r, k in plan.stabilise_kimg.items() if r < 32}
    s.fade_kimg_table = dict(plan.fade_kimg)
    s.total_kimg = plan.total_kimg
    validate(cfg)
    k = plan.fade_kimg[8]
    assert lod_at(0.5 * k, s, 32) == 3.0                                   # stabilising 4x4
    assert lod_at(1.5 * k, s, 32) == pytest.approx(2.5)                   # half-way through the fade to 8x8
    assert lod_at(2.5 * k, s, 32) == 2.0
    assert lod_at(growth_kimg(s, 32) - 1e-6, s, 32) > 0 and lod_at(growth_kimg(s, 32), s, 32) == 0.0
    assert growth_kimg(s, 32) == pytest.approx(6 * k)
    end = phase_at(int(s.total_kimg * 1000) - 1, s, 32)
    assert end.resolution == 32 and end.alpha == 1.0                      # the run ends stabilised at the top


def test_per_level_tables_equal_to_the_uniform_values_give_the_reference_schedule():
    cfg = get_preset("cpu-small")
    s = cfg.sched
    ref = [lod_at(k / 7, s, 32) for k in range(0, 7 * 80)]
    s.stabilise_kimg_table = {4: 10.0, 8: 10.0, 16: 10.0}
    s.fade_kimg_table = {8: 10.0, 16: 10.0, 32: 10.0}
    assert [lod_at(k / 7, s, 32) for k in range(0, 7 * 80)] == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("text,seconds", [("25m", 1500), ("2h", 7200), ("3d", 259200), ("90s", 90), (" 1.5h ", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["25", "m", "-3m", "2w", "1e400h", ""])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


def test_a_budgeted_run_moves_its_end_to_meet_the_deadline():
    """In the last phase the end follows the measured speed: later when faster, now when past the deadline.
    The end is the trainer's schedule (run state, saved with checkpoints); the config is never changed."""
    import copy
    from types import SimpleNamespace

    from pggan.schedule import Phase
    from pggan.training.budget import EndPace
    from pggan.training.run import Run
    from pggan.training.trainer import Step, Trainer
    from pggan.util.dist import DistInfo

    cfg = get_preset("cpu-small")
    cfg.sched.total_kimg = 60.0
    trainer = SimpleNamespace(cur_nimg=60_000, schedule=copy.deepcopy(cfg.sched))
    trainer.set_schedule = lambda **kw: Trainer.set_schedule(trainer, **kw)
    run = SimpleNamespace(cfg=cfg, trainer=trainer, pace=EndPace(1000.0), pace_steps=0, bar=None, info=DistInfo())
    top = Step(Phase(kimg=60.0, lod=0.0, res_log2=5, alpha=1.0, batch=16, g_lr=1e-3, d_lr=1e-3), {})
    fade = Step(Phase(kimg=50.0, lod=0.5, res_log2=5, alpha=0.5, batch=16, g_lr=1e-3, d_lr=1e-3), {})
    Run.end_on_time(run, fade, 500.0)
    assert run.pace.start is None and trainer.schedule.total_kimg == 60.0     # not before the last phase
    Run.end_on_time(run, top, 500.0)
    assert run.pace.start == (500.0, 60_000) and trainer.schedule.total_kimg == 60.0
    run.trainer.cur_nimg = 61_000                                              # 1,000 images in 10 s: 100 img/s
    Run.end_on_time(run, top, 510.0)
    assert trainer.schedule.total_kimg == pytest.approx(61.0 + 490 * 100 / 1000)
    run.trainer.cur_nimg = 70_000
    Run.end_on_time(run, top, 1001.0)
    assert trainer.schedule.total_kimg == 70.0                                 # past the deadline: the run ends
    assert cfg.sched.total_kimg == 60.0                                        # the config is as planned


def test_the_end_follows_a_slowdown_near_the_deadline():
    """A machine that slows to a quarter of its speed late in the phase (another job started): asked
    after every step, the run still ends within a step of the deadline; had the end been moved only
    every 2 kimg (at ticks, as before) it would end some 40 s late."""
    from pggan.training.budget import EndPace

    def simulate(every):
        pace, now, nimg, end = EndPace(deadline=1000.0), 0.0, 0, None
        while end is None or nimg < end:
            now += 0.16 if now < 800.0 else 0.64                 # 16 images a step: 100 img/s, then 25
            nimg += 16
            if nimg % every == 0:
                end = pace.end_nimg(nimg, now) or end
        return now

    assert 1000.0 <= simulate(every=16) <= 1000.64
    assert simulate(every=2000) > 1030.0


def test_cpu_small_scales_its_maps_and_latent_and_keeps_hand_chosen_networks():
    from pggan.presets import scaled_cpu_small

    net = get_preset("cpu-small").net
    assert scaled_cpu_small(net, 1) == net
    x2 = scaled_cpu_small(net, 2)
    assert x2.widths == {4: 128, 8: 128, 16: 64, 32: 32} and x2.z_dim == 128
    assert [scaled_cpu_small(net, 8).width(r) for r in LEVELS] == [512, 512, 256, 128]   # at most the paper's 512
    assert scaled_cpu_small(net, 8).z_dim == 512
    x2_64 = scaled_cpu_small(dataclasses.replace(net, resolution=64, channels=1, label_size=5), 2)
    assert x2_64.widths[64] == 32 and (x2_64.channels, x2_64.label_size) == (1, 5)    # its other options kept


def test_the_budget_sizes_the_network_by_an_explicit_rule():
    """budget_family: the budget's presets, no width option given, no --init; values are not compared."""
    from pggan.training.budget import budget_family

    cfg = get_preset("cpu-small").replace(budget="25m")
    assert budget_family(cfg) and budget_family(cfg, {"net.resolution", "data", "sched.lr_base"})
    assert budget_family(get_preset("demo").replace(budget="4m"))
    for given in ({"net.fmap_max"}, {"net.widths"}, {"net.latent_size"}, {"net.fmap_base"}):
        assert not budget_family(cfg, given)
    assert not budget_family(cfg.replace(budget=""))
    assert not budget_family(cfg.replace(init="/a/checkpoint.pt"))
    assert not budget_family(get_preset("celebahq-1024").replace(budget="2h"))
    # a network given with cpu-small's very values is still the user's
    assert not budget_family(cfg, {"net.fmap_max"}) and cfg.net.fmap_max == get_preset("cpu-small").net.fmap_max


@pytest.mark.parametrize("seconds, chosen, measured", [(400, 1, [1]), (3000, 1, [1, 2]), (9000, 2, [1, 2, 4]),
                                                       (20000, 4, [1, 2, 4, 8]), (60000, 8, [1, 2, 4, 8])])
def test_budget_network_auto_picks_the_widest_that_stabilises_long_enough(monkeypatch, seconds, chosen, measured):
    """Each doubling of the maps triples the step time (fake costs): the widest scale whose plan still
    gives the top resolution TOP_KIMG_WANTED kimg wins, and no scale is measured that could not."""
    from pggan.training import budget

    cfg = get_preset("cpu-small")
    cfg.budget = "1h"
    calls = []

    def fake_measure(cand, images, device, levels, info):
        scale = cand.net.z_dim // 64
        calls.append(scale)
        f = 3.0 ** (scale.bit_length() - 1)
        c = costs()
        return Costs({r: v * f for r, v in c.stabilise.items()}, {r: v * f for r, v in c.fade.items()})

    monkeypatch.setattr(budget, "measure_costs", fake_measure)
    lines = []
    out, c, plan, scale = budget.choose_network(cfg, None, None, None, LEVELS, lambda: seconds, True, lines.append)
    assert calls == measured and out.net.z_dim == 64 * chosen and scale == chosen
    assert plan == plan_schedule(seconds, c, LEVELS, out)
    def top_kimg(scale):
        try:
            c = fake_measure(cfg.replace(net=budget.scaled_cpu_small(cfg.net, scale)), *[None] * 4)
            return plan_schedule(seconds, c, LEVELS, cfg).stabilise_kimg[32]
        except ConfigError:
            return 0.0

    wide_enough = [s for s in (1, 2, 4, 8) if top_kimg(s) >= budget.TOP_KIMG_WANTED]
    assert chosen == max(wide_enough, default=1)
    assert f"chose x{chosen}" in lines[0]
    calls.clear()
    kept = budget.choose_network(cfg, None, None, None, LEVELS, lambda: seconds, False)
    assert kept[0].net == cfg.net and kept[3] == 0 and calls == [1]


@pytest.mark.parametrize("user_ramp, budget_ramp, expected", [(0.0, 0.25, 0.25), (0.1, 0.25, 0.1), (0.0, 0.0, 0.0)])
def test_a_budgeted_run_ramps_its_learning_rates_down_unless_told_otherwise(monkeypatch, user_ramp, budget_ramp,
                                                                              expected):
    """--budget sets sched.lr_rampdown from budget_lr_rampdown when the user set none, into the saved
    plan, so that the learning rates reach 0 at the planned end; a user's own ramp, or 0, is kept."""
    import time

    from pggan.training import budget
    from pggan.util.dist import DistInfo

    cfg = get_preset("cpu-small").replace(budget="25m", budget_network="fixed", budget_lr_rampdown=budget_ramp)
    cfg.sched.lr_rampdown = user_ramp
    monkeypatch.setattr(budget, "measure_costs", lambda *a, **k: costs())
    lines = []
    out, plan = budget.plan_budget(validate(cfg), None, None, DistInfo(), time.time(), False, log=lines.append)
    assert out.sched.lr_rampdown == plan.lr_rampdown == expected
    (plan_line,) = [line for line in lines if line.startswith("budget 25m")]
    assert ("ramp down to 0 over the last 25%" in plan_line) == (expected == 0.25)
    total, res = out.sched.total_kimg, out.net.resolution
    lr = out.sched.lr_base
    assert phase_at(int(total * 1000 * (1 - expected)) - 1000, out.sched, res).g_lr == pytest.approx(lr)
    assert phase_at(int(total * 1000), out.sched, res).g_lr == pytest.approx(lr if expected == 0 else 0.0)
    if expected:
        half_way = int(total * 1000 * (1 - expected / 2))
        assert phase_at(half_way, out.sched, res).d_lr == pytest.approx(lr / 2, rel=1e-3)
