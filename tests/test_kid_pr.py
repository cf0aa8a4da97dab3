"""KID, precision/recall, VGG16 features, their place in the evaluator, and TensorBoard events."""
import json
import math
import os

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pggan.metrics.kid import kernel_inception_distance, mmd2_unbiased
from pggan.metrics.precision_recall import knn_radii, precision_recall
from pggan.metrics.vgg16 import VGGWeightsError, conv_names, load_vgg16


def _direct_mmd2(x, y):
    """Written from the definition with loops: unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3."""
    x, y = x.double().numpy(), y.double().numpy()
    m, d = len(x), x.shape[1]

    def k(a, b):
        return (a @ b / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd_matches_a_direct_implementation():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g) + 0.3
    assert math.isclose(mmd2_unbiased(x, y), _direct_mmd2(x, y), rel_tol=1e-9)
    # a subset as large as the sets: every subset is the whole set, so KID is that one estimate
    assert math.isclose(kernel_inception_distance(y, x, subsets=3, subset_size=12), _direct_mmd2(x, y), rel_tol=1e-9)


def _poly_kernel_mean(a: float, b: float, d: int) -> float:
    """E[(x.y / d + 1)^3] for independent x ~ N(a, I_d), y ~ N(b, I_d): s = x.y / d is the mean of d
    i.i.d. products u = x_i y_i with raw moments m1 = ab, m2 = (a^2+1)(b^2+1), m3 = (a^3+3a)(b^3+3b)."""
    m1, m2, m3 = a * b, (a * a + 1) * (b * b + 1), (a ** 3 + 3 * a) * (b ** 3 + 3 * b)
    var, k3 = m2 - m1 ** 2, m3 - 3 * m1 * m2 + 2 * m1 ** 3
    e1, e2, e3 = m1, m1 ** 2 + var / d, m1 ** 3 + 3 * m1 * var / d + k3 / d ** 2
    return e3 + 3 * e2 + 3 * e1 + 1


def test_kid_known_values():
    g = torch.Generator().manual_seed(1)
    d, n = 4, 3000
    same = kernel_inception_distance(torch.randn(n, d, generator=g), torch.randn(n, d, generator=g), 50, 1000)
    a = 0.5
    x, y = torch.randn(n, d, generator=g) + a, torch.randn(n, d, generator=g)
    want = _poly_kernel_mean(a, a, d) + _poly_kernel_mean(0, 0, d) - 2 * _poly_kernel_mean(a, 0, d)
    got = kernel_inception_distance(y, x, 50, 1000)
    assert abs(same) < 0.02 * want                      # two samples of one distribution: about 0 (unbiased)
    assert math.isclose(got, want, rel_tol=0.1), (got, want)


def test_precision_recall_on_constructed_sets():
    g = torch.Generator().manual_seed(2)
    real = torch.randn(400, 8, generator=g)
    assert precision_recall(real, real.clone()) == {"precision": 1.0, "recall": 1.0}
    # generated images that all lie in one region of the real data (11 % of it): realistic, not varied
    plane = torch.randn(1000, 2, generator=g)
    region = plane[plane[:, 0] > 1.2]
    pr = precision_recall(plane, region)
    assert pr["precision"] == 1.0 and 0.1 < pr["recall"] < 0.2 and len(region) < 150
    # far away from the data: neither
    assert precision_recall(real, real + 100.0) == {"precision": 0.0, "recall": 0.0}
    # the blocks (bounded memory) do not change the answer
    other = torch.randn(300, 8, generator=g) * 1.3
    assert precision_recall(real, other, block_elems=1000) == precision_recall(real, other)
    radii = knn_radii(real, 3)
    d = torch.cdist(real, real)
    assert torch.allclose(radii, d.sort(dim=1).values[:, 3])      # the 3rd neighbour, not counting itself


