"""Planning a run once (training/plan.py): the label decision case by case, class identity across
--resume and --init, the same spec for the same request, --dry-run against the run, and re-plans."""
import json
import os
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from test_training import tiny_config

from pggan.checkpoint import list_checkpoints
from pggan.cli import main
from pggan.config import ConfigError
from pggan.training import budget
from pggan.training.budget import Costs, replan
from pggan.training.labels import Source, decide
from pggan.training.plan import RunRequest, RunSpec, plan_run
from pggan.training.run import run_training

CPU = torch.device("cpu")
CENTRES = ((0.1,) * 192, (0.9,) * 192, (0.5,) * 192)
TINY_NET = frozenset({"net.fmap_base", "net.fmap_max", "net.latent_size"})     # what tiny_config's network sets

# (network: None = new, else (classes, kind, centres)), data labels, conditional, clusters, budget's clusters, resume
# -> (kind, count, uses the source's centres) or the error's words
MATRIX = [
    ((None, 0, None, 0, 0, False), ("none", 0, False)),
    ((None, 3, None, 0, 0, False), ("none", 0, False)),              # labels not asked for are not used
    ((None, 3, True, 0, 0, False), ("data", 3, False)),
    ((None, 0, True, 0, 0, False), "needs labels, but the data has none"),
    ((None, 3, False, 0, 0, False), ("none", 0, False)),
    ((None, 0, None, 4, 0, False), ("clusters", 4, False)),
    ((None, 0, None, 0, 16, False), ("clusters", 16, False)),          # the budget's clusters ...
    ((None, 3, None, 0, 16, False), ("clusters", 16, False)),
    ((None, 0, False, 0, 16, False), ("none", 0, False)),              # ... not where the user said unconditional
    ((None, 3, True, 0, 16, False), ("data", 3, False)),               # ... nor where the data's labels decide
    ((None, 0, None, 4, 16, False), ("clusters", 4, False)),           # ... nor the user's own clusters
    (((0, "data", ()), 0, None, 0, 0, False), ("none", 0, False)),     # --init from an unconditional network
    (((0, "data", ()), 0, True, 0, 0, False), "is unconditional and cannot learn the data's classes"),
    (((0, "data", ()), 0, None, 2, 0, False), "is unconditional and cannot learn 2 clusters"),
    (((0, "data", ()), 3, None, 0, 0, False), "say --set conditional=false to fine-tune it without them"),
    (((0, "data", ()), 3, False, 0, 0, False), ("none", 0, False)),
    (((3, "data", ()), 3, None, 0, 0, False), "--set conditional=false to drop them"),   # from a labelled network
    (((3, "data", ()), 3, True, 0, 0, False), ("data", 3, False)),
    (((3, "data", ()), 2, True, 0, 0, False), "the network has 3 classes, the data 2"),
    (((3, "data", ()), 3, False, 0, 0, False), ("none", 0, False)),    # its classes dropped, as asked
    (((3, "data", ()), 0, None, 3, 0, False), ("clusters", 3, False)),  # new clusters, said why
    (((3, "data", ()), 0, None, 4, 0, False), "cannot learn 4 clusters; use --set clusters=3"),
    (((3, "clusters", CENTRES), 0, None, 0, 0, False), ("clusters", 3, True)),   # from a clustered network
    (((3, "clusters", CENTRES), 0, None, 3, 0, False), ("clusters", 3, True)),
    (((3, "clusters", ()), 0, None, 0, 0, False), ("clusters", 3, False)),       # saved before centres were
    (((3, "clusters", CENTRES), 3, True, 0, 0, False), ("data", 3, False)),
    (((3, "clusters", CENTRES), 0, False, 0, 0, False), ("none", 0, False)),
    (((0, "data", ()), 0, None, 0, 0, True), ("none", 0, False)),      # --resume keeps what the run had
    (((3, "data", ()), 3, None, 0, 0, True), ("data", 3, False)),
    (((3, "data", ()), 0, None, 0, 0, True), "the data now has no labels"),
    (((3, "clusters", CENTRES), 0, None, 0, 0, True), ("clusters", 3, True)),
]


@pytest.mark.parametrize("case, expected", MATRIX)
def test_the_label_matrix_gives_one_decision_or_one_error_per_case(case, expected):
    net, data_labels, conditional, clusters, budget_clusters, resume = case
    source = Source(*net) if net else None
    kw = dict(data_labels=data_labels, conditional=conditional, clusters=clusters, source=source, resume=resume,
              budget_clusters=budget_clusters)
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected) as e:
            decide(**kw)
        assert "\n" not in str(e.value)
        return
    d = decide(**kw)
    assert (d.kind, d.count, bool(d.centres)) == expected
    assert (d.centres == CENTRES) == expected[2]
    if d.kind == "clusters" and net and not resume:
        assert d.why.startswith("--init:")                      # a fine-tuned network's classes are explained


