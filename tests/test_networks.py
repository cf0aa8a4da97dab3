import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from pggan.config import NetworkConfig
from pggan.layers import (
    EqualizedConv2d,
    EqualizedLinear,
    downsample2x,
    fade_images,
    flatten_channel_major,
    like_weight,
    minibatch_stddev,
    pixel_norm,
    upsample2x,
)
from pggan.networks import Discriminator, Generator, count_params
from pggan.presets import get_preset
from pggan.schedule import lod_to_level

SMALL = NetworkConfig(resolution=32, fmap_base=128, fmap_max=16, latent_size=16)


def test_parameter_counts_at_1024_match_the_reference():
    cfg = NetworkConfig()
    with torch.device("meta"):
        G, D = Generator(cfg), Discriminator(cfg)
    assert count_params(G) == 23_079_115
    assert count_params(D) == 23_087_249


def test_widths_follow_nf():
    cfg = NetworkConfig()
    assert [cfg.nf(s) for s in range(10)] == [512, 512, 512, 512, 512, 256, 128, 64, 32, 16]
    assert cfg.z_dim == 512


def _conv_outputs(module, run):
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append((tuple(o.shape[1:]), sum(p.numel() for p in m.parameters()))))
             for m in module.modules() if isinstance(m, (EqualizedConv2d, EqualizedLinear))]
    run()
    for h in hooks:
        h.remove()
    return shapes


def test_generator_layer_shapes_match_table_2():
    cfg = NetworkConfig()
    with torch.device("meta"):
        G = Generator(cfg)
        out = _conv_outputs(G, lambda: G(torch.zeros(1, 512)))
    widths = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    expected = [((8192,), 512 * 8192), ((512, 4, 4), 2_359_808)]
    prev = 512
    for r in [8, 16, 32, 64, 128, 256, 512, 1024]:
        c = widths[r]
        expected += [((c, r, r), prev * c * 9 + c), ((c, r, r), c * c * 9 + c)]
        prev = c
    expected.append(((3, 1024, 1024), 16 * 3 + 3))
    assert out == expected
    # the dense 4x4 layer plus its per-channel bias is the table's "Conv 4x4, 4.2M"
    assert 512 * 8192 + 512 == 4_194_816