def write_tiny_vgg16(path, div=16):
    widths = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    sd, c_in = {}, 3
    for name, w in zip(conv_names(), widths):
        sd[f"{name}.weight"] = torch.randn(w // div, c_in, 3, 3) * (2.0 / (9 * c_in)) ** 0.5
        sd[f"{name}.bias"] = torch.zeros(w // div)
        c_in = w // div
    hidden = 4096 // div
    sd["classifier.0.weight"], sd["classifier.0.bias"] = torch.randn(hidden, c_in * 49) * 0.02, torch.zeros(hidden)
    sd["classifier.3.weight"], sd["classifier.3.bias"] = torch.randn(hidden, hidden) * 0.02, torch.zeros(hidden)
    sd["classifier.6.weight"], sd["classifier.6.bias"] = torch.randn(1000, hidden) * 0.02, torch.zeros(1000)
    torch.save(sd, path)
    return str(path)


def test_vgg16_features_and_bad_files(tmp_path):
    net = load_vgg16(write_tiny_vgg16(tmp_path / "vgg.pth"))
    x = torch.rand(3, 3, 32, 32) * 255
    f = net(x)
    assert f.shape == (3, 4096 // 16) and (f >= 0).all()
    assert net(x[:, :1]).shape == (3, 256)                      # grayscale is repeated to RGB
    # torchvision's layout: convolution 13 is features.28, the two hidden fully connected layers
    assert conv_names()[-1] == "features.28" and len(conv_names()) == 13
    (tmp_path / "text.pth").write_text("hello")
    for bad, msg in ((tmp_path / "nope.pth", "does not exist"), (tmp_path / "text.pth", "not a readable")):
        with pytest.raises(VGGWeightsError, match=msg):
            load_vgg16(str(bad))
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "part.pth")
    with pytest.raises(VGGWeightsError, match="not a VGG16 state dict"):
        load_vgg16(str(tmp_path / "part.pth"))


def test_evaluator_kid_pr_and_the_feature_cache(tmp_path):
    from tiny_inception import write_tiny_inception

    from pggan.metrics.evaluate import Evaluator, MetricOptions

    g = torch.Generator().manual_seed(3)
    reals = (torch.rand(40, 3, 32, 32, generator=g) * 255).round()
    others = (reals * 0.5).round()
    real_fn = lambda idx: reals[torch.as_tensor(np.asarray(idx))]  # noqa: E731
    opts = MetricOptions(["kid", "pr", "fid"], num=40, batch=16, inception=write_tiny_inception(tmp_path / "i.pth"),
                         cache_dir=str(tmp_path / "cache"), kid_subsets=10, kid_subset_size=20)
    ev = Evaluator(opts, torch.device("cpu"))
    same = ev.evaluate(lambda r: reals[list(r)], real_fn, 40, "k")
    assert same["pr"]["precision"] == 1.0 and same["pr"]["recall"] == 1.0 and same["pr"]["features"] == "inception"
    assert abs(same["fid"]) < 1e-6
    names = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(names) == 1 and names[0].startswith("inception-real-")    # FID's sums came from the same matrix
    diff = Evaluator(opts, torch.device("cpu")).evaluate(
        lambda r: others[list(r)], lambda idx: (_ for _ in ()).throw(AssertionError("cache not used")), 40, "k")
    fr, fo = (ev.inception(x)[0] for x in (reals, others))
    assert math.isclose(diff["kid"], 1e3 * kernel_inception_distance(fr, fo, 10, 20, seed=0), rel_tol=1e-5)
    assert diff["kid"] > 10 * abs(same["kid"])
    assert diff["pr"] == dict(precision_recall(fr, fo), k=3, features="inception")
    # VGG16 features for precision/recall when a VGG16 file is given
    vopts = MetricOptions(["pr"], num=40, batch=16, vgg16=write_tiny_vgg16(tmp_path / "v.pth"),
                          cache_dir=str(tmp_path / "cache"))
    v = Evaluator(vopts, torch.device("cpu"))
    assert v.inception is None
    r = v.evaluate(lambda r: others[list(r)], real_fn, 40, "k")
    assert r["pr"]["features"] == "vgg16" and r["pr"] == dict(precision_recall(v.vgg16(reals), v.vgg16(others)),
                                                             k=3, features="vgg16")


def test_metrics_command_kid_pr_and_plot(tmp_path):
    from test_training import tiny_config
    from tiny_inception import write_tiny_inception

    from pggan.cli import main
    from pggan.training.run import run_training

    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.45
    cfg.metrics, cfg.metrics_num, cfg.inception = "kid,pr", 24, write_tiny_inception(tmp_path / "i.pth")
    run = run_training(cfg, progress=False, echo=lambda m: None).run_dir
    for name in ("kid", "pr"):
        rec = json.loads(open(f"{run}/metric-{name}.jsonl").readline())
        assert rec["kimg"] == 0.456 and name in rec          # the end: 0.45 kimg rounded up to whole batches
    r = CliRunner().invoke(main, ["metrics", "--network", f"{run}/generator-final.safetensors", "--data", "builtin:shapes",
                                  "--metrics", "kid,pr", "--num", "24", "--inception", cfg.inception, "--kid-subsets", "5",
                                  "--kid-subset-size", "10", "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert "KID x1e3" in r.output and "precision" in r.output and "recall" in r.output
    r = CliRunner().invoke(main, ["plot", run, "--out", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output


def _scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc, [(e.step, e.value) for e in acc.Scalars(tag)]


def test_tensorboard_events_and_a_resume_without_duplicates(tmp_path):
    pytest.importorskip("tensorboard")
    from test_training import tiny_config
    from tiny_inception import write_tiny_inception

    from pggan.checkpoint import list_checkpoints
    from pggan.training.run import run_training

    cfg = tiny_config(tmp_path, deterministic=True)
    cfg.metrics, cfg.metrics_kimg, cfg.metrics_num = "kid", 0.4, 16
    cfg.inception = write_tiny_inception(tmp_path / "i.pth")
    cfg.tensorboard = "on"
    steps = iter(range(10000))
    first = run_training(cfg, progress=False, echo=lambda m: None, step_callback=lambda t, s: next(steps) == 80)
    assert first.interrupted
    run = first.run_dir
    ckpt = list_checkpoints(run)[-1]
    resumed = run_training(cfg, resume=ckpt, progress=False, echo=lambda m: None)
    assert not resumed.interrupted
    stats = [json.loads(line) for line in open(os.path.join(run, "stats.jsonl"))]
    acc, loss_d = _scalars(run, "Loss/D")
    # one point per stats line, in order, none left from the discarded part of the interrupted run
    assert [s for s, _ in loss_d] == [round(r["kimg"] * 1000) for r in stats]
    assert [v for _, v in loss_d] == pytest.approx([r["loss_d"] for r in stats], rel=1e-6)
    kid = [json.loads(line) for line in open(os.path.join(run, "metric-kid.jsonl"))]
    _, tb_kid = _scalars(run, "Metrics/kid")
    assert [s for s, _ in tb_kid] == [round(r["kimg"] * 1000) for r in kid]
    assert "fakes" in acc.Tags()["images"] and "reals" in acc.Tags()["images"]
    fakes = [e.step for e in acc.Images("fakes")]
    assert fakes == sorted(set(fakes)) and fakes[-1] == resumed.cur_nimg


def test_a_failing_tensorboard_writer_thread_prints_no_traceback(tmp_path, monkeypatch):
    """A full disk under the event file: the writer thread's error reaches the training thread (where it
    becomes one line) and Python prints no thread traceback beside it (CI once saw one after the Error line)."""
    pytest.importorskip("tensorboard")
    import errno
    import threading

    from pggan.training.tensorboard import Events

    printed = []
    monkeypatch.setattr(threading, "excepthook", lambda args: printed.append(args.exc_type))
    events = Events(str(tmp_path), None)
    worker = events.writer.file_writer.event_writer._async_writer._worker

    def full_disk(data):
        raise OSError(errno.ENOSPC, "No space left on device")

    worker._record_writer.write = full_disk
    with pytest.raises(OSError, match="No space left"):
        for i in range(100):
            events.stats(i, {"loss_d": 1.0})
    worker.join(5)
    assert not worker.is_alive() and printed == []

    other = threading.Thread(target=lambda: 1 / 0)        # any other thread's error is still printed
    other.start()
    other.join()
    assert printed == [ZeroDivisionError]
