import copy
import math

import pytest
import torch

from pggan.config import ScheduleConfig
from pggan.presets import get_preset
from pggan.schedule import PAPER_BATCH, lod_at, phase_at, phase_kimg, starts_new_phase


def paper(res, kimg=600.0):
    return ScheduleConfig(lod_training_kimg=kimg, lod_transition_kimg=kimg, batch_table=dict(PAPER_BATCH))


def spec_lod(kimg, train, trans, res, res0=4):
    """The spec's formula, written out independently."""
    phase = math.floor(kimg / (train + trans))
    pk = kimg - phase * (train + trans)
    return max(math.log2(res) - math.log2(res0) - phase - max(pk - train, 0) / trans, 0.0)


@pytest.mark.parametrize("res,kimg,lod,out_res,alpha,batch", [
    # 32x32 target, 600k + 600k
    (32, 0, 3.0, 4, 1.0, 16),
    (32, 599.999, 3.0, 4, 1.0, 16),
    (32, 600, 3.0, 4, 1.0, 16),          # the first fade starts exactly here
    (32, 900, 2.5, 8, 0.5, 16),
    (32, 1200, 2.0, 8, 1.0, 16),          # stabilise at 8
    (32, 3300, 0.5, 32, 0.5, 16),
    (32, 3600, 0.0, 32, 1.0, 16),
    (32, 10000, 0.0, 32, 1.0, 16),        # clipped at 0
    # 128x128
    (128, 1500, 4.0, 8, 1.0, 16),
    (128, 2100, 3.5, 16, 0.5, 16),
    (128, 6000, 0.0, 128, 1.0, 16),
    # 1024x1024, paper batches
    (1024, 0, 8.0, 4, 1.0, 16),
    (1024, 7200, 2.0, 256, 1.0, 14),
    (1024, 7800, 2.0, 256, 1.0, 14),
    (1024, 8100, 1.5, 512, 0.5, 6),
    (1024, 9300, 0.5, 1024, 0.5, 3),
    (1024, 9600, 0.0, 1024, 1.0, 3),
])
def test_schedule_values(res, kimg, lod, out_res, alpha, batch):
    ph = phase_at(int(round(kimg * 1000)), paper(res), res)
    assert math.isclose(ph.lod, lod, abs_tol=1e-6)
    assert math.isclose(ph.lod, spec_lod(kimg, 600, 600, res), abs_tol=1e-6)
    assert ph.resolution == out_res and math.isclose(ph.alpha, alpha, abs_tol=1e-6) and ph.batch == batch


def test_schedule_800k_phases_celebahq():
    cfg = get_preset("celebahq-1024").sched
    for kimg in (0, 799, 800, 1200, 1600, 2000, 12799, 12800, 13500, 15000):
        ph = phase_at(kimg * 1000, cfg, 1024)
        assert math.isclose(ph.lod, spec_lod(kimg, 800, 800, 1024), abs_tol=1e-9)
    assert phase_at(1200 * 1000, cfg, 1024).resolution == 8


def test_v2_table_and_lr_overrides():
    cfg = get_preset("celebahq-1024-v2").sched
    assert phase_at(0, cfg, 1024).batch == 128
    ph = phase_at(20000 * 1000, cfg, 1024)
    assert ph.resolution == 1024 and ph.batch == 4 and ph.g_lr == 0.0015 and ph.d_lr == 0.0015
    assert phase_at(0, cfg, 1024).g_lr == 0.001