def test_discriminator_layer_shapes_match_table_2():
    cfg = NetworkConfig()
    with torch.device("meta"):
        D = Discriminator(cfg)
        out = _conv_outputs(D, lambda: D(torch.zeros(4, 3, 1024, 1024)))
    widths = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    expected = [((16, 1024, 1024), 3 * 16 + 16)]
    for r in [1024, 512, 256, 128, 64, 32, 16, 8]:
        c, c_next = widths[r], widths[r // 2]
        expected += [((c, r, r), c * c * 9 + c), ((c_next, r, r), c * c_next * 9 + c_next)]
    expected += [((512, 4, 4), 513 * 512 * 9 + 512), ((512,), 8192 * 512 + 512), ((1,), 513)]
    assert out == expected


def test_equalized_lr_runtime_scaling():
    conv = EqualizedConv2d(64, 32, 3)
    assert abs(conv.weight.std().item() - 1.0) < 0.02 and abs(conv.weight.mean().item()) < 0.02
    assert torch.all(conv.bias == 0)
    x = torch.randn(2, 64, 8, 8)
    ref = F.conv2d(x, conv.weight * math.sqrt(2) / math.sqrt(64 * 9), conv.bias, padding=1)
    assert torch.allclose(conv(x), ref, atol=1e-5)
    with torch.no_grad():
        conv.bias.fill_(0.5)
    assert torch.allclose(conv(x), ref + 0.5, atol=1e-5)   # the bias is not scaled
    lin = EqualizedLinear(100, 10, gain=1.0)
    z = torch.randn(3, 100)
    assert torch.allclose(lin(z), z @ (lin.weight / 10.0).T, atol=1e-5)
    he = EqualizedConv2d(64, 32, 3, use_wscale=False)
    assert he.scale == 1.0 and abs(he.weight.std().item() - math.sqrt(2 / (64 * 9))) < 0.005


@pytest.mark.parametrize("n,res,bias", [(1, 4, True), (1, 4, False), (16, 16, True), (16, 16, False)])
def test_equalized_layers_scale_weight_or_output_alike(n, res, bias):
    """Small outputs are scaled instead of the weight (1x4x4 < 64*9; 16x16x16 >= 64*9): same values and
    gradients either way, for the conv and the dense layer (with and without bias)."""
    torch.manual_seed(0)
    conv = EqualizedConv2d(64, 32, 3, bias=bias).double()
    lin = EqualizedLinear(64, 32, bias=bias).double()
    if bias:
        torch.nn.init.normal_(conv.bias)
        torch.nn.init.normal_(lin.bias)
    x = torch.randn(n, 64, res, res, dtype=torch.float64)
    rows = x.permute(0, 2, 3, 1).reshape(-1, 64)     # [N*H*W, 64]: 16 rows (< 64) or 4096
    for layer, inp, ref_fn in ((conv, x, lambda w, b: F.conv2d(x, w, b, padding=1)),
                               (lin, rows, lambda w, b: F.linear(rows, w, b))):
        y = layer(inp)
        w = layer.weight.detach().clone().requires_grad_()
        ref = ref_fn(w * layer.scale, layer.bias)
        torch.testing.assert_close(y, ref)
        g = torch.randn_like(y)
        (gw,) = torch.autograd.grad(y, layer.weight, g)
        (gw_ref,) = torch.autograd.grad(ref, w, g)
        torch.testing.assert_close(gw, gw_ref)


def test_special_gains():
    G, D = Generator(SMALL), Discriminator(SMALL)
    assert math.isclose(G.blocks["2"].dense.scale, math.sqrt(2) / 4 / math.sqrt(16))
    for k in range(2, 6):
        rgb = G.torgb[str(k)]
        assert math.isclose(rgb.scale, 1.0 / math.sqrt(rgb.weight.shape[1]))
        frgb = D.fromrgb[str(k)]
        assert math.isclose(frgb.scale, math.sqrt(2) / math.sqrt(3))
    last = D.blocks["2"].dense1
    assert math.isclose(last.scale, 1.0 / math.sqrt(last.weight.shape[1]))


def test_pixel_norm_unit_rms():
    x = torch.randn(4, 32, 5, 5) * 7
    y = pixel_norm(x)
    assert torch.allclose(y.square().mean(dim=1), torch.ones(4, 5, 5), atol=1e-5)


def _pixel_norm_plain(x, eps=1e-8):
    return x * torch.rsqrt(x.square().mean(dim=1, keepdim=True) + eps)


@pytest.mark.parametrize("shape,channels_last", [((3, 6, 4, 5), False), ((3, 6, 4, 5), True), ((5, 7), False)])
def test_pixel_norm_training_node_is_the_formula(shape, channels_last):
    """The training path's own backward gives the same gradients as autograd through the formula,
    on NCHW, channels_last and latent [N, z] inputs, and keeps the input's layout."""
    x = torch.randn(*shape, dtype=torch.float64) * 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(pixel_norm, (x,))
    g = torch.randn(*shape, dtype=torch.float64)
    mine, = torch.autograd.grad(pixel_norm(x), x, g)
    plain, = torch.autograd.grad(_pixel_norm_plain(x), x, g)
    assert torch.allclose(mine, plain, atol=1e-12)
    with torch.no_grad():
        assert torch.allclose(pixel_norm(x), _pixel_norm_plain(x), atol=1e-12)
    if channels_last:
        assert pixel_norm(x).is_contiguous(memory_format=torch.channels_last)


def test_pixel_norm_reduced_precision_keeps_dtype_and_accuracy():
    """A bf16 activation is normalized without an fp32 copy, to within bf16's own rounding of the exact
    values: output and gradient against the formula in fp64."""
    x64 = (torch.randn(4, 64, 6, 6, dtype=torch.float64) * 3).contiguous(memory_format=torch.channels_last)
    g64 = torch.randn_like(x64)
    x = x64.bfloat16().requires_grad_(True)
    y = pixel_norm(x)
    assert y.dtype == torch.bfloat16 and y.is_contiguous(memory_format=torch.channels_last)
    y.backward(g64.bfloat16())
    assert x.grad.dtype == torch.bfloat16
    exact = x.detach().double().requires_grad_(True)
    y_ref = _pixel_norm_plain(exact)
    grad_ref, = torch.autograd.grad(y_ref, exact, g64.bfloat16().double())
    ulp = 2.0 ** -8                                   # bf16's spacing relative to a value
    assert ((y.double() - y_ref).abs() <= 2 * ulp * y_ref.abs() + 1e-6).all()
    rounding = (grad_ref - grad_ref.bfloat16().double()).norm() / grad_ref.norm()
    assert (x.grad.double() - grad_ref).norm() / grad_ref.norm() < 3 * rounding
    with torch.no_grad():
        assert torch.equal(pixel_norm(x), y)


def _mbstd_numpy(x, group):
    n, c, h, w = x.shape
    g = min(group, n)
    m = n // g
    out = np.empty((n, 1, h, w), dtype=np.float64)
    for j in range(m):
        members = [i for i in range(n) if i % m == j]
        s = x[members].astype(np.float64)
        std = np.sqrt(((s - s.mean(0)) ** 2).mean(0) + 1e-8)
        for i in members:
            out[i] = std.mean()
    return np.concatenate([x, out], axis=1)


@pytest.mark.parametrize("n", [1, 2, 4, 8, 12, 16])
def test_minibatch_stddev_matches_reference_grouping(n):
    x = torch.randn(n, 5, 3, 3) * torch.arange(1, n + 1).reshape(-1, 1, 1, 1)
    y = minibatch_stddev(x, 4).numpy()
    assert np.allclose(y, _mbstd_numpy(x.numpy(), 4), atol=1e-5)


def _mbstd_plain(x, group):
    n, c, h, w = x.shape
    g = min(group, n)
    y = x.reshape(g, n // g, c, h, w)
    y = (y - y.mean(dim=0)).square().mean(dim=0).add(1e-8).sqrt().mean(dim=(1, 2, 3))
    return torch.cat([x, y.reshape(-1, 1, 1, 1).repeat(g, 1, h, w)], dim=1)


@pytest.mark.parametrize("n,chunks", [(4, 1), (8, 1), (8, 2), (2, 1)])
def test_minibatch_stddev_training_node_is_the_formula_to_second_order(n, chunks):
    """The training path's own backward (one node for the statistic) gives autograd's gradients through
    the formula, first and second order (the penalties differentiate D twice), and passes gradcheck."""
    x = (torch.randn(n, 3, 2, 2, dtype=torch.float64) * 2).requires_grad_(True)
    mine = lambda v: minibatch_stddev(v, 4, chunks)                                        # noqa: E731
    plain = lambda v: torch.cat([_mbstd_plain(p, 4) for p in v.chunk(chunks)])          # noqa: E731
    assert torch.autograd.gradcheck(mine, (x,)) and torch.autograd.gradgradcheck(mine, (x,))
    g = torch.randn(n, 4, 2, 2, dtype=torch.float64)
    (a,), (b,) = (torch.autograd.grad(f(x), x, g, create_graph=True) for f in (mine, plain))
    assert torch.allclose(a, b, atol=1e-12)
    h = torch.randn_like(x)
    (aa,), (bb,) = (torch.autograd.grad(v, x, h) for v in (a, b))
    assert torch.allclose(aa, bb, atol=1e-10)


@pytest.mark.parametrize("channels_last", [False, True])
def test_flatten_channel_major_is_flatten_with_gradients_in_the_input_layout(channels_last):
    """D's head flattens channel-major whatever the layout, to any order of differentiation, and sends
    its gradient back in the layout of its input (mixed layouts put the leaky ReLU before it on a slow path)."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 5, 4, 4, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_(True)
    y = flatten_channel_major(x)
    assert torch.equal(y, x.detach().flatten(1))
    (g,) = torch.autograd.grad((y * torch.arange(80.0, dtype=torch.float64)).sum(), x)
    assert g.is_contiguous(memory_format=layout)
    assert torch.equal(g, torch.arange(80.0, dtype=torch.float64).reshape(1, 5, 4, 4).expand(3, -1, -1, -1))
    f = lambda v: flatten_channel_major(v).square()                                     # noqa: E731
    assert torch.autograd.gradcheck(f, (x,)) and torch.autograd.gradgradcheck(f, (x,))


def test_like_weight_takes_the_layout_of_a_conv_weight():
    x = torch.randn(2, 8, 4, 4)
    cl = EqualizedConv2d(8, 8, 3).to(memory_format=torch.channels_last).weight
    assert like_weight(x, cl).is_contiguous(memory_format=torch.channels_last) and not like_weight(x, cl).is_contiguous()
    assert like_weight(x, EqualizedConv2d(8, 8, 3).weight).is_contiguous()
    assert torch.equal(like_weight(x, cl), x)


def test_networks_give_the_same_results_in_either_layout():
    G, D = _nets()
    G_cl, D_cl = (copy.deepcopy(m).to(memory_format=torch.channels_last) for m in (G, D))
    z = torch.randn(8, SMALL.z_dim)
    for k in (2, 3):
        img = G(z, None, k)
        assert torch.allclose(G_cl(z, None, k), img, atol=1e-5)
        assert torch.allclose(D_cl(img.contiguous(memory_format=torch.channels_last), k), D(img, k), atol=1e-5)


def test_minibatch_stddev_refuses_indivisible_batch():
    with pytest.raises(ValueError, match="not divisible by the group size 4"):
        minibatch_stddev(torch.randn(6, 2, 4, 4), 4)


def _nets(cfg=SMALL):
    torch.manual_seed(1)
    return Generator(cfg).eval(), Discriminator(cfg).eval()


@pytest.mark.parametrize("k", [3, 4, 5])
def test_generator_fade_endpoints(k):
    G, _ = _nets()
    z = torch.randn(4, 16)
    prev = G(z, res_log2=k - 1, alpha=1.0)
    assert torch.allclose(G(z, res_log2=k, alpha=0.0), upsample2x(prev), atol=1e-6)
    new = G(z, res_log2=k, alpha=1.0)
    half = G(z, res_log2=k, alpha=0.3)
    assert torch.allclose(half, 0.7 * upsample2x(prev) + 0.3 * new, atol=1e-5)


@pytest.mark.parametrize("k", [3, 4, 5])
def test_discriminator_fade_endpoints(k):
    _, D = _nets()
    x = torch.randn(4, 3, 2 ** k, 2 ** k)
    assert torch.allclose(D(x, k, 0.0), D(downsample2x(x), k - 1, 1.0), atol=1e-5)


def test_old_branch_not_computed_at_alpha_one():
    G, D = _nets()
    calls = []
    G.torgb["3"].register_forward_hook(lambda *a: calls.append("G"))
    D.fromrgb["3"].register_forward_hook(lambda *a: calls.append("D"))
    G(torch.randn(4, 16), res_log2=4, alpha=1.0)
    D(torch.randn(4, 3, 16, 16), 4, 1.0)
    assert calls == []
    G(torch.randn(4, 16), res_log2=4, alpha=0.5)
    D(torch.randn(4, 3, 16, 16), 4, 0.5)
    assert calls == ["G", "D"]


def test_no_work_above_current_resolution():
    G, D = _nets()
    calls = []
    for m in (G.blocks["5"], G.torgb["5"], D.blocks["5"], D.fromrgb["5"]):
        m.register_forward_hook(lambda *a: calls.append(1))
    G(torch.randn(4, 16), res_log2=4, alpha=0.5)
    D(torch.randn(4, 3, 16, 16), 4, 0.5)
    assert calls == []


def test_reals_fade_matches_generator_blend():
    x = torch.randn(4, 3, 16, 16)
    for alpha in (0.0, 0.25, 1.0):
        coarse = downsample2x(x)             # what the previous level's toRGB would show
        generator_blend = (1 - alpha) * upsample2x(coarse) + alpha * x
        assert torch.allclose(fade_images(x, alpha), generator_blend, atol=1e-6)


def test_lod_to_level():
    assert lod_to_level(0.0, 10) == (10, 1.0)
    assert lod_to_level(3.0, 10) == (7, 1.0)
    k, a = lod_to_level(2.25, 10)
    assert k == 8 and math.isclose(a, 0.75)


def test_label_conditioning_shapes():
    cfg = NetworkConfig(resolution=8, fmap_base=64, fmap_max=8, latent_size=8, label_size=5)
    G, D = Generator(cfg), Discriminator(cfg)
    labels = F.one_hot(torch.tensor([0, 1, 2, 3]), 5).float()
    img = G(torch.randn(4, 8), labels)
    assert img.shape == (4, 3, 8, 8)
    assert D(img).shape == (4, 6)
    with pytest.raises(ValueError, match="label-conditioned"):
        G(torch.randn(4, 8))


def test_grayscale_and_every_resolution():
    for res in (4, 8, 64):
        cfg = NetworkConfig(resolution=res, channels=1, fmap_base=64, fmap_max=8)
        G, D = Generator(cfg), Discriminator(cfg)
        img = G(torch.randn(4, cfg.z_dim))
        assert img.shape == (4, 1, res, res) and D(img).shape == (4, 1)


def test_presets_build():
    low = get_preset("lowcap-128")
    assert [low.net.width(r) for r in (4, 8, 16, 32, 64, 128)] == [512, 512, 256, 128, 64, 32]
    base = get_preset("gulrajani-a")
    cfg = base.net
    cfg.widths = {r: 8 for r in (4, 8, 16, 32, 64, 128)}
    cfg.latent_size = 8
    G, D = Generator(cfg), Discriminator(cfg)
    img = G(torch.randn(4, 8))
    assert img.abs().max() <= 1.0                        # tanh output
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in G.modules())
    assert any(isinstance(m, torch.nn.GroupNorm) for m in D.modules())
    assert D(img).shape == (4, 1)
    assert base.optim.n_critic == 5 and base.sched.lr_base == 1e-4 and base.optim.beta2 == 0.9


def test_discriminator_chunks_keep_separate_minibatch_statistics():
    _, D = _nets()
    a, b = torch.randn(8, 3, 16, 16), torch.randn(8, 3, 16, 16) * 3
    both = D(torch.cat([a, b]), 4, 0.5, chunks=2)
    assert torch.allclose(both, torch.cat([D(a, 4, 0.5), D(b, 4, 0.5)]), atol=1e-5)
    assert not torch.allclose(D(torch.cat([a, b]), 4, 0.5), both, atol=1e-3)


class AtenCalls(TorchDispatchMode):
    """Records (aten op, elements of its first output) of every call."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        first = out[0] if isinstance(out, (tuple, list)) else out
        self.calls.append((func.overloadpacket.__name__, first.numel() if isinstance(first, torch.Tensor) else 0))
        return out

    @property
    def names(self) -> set[str]:
        return {name for name, _ in self.calls}


def test_minibatch_stddev_avoids_mkl_sqrt():
    """torch.sqrt on the CPU runs MKL's vsSqrt, which on some VMs now and then returned 12-bit results on
    one thread (the same run, repeated, then differed); the statistic takes PyTorch's own rsqrt instead,
    and stays the biased std to fp64 rounding."""
    x = (torch.randn(8, 5, 3, 3, dtype=torch.float64) * 2).requires_grad_(True)
    calls = AtenCalls()
    with calls:
        y = minibatch_stddev(x, 4)
        torch.autograd.grad(y.sum(), x, create_graph=True)
    assert "sqrt" not in calls.names
    assert torch.allclose(y[:, -1], _mbstd_plain(x.detach(), 4)[:, -1], rtol=1e-15, atol=0)


@pytest.mark.parametrize("bias", [True, False])
def test_dense_layer_makes_no_pass_over_its_weight_to_scale_it(bias):
    """With a small batch the equalized-LR constant goes on the output, forward and backward: the only
    weight-sized calls are the matmul of the weight's gradient and views (addmm's alpha would add an
    element-wise pass over the gradient, a weight-sized memory pass in every backward)."""
    lin = EqualizedLinear(256, 64, bias=bias)
    x = torch.randn(4, 256, requires_grad=True)
    calls = AtenCalls()
    with calls:
        y = lin(x)
        torch.autograd.grad(y.square().sum(), [x, lin.weight])
    weight_sized = {name for name, numel in calls.calls if numel == lin.weight.numel()}
    assert weight_sized <= {"mm", "t", "view", "transpose", "permute"}, weight_sized
    assert "mm" in weight_sized