def _folder(path, reds: int, blues: int):
    """A folder of flat red and blue 16x16 images (with noise): two clusters of known sizes."""
    rng = np.random.default_rng(reds * 100 + blues)
    os.makedirs(path)
    for i, colour in enumerate([(220, 30, 30)] * reds + [(30, 40, 220)] * blues):
        img = np.clip(np.array(colour)[None, None] + rng.normal(0, 10, (16, 16, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(os.path.join(path, f"{i:03d}.png"))
    return str(path)


def _clustered_run(tmp_path):
    data = _folder(tmp_path / "a", 40, 24)
    cfg = tiny_config(tmp_path, clusters=2, data=data)
    cfg.sched.total_kimg = 0.1
    return data, run_training(cfg, progress=False, echo=lambda m: None).run_dir


def _resume(run, **sets):
    args = ["train", "--no-progress", "--resume", list_checkpoints(run)[-1], "--kimg", "0.2"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return CliRunner().invoke(main, args)


def test_clusters_keep_their_identity_across_resume_and_init(tmp_path):
    data, run = _clustered_run(tmp_path)
    spec = json.load(open(os.path.join(run, "training_options.json")))
    labels = spec["labels"]
    assert labels["kind"] == "clusters" and len(labels["centres"]) == 2
    assert labels["prior"] == pytest.approx([40 / 64, 24 / 64])          # class 0: the largest, red
    # resumed on data the saved centres no longer fit: refused in one line
    shifted = _folder(tmp_path / "b", 16, 48)
    r = _resume(run, data=shifted)
    assert r.exit_code == 1 and "do not fit the run's saved clusters" in r.output and len(r.output.splitlines()) == 1
    # another seed: the saved centres, not a new k-means, so the same classes; the run continues
    r = _resume(run, seed=5)
    assert r.exit_code == 0, r.output
    ckpt = torch.load(list_checkpoints(run)[-1], weights_only=True)
    assert json.loads(ckpt["classes"])["freqs"] == pytest.approx([40 / 64, 24 / 64])
    assert RunSpec.from_json(ckpt["spec"]).labels.centres == tuple(tuple(c) for c in labels["centres"])
    # --init on other images: assigned to the network's clusters (red stays class 0, though blue is now larger)
    other = _folder(tmp_path / "c", 20, 44)
    cfg = tiny_config(tmp_path, data=other, init=list_checkpoints(run)[-1])
    spec, images = plan_run(RunRequest(cfg), CPU, measure=False)
    assert spec.start == "init" and spec.labels.kind == "clusters" and "assigned to the network's 2 clusters" in spec.labels.why
    assert spec.labels.prior == pytest.approx([20 / 64, 44 / 64])
    red = images.levels[16][:, 0].mean((1, 2)) > 120
    assert (images.labels[red] == 0).all() and (images.labels[~red] == 1).all()


def test_a_resumed_run_cannot_change_its_classes(tmp_path):
    _, run = _clustered_run(tmp_path)
    r = _resume(run, clusters=0)
    assert r.exit_code == 1 and "cannot change its classes when resuming" in r.output


def _costs(*a, **k):
    return Costs({4: 110.0, 8: 110.0, 16: 110.0}, {8: 110.0, 16: 110.0})


def _frozen_clock(monkeypatch, now=1000.0):
    """The planner's and the command's clock stand still; the measurement is fixed: a plan is then exact."""
    monkeypatch.setattr(budget, "measure_costs", _costs)
    monkeypatch.setattr(budget, "time", types.SimpleNamespace(time=lambda: now))
    import pggan.cli.train as cli_train
    monkeypatch.setattr(cli_train, "time", types.SimpleNamespace(time=lambda: now))
    monkeypatch.setattr(cli_train, "process_age", lambda: 0.0)


def test_the_same_request_gives_the_same_spec(tmp_path, monkeypatch):
    _frozen_clock(monkeypatch)
    req = RunRequest(tiny_config(tmp_path, budget="10m"), TINY_NET, started=1000.0)
    first, _ = plan_run(req, CPU)
    assert first.to_json() == plan_run(req, CPU)[0].to_json()
    assert RunSpec.from_json(first.to_json()).to_json() == first.to_json()          # the saved spec reads back
    b = first.budget
    assert not b.sizes_network and b.width_scale == 0 and b.costs.stabilise == {4: 110.0, 8: 110.0, 16: 110.0}
    assert first.config.sched.fade_kimg_table == b.fade_kimg and first.config.sched.total_kimg == b.total_kimg
    assert first.request.sched.total_kimg == 1.0 and first.request.sched.fade_kimg_table == {}
    # without the network's options among those given, the budget sizes cpu-small's family instead
    sized, _ = plan_run(RunRequest(req.config, frozenset(), started=1000.0), CPU)
    assert sized.budget.sizes_network and sized.budget.width_scale == 1 and sized.config.net.fmap_max == 64


def test_dry_run_prints_what_the_run_saves_and_a_slow_measurement_is_replanned(tmp_path, monkeypatch):
    _frozen_clock(monkeypatch)
    data = _folder(tmp_path / "d", 32, 32)
    args = ["train", "--no-progress", "--data", data, "--resolution", "16", "--budget", "10m", "--precision", "fp32",
            "--outdir", str(tmp_path / "runs"), "--set", "net.fmap_base=64", "--set", "net.fmap_max=16",
            "--set", "net.latent_size=16", "--set", "sched.batch_base=8", "--set", "sched.batch_table={}",
            "--set", "tick_kimg=0.2", "--set", "image_kimg=0", "--set", "checkpoint_kimg=0", "--set", "grid_size=2"]
    dry = CliRunner().invoke(main, args + ["--dry-run"])
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.output)
    assert planned["budget"]["fade_kimg"] == {"8": 0.537, "16": 0.537}              # 0.4 x 591 s / (4 x 110 s/kimg)
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    (run,) = [os.path.join(tmp_path, "runs", d) for d in os.listdir(tmp_path / "runs")]
    assert json.load(open(os.path.join(run, "training_options.json"))) == planned    # and nothing changed it
    # the steps ran far faster than the 110 s/kimg measured: the phases not yet begun were planned again
    replans = [json.loads(line) for line in open(os.path.join(run, "replans.jsonl"))]
    log = open(os.path.join(run, "log.txt")).read()
    assert replans and replans[0]["planned"] == 110.0 and replans[0]["measured"] < 55.0
    assert log.count("budget: re-planned at kimg") == len(replans)
    ckpt = torch.load(list_checkpoints(run)[-1], weights_only=True)
    last = replans[-1]["schedule"]["fade_kimg_table"]
    assert ckpt["schedule"]["fade_kimg_table"] == {int(r): k for r, k in last.items()}   # run state, in the checkpoint
    assert json.loads(ckpt["config"]) == planned["config"]


def _cpu_small_plan(seconds=1500.0, scale=1.0):
    from pggan.presets import get_preset
    from pggan.training.budget import plan_schedule

    cfg = get_preset("cpu-small").replace(budget="25m")
    c = Costs({4: 0.5 * scale, 8: 2.0 * scale, 16: 4.0 * scale, 32: 6.0 * scale},
              {8: 2.2 * scale, 16: 4.4 * scale, 32: 6.6 * scale})
    plan = plan_schedule(seconds, c, [4, 8, 16, 32], cfg)
    cfg.sched.stabilise_kimg_table = {r: k for r, k in plan.stabilise_kimg.items() if r < 32}
    cfg.sched.fade_kimg_table = dict(plan.fade_kimg)
    cfg.sched.total_kimg = plan.total_kimg
    return cfg, c


def _seconds(sched, c: Costs, cur_kimg: float) -> float:
    """What the rest of a schedule costs at the costs ``c`` from ``cur_kimg`` (an independent sum)."""
    from pggan.schedule import phase_kimg

    t, done = 0.0, 0.0
    for res, fading, kimg in phase_kimg(sched, 32):
        left = min(kimg, max(done + kimg - cur_kimg, 0.0))
        t += left * (c.fade if fading else c.stabilise)[res]
        done += kimg
    return t


def test_a_measurement_17_times_too_slow_is_replanned_and_one_within_the_factor_is_not():
    import copy

    cfg, busy = _cpu_small_plan(scale=17.0)                  # measured while another program ran
    assert cfg.sched.fade_kimg_table[8] < 2.0
    sched = copy.deepcopy(cfg.sched)
    true = 0.5                                               # 4x4 really trains at 0.5 s/kimg
    assert replan(cfg, sched, busy, 0.2, 4, False, 17.0 * true * 0.6, 1400.0) is None     # 0.6x: within 2x
    assert replan(cfg, sched, busy, 0.2, 4, False, 17.0 * true * 1.9, 1400.0) is None
    new = replan(cfg, sched, busy, 0.2, 4, False, true, 1400.0)
    assert new is not None and new.measured / new.planned == pytest.approx(1 / 17)
    s = new.schedule
    assert s["stabilise_kimg_table"][4] == sched.stabilise_kimg_table[4]        # the phase begun keeps its length
    later = [s["fade_kimg_table"][8], s["stabilise_kimg_table"][8], s["fade_kimg_table"][16],
             s["stabilise_kimg_table"][16], s["fade_kimg_table"][32]]
    assert len(set(later)) == 1 and later[0] > 4 * cfg.sched.fade_kimg_table[8]   # equal, and far longer
    for k, v in s.items():
        setattr(sched, k, v)
    real = Costs({r: c / 17 for r, c in busy.stabilise.items()}, {r: c / 17 for r, c in busy.fade.items()})
    assert _seconds(sched, real, 0.2) == pytest.approx(1400.0 - busy.grid - busy.checkpoint, rel=2e-3)  # fills the time
    assert replan(cfg, sched, busy, 30.0, 32, False, true, 100.0) is None      # the top phase: EndPace moves the end