def test_lr_rampdown_falls_linearly_to_zero_at_the_end():
    sched = ScheduleConfig(lod_training_kimg=10, lod_transition_kimg=10, total_kimg=100, lr_base=0.004,
                           d_lr_table={32: 0.002}, lr_rampdown=0.2)
    lrs = {k: phase_at(k * 1000, sched, 32) for k in (0, 50, 80, 85, 90, 99, 100, 120)}
    assert [lrs[k].g_lr for k in (0, 50, 80)] == [0.004] * 3          # constant before the last 20 kimg
    assert lrs[85].g_lr == pytest.approx(0.003) and lrs[90].g_lr == pytest.approx(0.002)
    assert lrs[90].d_lr == pytest.approx(0.001)                        # the tables are scaled alike
    assert lrs[99].g_lr == pytest.approx(0.0002) and lrs[100].g_lr == 0.0 and lrs[120].g_lr == 0.0
    sched.lr_rampdown = 0.0                                            # the paper: constant
    assert phase_at(99_000, sched, 32).g_lr == 0.004


def test_device_cap():
    cfg = paper(32)
    cfg.device_batch_cap = {4: 4}
    assert phase_at(0, cfg, 32, num_devices=1).batch == 4
    assert phase_at(0, cfg, 32, num_devices=2).batch == 8
    assert phase_at(1300 * 1000, cfg, 32).batch == 16


def test_no_growing_runs_at_full_resolution():
    cfg = paper(128)
    cfg.growing = False
    ph = phase_at(0, cfg, 128)
    assert ph.resolution == 128 and ph.alpha == 1.0 and ph.lod == 0.0


def test_start_resolution():
    cfg = paper(64)
    cfg.start_resolution = 16
    assert phase_at(0, cfg, 64).resolution == 16
    assert lod_at(0, cfg, 64) == 2.0


def test_optimizer_reset_points():
    cfg = paper(32)
    lods = [phase_at(n, cfg, 32).lod for n in range(0, 3_700_000, 16)]
    resets = [i * 16 / 1000 for i in range(1, len(lods)) if starts_new_phase(lods[i - 1], lods[i])]
    # a reset at the start of every fade (600, 1800, 3000) and every stabilise phase (1200, 2400, 3600)
    expected = [600, 1200, 1800, 2400, 3000, 3600]
    assert len(resets) == len(expected)
    for got, want in zip(resets, expected):
        assert want <= got < want + 0.02


def test_schedule_is_pure():
    cfg = paper(32)
    assert phase_at(1_234_567, cfg, 32) == phase_at(1_234_567, cfg, 32)


def test_cpu_small_ends_stabilising_its_top_resolution():
    from pggan.presets import get_preset

    cfg = get_preset("cpu-small")
    from pggan.schedule import growth_kimg

    end = phase_at(int(cfg.sched.total_kimg * 1000) - 1, cfg.sched, cfg.net.resolution)
    assert end.resolution == cfg.net.resolution and end.alpha == 1.0
    assert cfg.sched.total_kimg - growth_kimg(cfg.sched, cfg.net.resolution) >= 30   # a real stabilise phase


@pytest.mark.parametrize("preset", ["celebahq-1024-v2", "cpu-small", "celebahq-1024"])
def test_phase_kimg_lists_the_run_in_order_and_agrees_with_the_schedule(preset):
    cfg = get_preset(preset)
    res_max = cfg.net.resolution
    phases = phase_kimg(cfg.sched, res_max)
    assert abs(sum(k for _, _, k in phases) - cfg.sched.total_kimg) < 1e-9
    assert phases[0] == (4, False, cfg.sched.lod_training_kimg) and phases[-1][:2] == (res_max, False)
    start = 0.0
    for res, fading, kimg in phases:
        mid = phase_at(int((start + kimg / 2) * 1000), cfg.sched, res_max)
        assert mid.resolution == res and (mid.alpha < 1.0) == fading
        start += kimg


def test_phase_kimg_of_a_run_shorter_than_its_growth_ends_early():
    cfg = paper(32)
    cfg.total_kimg = 1500      # 4 stabilise 600, 8 fade 600, 8 stabilise 300 of 600
    assert phase_kimg(cfg, 32) == [(4, False, 600), (8, True, 600), (8, False, 300)]


