"""torch.distributed on CPU with gloo: 2 processes started by torchrun, as users run it."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from pggan.checkpoint import list_checkpoints, load_checkpoint
from pggan.presets import get_preset

HERE = os.path.dirname(os.path.abspath(__file__))
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def torchrun(nproc, *args, timeout=180, wait=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *args]
    if not wait:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=timeout)


def small_config(tmp_path, mbstd=0):
    cfg = get_preset("cpu-small")
    cfg.precision = "fp32"                      # the exactness tests compare fp32 runs
    cfg.outdir = str(tmp_path / "runs")
    cfg.data_count = 64
    cfg.net.resolution, cfg.net.widths = 8, {}
    cfg.net.fmap_base, cfg.net.fmap_max, cfg.net.latent_size = 64, 16, 16
    cfg.net.mbstd_group_size = mbstd
    cfg.sched.lod_training_kimg = cfg.sched.lod_transition_kimg = 0.064
    cfg.sched.batch_table, cfg.sched.batch_base = {}, 8
    cfg.sched.total_kimg = 0.4
    cfg.tick_kimg, cfg.image_kimg, cfg.checkpoint_kimg = 0.08, 0, 0.16
    cfg.grid_size = 2
    cfg.deterministic = True
    return cfg


def test_two_ranks_stay_identical_and_match_one_process(tmp_path):
    cfg = small_config(tmp_path)
    # 2 steps at 4x4, then through the fade to 8x8
    cfg.sched.lod_training_kimg, cfg.sched.lod_transition_kimg = 0.016, 0.048
    # Adam's first steps move every weight by about +-lr whatever the size of its gradient, so float
    # rounding in gradients that are ~0 would decide a sign; a larger eps keeps updates proportional
    # to the gradient and the comparison meaningful.
    cfg.optim.eps = 1e-4
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    steps = 8
    r = torchrun(2, os.path.join(HERE, "dist_worker.py"), str(tmp_path / "cfg.json"), str(tmp_path), str(steps))
    assert r.returncode == 0, r.stdout + r.stderr
    r1 = subprocess.run([sys.executable, os.path.join(HERE, "dist_worker.py"), str(tmp_path / "cfg.json"),
                         str(tmp_path), str(steps)], env=ENV, capture_output=True, text=True, timeout=120)
    assert r1.returncode == 0, r1.stderr
    a, b = (torch.load(tmp_path / f"rank{i}-of-2.pt", weights_only=True) for i in (0, 1))
    one = torch.load(tmp_path / "rank0-of-1.pt", weights_only=True)
    assert 0 < a["alpha"] < 1 and a["cur_nimg"] == one["cur_nimg"] == steps * 8
    for key in ("G", "D", "G_ema"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name} differs between ranks"
            assert torch.allclose(a[key][name], one[key][name], rtol=0, atol=1e-5), f"{key}.{name}: 2 vs 1 process"
    for key in ("opt_G", "opt_D"):
        for i, st in a[key]["state"].items():
            for k2, v in st.items():
                assert torch.equal(v, b[key]["state"][i][k2])


@pytest.mark.parametrize("loss", ["wgangp", "lsgan"])
def test_two_ranks_train_as_graphs_exactly_as_eager(tmp_path, loss):
    """DDP with CUDA graphs (the capture mocked, as tests/test_graphs.py): the all-reduces inside the
    captured step (gradients; LSGAN's score) run at every replay, and both ranks' states equal the eager
    two-process run's bit for bit, through a captured 4x4 level and a captured fade."""
    cfg = small_config(tmp_path)
    cfg.loss.kind = loss
    cfg.sched.lod_training_kimg, cfg.sched.lod_transition_kimg = 0.04, 0.08
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    worker = [os.path.join(HERE, "dist_worker.py"), str(tmp_path / "cfg.json"), str(tmp_path), "12"]
    for extra in ([], ["graphs"]):
        r = torchrun(2, *worker, *extra)
        assert r.returncode == 0, r.stdout + r.stderr
    eager = [torch.load(tmp_path / f"rank{i}-of-2.pt", weights_only=True) for i in (0, 1)]
    graphed = [torch.load(tmp_path / f"rank{i}-of-2-graphs.pt", weights_only=True) for i in (0, 1)]
    assert graphed[0]["captures"] == graphed[1]["captures"] >= 2 and eager[0]["captures"] == 0
    assert 0 < graphed[0]["alpha"] < 1
    for e, g in zip(eager, graphed):
        assert e["losses"] == g["losses"]
        for key in ("G", "D"):
            for name in e[key]:
                assert torch.equal(e[key][name], g[key][name]), f"{key}.{name}"
        for name in e["G_ema"]:     # lerp vs a device-weight lerp
            torch.testing.assert_close(e["G_ema"][name], g["G_ema"][name], rtol=1e-6, atol=1e-7)
    for name in graphed[0]["G"]:
        assert torch.equal(graphed[0]["G"][name], graphed[1]["G"][name])


def test_checkpoints_move_between_process_counts(tmp_path):
    cfg = small_config(tmp_path, mbstd=4)
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    r = torchrun(2, "-m", "pggan", "train", "--config", str(tmp_path / "cfg.json"), "--no-progress", "--kimg", "0.2")
    assert r.returncode == 0, r.stdout + r.stderr
    run = tmp_path / "runs" / "00000-shapes-8-cpu-small"
    assert len(os.listdir(tmp_path / "runs")) == 1           # only rank 0 made a run directory
    assert "2 processes (gloo)" in (run / "log.txt").read_text()
    # 2 processes -> 1
    r = subprocess.run([sys.executable, "-m", "pggan", "train", "--resume", "latest", "--outdir", str(tmp_path / "runs"),
                        "--kimg", "0.3", "--no-progress"], env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(list_checkpoints(str(run))[-1])["cur_nimg"] >= 300
    # 1 process -> 2
    r = torchrun(2, "-m", "pggan", "train", "--resume", "latest", "--outdir", str(tmp_path / "runs"),
                 "--kimg", "0.4", "--no-progress")
    assert r.returncode == 0, r.stdout + r.stderr
    assert load_checkpoint(list_checkpoints(str(run))[-1])["cur_nimg"] >= 400
    assert "with 2 processes" in (run / "log.txt").read_text()


def test_a_dead_rank_stops_the_job_cleanly(tmp_path):
    cfg = small_config(tmp_path)
    cfg.sched.total_kimg = 1000
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    proc = torchrun(2, "-m", "pggan", "train", "--config", str(tmp_path / "cfg.json"), "--no-progress", wait=False)
    run = tmp_path / "runs" / "00000-shapes-8-cpu-small"
    deadline = time.time() + 90
    while time.time() < deadline and not list_checkpoints(str(run)):
        time.sleep(0.3)
    assert list_checkpoints(str(run)), "no checkpoint was written"
    workers = subprocess.run(["pgrep", "-f", "pggan train --config"], capture_output=True, text=True).stdout.split()
    workers = [int(p) for p in workers if int(p) != proc.pid]
    assert len(workers) >= 2
    os.kill(max(workers), signal.SIGKILL)                  # one rank dies without warning
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "lost contact with another training process" in out and "--resume latest" in out, out
    ckpt = load_checkpoint(list_checkpoints(str(run))[-1])    # what was written is intact
    assert ckpt["cur_nimg"] > 0


def _diverge_worker(rank, path, out):
    import torch.distributed as dist

    from pggan.config import NetworkConfig
    from pggan.networks import Generator
    from pggan.util.dist import DistInfo, check_identical

    dist.init_process_group("gloo", init_method=f"file://{path}", rank=rank, world_size=2)
    torch.manual_seed(0)
    G = Generator(NetworkConfig(resolution=8, fmap_base=32, fmap_max=8, latent_size=8))
    check_identical([G], DistInfo(rank, 2))              # equal: passes
    if rank == 1:
        with torch.no_grad():
            next(G.parameters()).view(-1)[0] += 1e-3
    try:
        check_identical([G], DistInfo(rank, 2))
        msg = "no error"
    except RuntimeError as e:
        msg = str(e)
    with open(f"{out}/msg{rank}", "w") as f:
        f.write(msg)
    dist.destroy_process_group()


def test_diverged_ranks_are_detected(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_diverge_worker, args=(str(tmp_path / "store"), str(tmp_path)), nprocs=2)
    for r in (0, 1):
        assert "rank(s) [1] differ from rank 0" in (tmp_path / f"msg{r}").read_text()


def test_metrics_use_all_ranks_and_match_one_process(tmp_path):
    import json
    import math

    from tiny_inception import write_tiny_inception

    cfg = small_config(tmp_path)
    cfg.metrics, cfg.metrics_num, cfg.metrics_pairs = "swd,fid,is,msssim,kid,pr", 150, 40   # ragged last batches
    cfg.data_count, cfg.sched.growing = 200, False
    cfg.inception = write_tiny_inception(tmp_path / "tiny.pth")
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    env_cache = dict(ENV, PGGAN_CACHE=str(tmp_path / "cache"))
    args = [os.path.join(HERE, "dist_worker.py"), str(tmp_path / "cfg.json"), str(tmp_path), "0"]
    cmd2 = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    r = subprocess.run(cmd2, env=env_cache, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    r1 = subprocess.run([sys.executable, *args], env=dict(env_cache, PGGAN_CACHE=str(tmp_path / "cache1")),
                        capture_output=True, text=True, timeout=120)
    assert r1.returncode == 0, r1.stderr
    two, one = (json.loads(torch.load(tmp_path / f"rank0-of-{n}.pt", weights_only=True)["metrics"]) for n in (2, 1))
    assert two["swd"] == one["swd"]                       # the same images, gathered in order: identical
    assert math.isclose(two["fid"], one["fid"], rel_tol=1e-6)
    assert math.isclose(two["is"]["mean"], one["is"]["mean"], rel_tol=1e-9)
    assert math.isclose(two["msssim"], one["msssim"], rel_tol=1e-9)
    assert math.isclose(two["kid"], one["kid"], rel_tol=1e-5, abs_tol=1e-6)
    for key in ("precision", "recall"):                  # a count: equal, or one image apart at a ball's edge
        assert abs(two["pr"][key] - one["pr"][key]) <= 1 / 150 + 1e-12


def test_a_budgeted_run_plans_once_for_the_group_and_ends_on_time(tmp_path):
    """Both processes train the same planned schedule (they would deadlock otherwise) and the job ends
    within its budget; a resume follows the saved plan."""
    cfg = small_config(tmp_path)
    cfg.tick_kimg, cfg.checkpoint_kimg = 0.08, 0
    (tmp_path / "cfg.json").write_text(cfg.to_json())
    start = time.time()
    r = torchrun(2, "-m", "pggan", "train", "--config", str(tmp_path / "cfg.json"), "--no-progress", "--budget", "40s")
    wall = time.time() - start
    assert r.returncode == 0, r.stdout + r.stderr
    run = tmp_path / "runs" / "00000-shapes-8-cpu-small"
    log = (run / "log.txt").read_text()
    assert "budget 40s" in log and "stabilise 8" in log
    assert wall < 40 * 1.1, wall
    saved = json.loads((run / "training_options.json").read_text())["config"]["sched"]
    assert saved["fade_kimg_table"] and saved["stabilise_kimg_table"]
    ckpt = load_checkpoint(list_checkpoints(str(run))[-1])
    assert json.loads(ckpt["config"])["sched"]["fade_kimg_table"] == saved["fade_kimg_table"]
    end = ckpt["cur_nimg"]
    r = subprocess.run([sys.executable, "-m", "pggan", "train", "--resume", "latest", "--outdir", str(tmp_path / "runs"),
                        "--kimg", str(end / 1000 + 0.08), "--no-progress"], env=ENV, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    again = json.loads(load_checkpoint(list_checkpoints(str(run))[-1])["config"])["sched"]
    assert again["fade_kimg_table"] == saved["fade_kimg_table"]        # the resumed run kept the plan


def _pggan_train(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pggan", "train", *args], env=ENV, capture_output=True, text=True,
                          timeout=timeout)


def test_nproc_refuses_bad_input_once_before_starting_any_process(tmp_path):
    out = str(tmp_path / "runs")
    for args, said in ((["--set", "sched.lr_base=abc"], "option 'sched.lr_base': cannot read 'abc' as float"),
                       (["--data", str(tmp_path / "nowhere")], "does not exist"),
                       (["--data", str(tmp_path)], "no images"),
                       (["--device", "cuda:1"], "choose the GPUs with CUDA_VISIBLE_DEVICES"),
                       (["--nproc", "3"], "minibatch 30 (10 per process) at 4x4 does not split")):
        r = _pggan_train("--nproc", "2", "--preset", "demo", "--outdir", out, *args)
        text = r.stdout + r.stderr
        assert r.returncode == 1 and text.count("Error:") == 1 and said in text, text
        assert "torch.distributed" not in text and "Traceback" not in text, text
    assert not os.path.exists(out)


def test_a_failure_in_the_processes_is_told_by_them_and_one_line_of_the_agent(tmp_path):
    broken = tmp_path / "broken"               # images by name only: found by the parent, unreadable to the processes
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    r = _pggan_train("--nproc", "2", "--preset", "demo", "--data", str(broken), "--outdir", str(tmp_path / "runs"),
                     "--no-progress")
    text = r.stdout + r.stderr
    assert r.returncode == 1, text
    assert text.count("could be read") == 2 and "2 of the training processes failed" in text, text
    assert "Traceback" not in text and "ChildFailedError" not in text and "OMP_NUM_THREADS" not in text, text
