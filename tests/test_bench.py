import pytest
import torch

from pggan.bench import measure_steps, reference_config
from pggan.config import NetworkConfig
from pggan.flops import conv_flops, count_flops
from pggan.networks import Discriminator, Generator


def test_flop_counter_matches_layer_shapes():
    cfg = NetworkConfig(resolution=16, fmap_max=32, latent_size=32)
    G = Generator(cfg)
    n = 4
    got = count_flops(lambda: G(torch.randn(n, 32)))
    # by hand: dense 32 -> 32*16, conv3x3 at 4, two conv3x3 at 8 and 16, toRGB 1x1 at 16
    want_conv = 2 * n * (32 * 32 * 9 * 16 + 2 * 32 * 32 * 9 * 64 + 2 * 32 * 32 * 9 * 256 + 32 * 3 * 256)
    assert got["conv"] == want_conv
    assert got["matmul"] == 2 * n * 32 * 32 * 16
    assert conv_flops((1, 8, 5, 5), (8, 8, 3, 3), (1, 8, 5, 5), False) == 2 * 8 * 25 * 8 * 9


def test_training_step_flops_include_the_double_backward():
    cfg = reference_config("fp32")
    cfg.net.fmap_max, cfg.net.latent_size, cfg.net.resolution, cfg.data_count = 16, 16, 8, 16
    D = Discriminator(cfg.net)
    x = torch.randn(16, 3, 8, 8)
    fwd = count_flops(lambda: D(x))["conv"]
    rows = measure_steps(cfg, torch.device("cpu"), [8], seconds=0.01, fades=False)
    per_img = rows[0]["gflop_per_img"] * 1e9
    # D step ~ 2 fwd + 2x2 bwd + penalty (fwd, grad, double backward ~6 fwd); G step adds ~3-4 more D fwds
    assert 10 * fwd / 16 < per_img < 20 * fwd / 16 + 6 * fwd
    assert rows[0]["img_per_s"] > 0 and rows[0]["loader_img_per_s"] > 0
    # G and D forwards, their backwards, the penalty's double backward, two Adam steps and the EMA
    assert 200 < rows[0]["ops"] < 2000


def test_op_count_counts_computing_calls_not_views():
    x = torch.randn(4, 6)
    assert count_flops(lambda: (x + 1).view(-1).t().mul(2).reshape(2, 12)[0].sum())["ops"] == 3


def test_bench_cli_validates_its_options():
    from click.testing import CliRunner

    from pggan.cli import main

    r = CliRunner().invoke(main, ["bench", "--resolutions", "64"])
    assert r.exit_code == 1 and "choose from 4, 8, 16, 32" in r.output
    r = CliRunner().invoke(main, ["bench", "--precision", "fp8"])
    assert r.exit_code == 1 and "unknown precision fp8" in r.output


def test_conv_peak_reports_forward_backward_and_the_step_bound():
    from pggan.bench import conv_peak

    r = conv_peak("fp32", torch.device("cpu"), shapes=((2, 8, 8), (2, 16, 8)), seconds=0.01)
    for s in r["shapes"]:
        f, b = s["gflops"], s["backward_gflops"]
        assert f > 0 and b > 0
        assert abs(s["step_bound_gflops"] - 3 / (1 / f + 2 / b)) < 1e-9 * f
        assert min(f, b) <= s["step_bound_gflops"] <= max(f, b)
    assert r["peak_gflops"] == max(s["gflops"] for s in r["shapes"])


def test_fixed_step_cost_separates_what_does_not_grow_with_the_batch():
    import time

    from pggan.bench import _fixed, fixed_step_cost
    from pggan.schedule import Phase

    class FakeTrainer:   # a step costs 30 ms + 2 ms per image
        def step(self, ph):
            time.sleep(0.030 + 0.002 * ph.batch)
    ph = Phase(kimg=0.0, lod=0.0, res_log2=3, alpha=1.0, batch=16, g_lr=1e-3, d_lr=1e-3)
    fixed = fixed_step_cost(FakeTrainer(), ph, dt=0.030 + 0.002 * 16, seconds=0.2, device=torch.device("cpu"))
    assert abs(fixed - 0.030) < 0.006
    row = {"fixed_ms": 31.0, "img_per_s": 16 / 0.062, "batch": 16}
    assert _fixed(row) == "31 (50%)" and _fixed({}) == "-"