def test_paper_presets_train_at_the_v2_batches_on_one_gpu_only():
    from types import SimpleNamespace

    from pggan.config import ConfigError, validate
    from pggan.schedule import V2_BATCH, batch_for
    from pggan.training.plan import device_batches
    from pggan.util.dist import DistInfo

    def resolve_config(cfg, images, device, info=DistInfo(), fresh=True):
        out = copy.deepcopy(cfg)
        return out, device_batches(out, images, device, info, fresh)

    cfg = get_preset("celebahq-1024")
    images, cuda = SimpleNamespace(label_size=0), torch.device("cuda")      # resolving touches no GPU
    on_gpu, notes = resolve_config(cfg, images, cuda)
    assert on_gpu.sched.batch_table == V2_BATCH and batch_for(1024, on_gpu.sched) == 4
    assert phase_at(0, on_gpu.sched, 1024).batch == 128 and on_gpu.sched.g_lr_table == {1024: 0.0015}
    assert any(n.startswith("gpu_batches v2") for n in notes)
    assert cfg.sched.batch_table == PAPER_BATCH                       # the request is left as it was
    v2 = get_preset("celebahq-1024-v2").sched
    assert (on_gpu.sched.batch_table, on_gpu.sched.d_lr_table) == (v2.batch_table, v2.d_lr_table)
    for device, info, fresh in ((torch.device("cpu"), DistInfo(), True),           # a CPU, 8 GPUs, a resumed run
                                (cuda, DistInfo(rank=0, world=8, local_rank=0), True), (cuda, DistInfo(), False)):
        assert resolve_config(cfg, images, device, info, fresh)[0].sched.batch_table == PAPER_BATCH
    cfg.sched.g_lr_table = {1024: 0.003}                              # the user's own rates stay
    assert resolve_config(cfg, images, cuda)[0].sched.g_lr_table == {1024: 0.003}
    cfg.sched.gpu_batches = "v3"
    with pytest.raises(ConfigError, match="sched.gpu_batches must be v2 or empty"):
        validate(cfg)


def test_micro_batches_split_a_share_under_the_cap_into_whole_stddev_groups():
    from pggan.schedule import micro_batches

    sched = ScheduleConfig(device_batch_cap={8: 8})
    assert micro_batches(32, 4, sched, 4) == ((0, 32),)                           # no cap at 4x4: one round
    assert micro_batches(32, 8, sched, 4) == ((0, 8), (8, 16), (16, 24), (24, 32))
    # 12 under a cap of 8: two rounds of 6 would not group by 4, three of 4 do (two of 6 without the layer)
    assert micro_batches(12, 8, sched, 4) == ((0, 4), (4, 8), (8, 12))
    assert micro_batches(12, 8, sched, 0) == ((0, 6), (6, 12))


def test_batches_the_minibatch_stddev_cannot_group_are_refused_before_training():
    from pggan.config import ConfigError, NetworkConfig
    from pggan.schedule import check_batches

    net = NetworkConfig(resolution=32, mbstd_group_size=4)
    check_batches(ScheduleConfig(batch_base=16, batch_table={}), net)              # the paper's 16
    check_batches(ScheduleConfig(batch_base=3, batch_table={}), net)               # below a group: one group
    check_batches(ScheduleConfig(batch_base=6, batch_table={}), NetworkConfig(resolution=32, mbstd_group_size=0))
    with pytest.raises(ConfigError, match=r"minibatch 6 at 4x4 .* groups of 4: give that level a multiple of 4"):
        check_batches(ScheduleConfig(batch_base=6, batch_table={}), net)
    with pytest.raises(ConfigError, match=r"minibatch 30 \(10 per process\) at 4x4 .* a multiple of 12"):
        check_batches(ScheduleConfig(batch_base=32, batch_table={}), net, num_devices=3)
    with pytest.raises(ConfigError, match="at 32x32"):                             # the level that fails is named
        check_batches(ScheduleConfig(batch_base=16, batch_table={32: 10}), net)
