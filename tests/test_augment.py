"""Differentiable augmentation (beyond the paper): identity when off, the transforms themselves, gradients
through them, the same pipeline for reals and fakes in training, ADA's update, and no leak into G."""
import pytest
import torch

from pggan import augment as A
from pggan.config import AUGMENTATIONS, ConfigError, TrainConfig, set_option, validate

POLICY = ("translation", "cutout", "color")


def test_the_transform_names_are_the_configs():
    assert tuple(A.TRANSFORMS) == AUGMENTATIONS


def test_off_is_the_identity():
    x = torch.randn(4, 3, 16, 16)
    assert A.augment(x, POLICY, 0.0) is x
    assert A.augment(x, (), 1.0) is x


def test_translation_moves_a_pixel_by_at_most_an_eighth_and_fills_with_zero():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 16, 16)
    x[:, :, 8, 8] = 1.0
    y = A.translation(x, 1.0)
    assert torch.equal(y.flatten(1).sum(1), torch.ones(64))              # the pixel stays inside, moved
    pos = y[:, 0].flatten(1).argmax(1)
    dy, dx = pos // 16 - 8, pos % 16 - 8
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2 and (dy != 0).any() and (dx != 0).any()
    x = torch.ones(64, 1, 16, 16)
    y = A.translation(x, 1.0)
    shifted = (y == 0).flatten(1).any(1)
    assert shifted.float().mean() > 0.5 and set(y.unique().tolist()) <= {0.0, 1.0}


def test_cutout_erases_one_square_of_half_the_size():
    torch.manual_seed(0)
    y = A.cutout(torch.ones(256, 3, 16, 16), 1.0)
    erased = (y == 0).all(1)                                            # [N, H, W]
    rows, cols = erased.any(2).sum(1), erased.any(1).sum(1)
    assert rows.max() == 8 and cols.max() == 8                          # an 8x8 square, cut at the borders
    assert torch.equal(erased.sum((1, 2)), rows * cols)                 # a rectangle, never two pieces
    assert 0.15 < erased.float().mean() < 0.25                         # 64 of 256 pixels, less at the borders


def test_color_keeps_shapes_and_changes_values_per_image():
    torch.manual_seed(0)
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    y = A.color(x, 1.0)
    assert y.shape == x.shape and not torch.allclose(x, y)
    assert A.color(torch.rand(8, 1, 8, 8), 1.0).shape == (8, 1, 8, 8)  # grayscale: no saturation step


def test_p_is_the_share_of_images_transformed():
    torch.manual_seed(0)
    x = torch.rand(2000, 3, 8, 8)
    changed = (A.color(x, 0.3) != x).flatten(1).any(1).float().mean()
    assert 0.26 < changed < 0.34


def test_gradients_flow_through_every_transform():
    torch.manual_seed(0)
    x = torch.randn(16, 3, 16, 16, requires_grad=True)
    A.augment(x, POLICY, 1.0).square().sum().backward()
    assert x.grad.abs().sum() > 0
    x = torch.randn(16, 3, 16, 16, requires_grad=True)
    torch.manual_seed(1)
    y = A.cutout(x, 1.0)
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float())                        # d cutout / dx: the kept pixels


def test_overfit_signal_counts_reals_above_the_average_fake():
    real = torch.tensor([3.0, 2.0, -1.0, 1.0])
    assert float(A.overfit_signal(real, torch.tensor([0.0, -2.0, 2.0, 0.0]))) == 0.5    # 3 above 0, 1 below
    assert float(A.overfit_signal(real, torch.tensor([-5.0]))) == 1.0                    # D tells every real
    assert float(A.overfit_signal(real, torch.tensor([5.0]))) == -1.0


def test_adjust_p_follows_the_heuristic_and_stays_in_range():
    assert A.adjust_p(0.5, 0.9, 0.6, 1000, 100.0) == pytest.approx(0.51)
    assert A.adjust_p(0.5, 0.1, 0.6, 1000, 100.0) == pytest.approx(0.49)
    assert A.adjust_p(0.5, 0.6, 0.6, 1000, 100.0) == 0.5
    assert A.adjust_p(1.0, 1.0, 0.6, 10 ** 6, 1.0) == 1.0 and A.adjust_p(0.0, -1.0, 0.6, 10 ** 6, 1.0) == 0.0


def test_bad_policies_are_refused_by_the_config():
    with pytest.raises(ConfigError, match="unknown augmentation 'flip'"):
        validate(set_option(TrainConfig(), "aug.policy", "translation,flip"))
    with pytest.raises(ConfigError, match="aug.p"):
        validate(set_option(TrainConfig(), "aug.p", "1.5"))


def _tiny(tmp_path, **aug):
    from test_training import tiny_config

    cfg = tiny_config(tmp_path)
    for k, v in aug.items():
        setattr(cfg.aug, k, v)
    return validate(cfg)


def test_training_augments_reals_and_fakes_alike_and_adapts_p(tmp_path, monkeypatch):
    from pggan.data.load import load_images
    from pggan.training import trainer as T

    cfg = _tiny(tmp_path, policy="translation,cutout", adaptive=True, p=0.5, speed_kimg=0.1)
    seen = []
    real_augment = T.augment

    def spy(x, policy, p):
        seen.append((x.requires_grad, tuple(x.shape), policy, float(p)))   # p: a device tensor
        return real_augment(x, policy, p)

    monkeypatch.setattr(T, "augment", spy)
    images = load_images(cfg.data, cfg.net.resolution, cfg.net.channels, cfg.data_count, cfg.seed)
    t = T.Trainer(cfg, images, torch.device("cpu"))
    t.cur_nimg = 10 ** 6                                               # the full resolution, no fade
    for _ in range(4):
        t.step()
    policy = ("translation", "cutout")
    # per step: reals and fakes before D (no graph to G), then fakes with G's graph for the G step
    assert seen[:3] == [(False, (8, 3, 16, 16), policy, 0.5), (False, (8, 3, 16, 16), policy, 0.5),
                        (True, (8, 3, 16, 16), policy, 0.5)]
    assert len(seen) == 12 and float(t.aug_p) != 0.5                   # p moved after 4 D steps
    assert t.state_dict()["aug"]["p"] == float(t.aug_p)


@pytest.mark.slow
def test_strong_cutout_does_not_leak_into_generated_images(tmp_path):
    """G trained on plain white images with cutout on every image D sees never draws the cutout's
    (value 0) squares: they would cover a fifth of the image."""
    import numpy as np

    from pggan.data.base import ImageSet
    from pggan.training.trainer import Trainer

    torch.manual_seed(0)
    cfg = _tiny(tmp_path, policy="cutout", p=1.0)
    cfg.sched.growing = False
    images = ImageSet.from_full(np.full((64, 3, 16, 16), 255, np.uint8), description="white")
    t = Trainer(cfg, images, torch.device("cpu"))
    for _ in range(300):
        t.step()
    with torch.no_grad():
        out = t.G_ema(torch.randn(64, cfg.net.z_dim), None)
    dark = (out < 0.5).float().mean()
    assert dark < 0.02, f"{dark:.3f} of the generated pixels are far from white"