def test_project_run_sums_every_phase_of_the_preset(monkeypatch):
    from pggan import bench
    from pggan.presets import get_preset
    from pggan.schedule import phase_kimg

    small = get_preset("cpu-small")
    small.net.resolution, small.sched.total_kimg = 8, 50        # 4 stabilise, 8 fade, 8 stabilise
    monkeypatch.setattr(bench, "get_preset", lambda name: small)
    lines = []
    r = bench.project_run("cpu-small", torch.device("cpu"), "fp32", 0.01, log=lines.append)
    want = phase_kimg(small.sched, 8)
    assert [(p["resolution"], p["phase"] == "fade", p["kimg"]) for p in r["phases"]] == want
    assert len(lines) == len(want) and set(r["hours"]) == {"eager"}      # no graphs on a CPU
    for p in r["phases"]:
        assert p["batch"] == small.sched.batch_table[p["resolution"]] and p["eager_sec_per_kimg"] > 0
        assert abs(p["eager_hours"] - p["kimg"] * p["eager_sec_per_kimg"] / 3600) < 1e-12
    assert abs(r["hours"]["eager"] - sum(p["eager_hours"] for p in r["phases"])) < 1e-12


def test_bench_project_run_names_an_unknown_preset():
    from click.testing import CliRunner

    from pggan.cli import main

    r = CliRunner().invoke(main, ["bench", "--project-run", "nope"])
    assert r.exit_code == 1 and "unknown preset 'nope'" in r.output and "celebahq-1024-v2" in r.output
    r = CliRunner().invoke(main, ["bench", "--auto-batch"])
    assert r.exit_code == 1 and "--auto-batch goes with --project-run" in r.output


def test_project_run_with_auto_batch_says_what_it_resolved(monkeypatch):
    from pggan import bench
    from pggan.presets import get_preset

    small = get_preset("cpu-small")
    small.net.resolution, small.sched.total_kimg = 4, 1
    monkeypatch.setattr(bench, "get_preset", lambda name: small)
    lines = []
    r = bench.project_run("cpu-small", torch.device("cpu"), "fp32", 0.01, log=lines.append, auto_batch=True)
    assert lines[0].startswith("auto_batch: applies to CUDA devices") and r["phases"][0]["batch"] == small.sched.batch_table[4]


@pytest.mark.parametrize("native", (True, False))
def test_bench_measures_bf16_where_the_cpu_computes_it(monkeypatch, native):
    """By default: fp32, and bf16 only where the CPU has it natively (elsewhere a slow fallback that no run
    would choose, minutes per row); asked for, bf16 is measured anyway. --project-run: train's pick."""
    from click.testing import CliRunner

    import pggan.bench as bench
    import pggan.util.device as device_util
    from pggan.cli import main

    monkeypatch.setattr(device_util, "cpu_has_native_bf16", lambda: native)
    asked = []
    monkeypatch.setattr(bench, "run_bench", lambda dev, precs, *a, **k: asked.append(precs) or {})
    monkeypatch.setattr(bench, "project_run", lambda preset, dev, prec, *a, **k: asked.append(prec) or {"hours": {}})
    assert bench.default_precisions(torch.device("cpu"))[0] == (["fp32", "bf16"] if native else ["fp32"])
    for args in ([], ["--precision", "fp32,bf16"], ["--project-run", "cpu-small"]):
        r = CliRunner().invoke(main, ["bench", "--device", "cpu", *args])
        assert r.exit_code == 0, r.output
        assert ("bf16 left out" in r.output) == (not native and not args)
    assert asked == [["fp32", "bf16"] if native else ["fp32"], ["fp32", "bf16"], "bf16" if native else "fp32"]
