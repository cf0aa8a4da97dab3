import math

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

    from pggan.cli import main
    from pggan.training.checkpoint import list_checkpoints
    from pggan.training.run import train
    from test_training import tiny_config

    cfg = tiny_config(tmp_path)
    cfg.sched.total_kimg = 0.05
    run = train(cfg, progress=False, echo=lambda m: None)["run_dir"]
    ckpt = list_checkpoints(run)[-1]
    args = ["metrics", "--network", ckpt, "--data", "builtin:shapes", "--num", "32", "--pairs", "20"]
    r1 = CliRunner().invoke(main, args)
    assert r1.exit_code == 0, r1.output
    assert "SWD x1e3" in r1.output and "MS-SSIM" in r1.output
    assert CliRunner().invoke(main, args).exit_code == 0
    lines = [json.loads(line) for line in open(f"{run}/metric-swd.jsonl")]
    assert len(lines) == 2 and lines[0]["swd"] == lines[1]["swd"]          # seeded: the same numbers
    assert set(lines[0]["swd"]["levels"]) == {"16"} and lines[0]["kimg"] >= 0.05
    m = json.loads(open(f"{run}/metric-msssim.jsonl").readline())
    assert 0 < m["msssim"] <= 1
    r3 = CliRunner().invoke(main, ["metrics", "--network", ckpt, "--data", "builtin:shapes", "--metrics", "fid"])
    assert r3.exit_code == 1 and "not implemented yet" in r3.output
