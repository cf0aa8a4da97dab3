"""The authors' released pickles: written here in their exact format from known arrays, converted, and
checked against independent NumPy implementations of the reference networks in their own layouts."""
import math
import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from pggan.cli import main
from pggan.official.convert import build_networks, convert
from pggan.official.unpickle import OfficialPickleError, load_official

SQ2 = math.sqrt(2.0)


# ---- NumPy reference of the TensorFlow release (NCHW activations, HWIO kernels) -------------------------

def lrelu(x):
    return np.where(x >= 0, x, 0.2 * x)


def pn(x):
    return x / np.sqrt(np.mean(x ** 2, axis=1, keepdims=True) + 1e-8)


def he(gain, fan_in):
    return gain / math.sqrt(fan_in)


def conv_same(x, w):
    """Cross-correlation, 'SAME' padding, stride 1; w [kh, kw, in, out]."""
    k = w.shape[0]
    p = (k - 1) // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    n, _, h, wd = x.shape
    out = np.zeros((n, w.shape[3], h, wd))
    for a in range(k):
        for b in range(k):
            out += np.einsum("nchw,co->nohw", xp[:, :, a:a + h, b:b + wd], w[a, b])
    return out


def fused_kernel(w):
    """The release's 4x4 kernel: the 3x3 kernel padded by one and summed over the four 1-pixel shifts."""
    wp = np.pad(w, ((1, 1), (1, 1), (0, 0), (0, 0)))
    return wp[1:, 1:] + wp[:-1, 1:] + wp[1:, :-1] + wp[:-1, :-1]


def conv_transpose_up(x, w):
    """tf.nn.conv2d_transpose, stride 2, 'SAME', output 2H x 2W; w [4, 4, out, in]: each input pixel i
    adds w[a] * x[i] at output position 2 i + a - 1 (the adjoint of the stride-2 conv below)."""
    n, c, h, wd = x.shape
    out = np.zeros((n, w.shape[2], 2 * h + 2, 2 * wd + 2))        # one pixel of margin each side
    for a in range(4):
        for b in range(4):
            out[:, :, a:a + 2 * h:2, b:b + 2 * wd:2] += np.einsum("nchw,oc->nohw", x, w[a, b])
    return out[:, :, 1:-1, 1:-1]


def conv_stride2(x, w):
    """tf.nn.conv2d, stride 2, 'SAME' on an even size with a 4x4 kernel: one pixel of padding each side."""
    n, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, w.shape[3], h // 2, wd // 2))
    for a in range(4):
        for b in range(4):
            out += np.einsum("nchw,co->nohw", xp[:, :, a:a + h:2, b:b + wd:2], w[a, b])
    return out


def tf_generator(v, z, labels, R, fused):
    x = pn(np.concatenate([z, labels], 1) if labels is not None else z)
    w = v["4x4/Dense/weight"]
    ch = v["4x4/Dense/bias"].shape[0]
    x = (x @ (w * he(SQ2 / 4, w.shape[0]))).reshape(-1, ch, 4, 4)
    x = pn(lrelu(x + v["4x4/Dense/bias"][None, :, None, None]))
    w = v["4x4/Conv/weight"]
    x = pn(lrelu(conv_same(x, w * he(SQ2, 9 * w.shape[2])) + v["4x4/Conv/bias"][None, :, None, None]))
    for k in range(3, R + 1):
        r = 2 ** k
        if fused:
            w = v[f"{r}x{r}/Conv0_up/weight"]
            y = conv_transpose_up(x, fused_kernel(w * he(SQ2, 9 * x.shape[1]))) + v[f"{r}x{r}/Conv0_up/bias"][None, :, None, None]
        else:
            up = x.repeat(2, axis=2).repeat(2, axis=3)
            w = v[f"{r}x{r}/Conv0/weight"]
            y = conv_same(up, w * he(SQ2, 9 * w.shape[2])) + v[f"{r}x{r}/Conv0/bias"][None, :, None, None]
        x = pn(lrelu(y))
        w = v[f"{r}x{r}/Conv1/weight"]
        x = pn(lrelu(conv_same(x, w * he(SQ2, 9 * w.shape[2])) + v[f"{r}x{r}/Conv1/bias"][None, :, None, None]))
    w = v["ToRGB_lod0/weight"]
    return conv_same(x, w * he(1.0, w.shape[2])) + v["ToRGB_lod0/bias"][None, :, None, None]


def tf_discriminator(v, images, R, fused, group=4):
    w = v["FromRGB_lod0/weight"]
    x = lrelu(conv_same(images, w * he(SQ2, w.shape[2])) + v["FromRGB_lod0/bias"][None, :, None, None])
    for k in range(R, 2, -1):
        r = 2 ** k
        w = v[f"{r}x{r}/Conv0/weight"]
        x = lrelu(conv_same(x, w * he(SQ2, 9 * w.shape[2])) + v[f"{r}x{r}/Conv0/bias"][None, :, None, None])
        if fused:
            w = v[f"{r}x{r}/Conv1_down/weight"]
            x = conv_stride2(x, fused_kernel(w * he(SQ2, 9 * w.shape[2])) * 0.25)
            x = lrelu(x + v[f"{r}x{r}/Conv1_down/bias"][None, :, None, None])
        else:
            w = v[f"{r}x{r}/Conv1/weight"]
            x = lrelu(conv_same(x, w * he(SQ2, 9 * w.shape[2])) + v[f"{r}x{r}/Conv1/bias"][None, :, None, None])
            n, c, h, wd = x.shape
            x = x.reshape(n, c, h // 2, 2, wd // 2, 2).mean(axis=(3, 5))
    n, c, h, wd = x.shape
    g = min(group, n)
    y = x.reshape(g, -1, c, h, wd)
    y = np.sqrt(np.mean((y - y.mean(0)) ** 2, axis=0) + 1e-8).mean(axis=(1, 2, 3))
    x = np.concatenate([x, np.tile(y.reshape(-1, 1, 1, 1), (g, 1, h, wd))], 1)
    w = v["4x4/Conv/weight"]
    x = lrelu(conv_same(x, w * he(SQ2, 9 * w.shape[2])) + v["4x4/Conv/bias"][None, :, None, None])
    x = x.reshape(n, -1)
    w = v["4x4/Dense0/weight"]
    x = lrelu(x @ (w * he(SQ2, w.shape[0])) + v["4x4/Dense0/bias"])
    w = v["4x4/Dense1/weight"]
    return x @ (w * he(1.0, w.shape[0])) + v["4x4/Dense1/bias"]


# ---- pickles in the released format ---------------------------------------------------------------

def nf(stage, base=64, fmax=64):
    return min(int(base / 2 ** stage), fmax)


def tf_variables(R=4, C=3, latent=24, labels=0, g_fused=True, d_fused=True, seed=0):
    rng = np.random.default_rng(seed)
    rnd = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    bias = lambda n: (0.1 * rng.standard_normal(n)).astype(np.float32)  # noqa: E731
    g = {"4x4/Dense/weight": rnd(latent + labels, nf(1) * 16), "4x4/Dense/bias": bias(nf(1)),
         "4x4/Conv/weight": rnd(3, 3, nf(1), nf(1)), "4x4/Conv/bias": bias(nf(1))}
    for k in range(3, R + 1):
        r, cin, cout = 2 ** k, nf(k - 2), nf(k - 1)
        if g_fused:
            g[f"{r}x{r}/Conv0_up/weight"], g[f"{r}x{r}/Conv0_up/bias"] = rnd(3, 3, cout, cin), bias(cout)
        else:
            g[f"{r}x{r}/Conv0/weight"], g[f"{r}x{r}/Conv0/bias"] = rnd(3, 3, cin, cout), bias(cout)
        g[f"{r}x{r}/Conv1/weight"], g[f"{r}x{r}/Conv1/bias"] = rnd(3, 3, cout, cout), bias(cout)
    for k in range(2, R + 1):
        g[f"ToRGB_lod{R - k}/weight"], g[f"ToRGB_lod{R - k}/bias"] = rnd(1, 1, nf(k - 1), C), bias(C)
    g["lod"] = np.float32(0.0)
    d = {}
    for k in range(2, R + 1):
        d[f"FromRGB_lod{R - k}/weight"], d[f"FromRGB_lod{R - k}/bias"] = rnd(1, 1, C, nf(k - 1)), bias(nf(k - 1))
    for k in range(R, 2, -1):
        r = 2 ** k
        d[f"{r}x{r}/Conv0/weight"], d[f"{r}x{r}/Conv0/bias"] = rnd(3, 3, nf(k - 1), nf(k - 1)), bias(nf(k - 1))
        name = f"{r}x{r}/Conv1_down" if d_fused else f"{r}x{r}/Conv1"
        d[f"{name}/weight"], d[f"{name}/bias"] = rnd(3, 3, nf(k - 1), nf(k - 2)), bias(nf(k - 2))
    d["4x4/Conv/weight"], d["4x4/Conv/bias"] = rnd(3, 3, nf(1) + 1, nf(1)), bias(nf(1))
    d["4x4/Dense0/weight"], d["4x4/Dense0/bias"] = rnd(nf(1) * 16, nf(0)), bias(nf(0))
    d["4x4/Dense1/weight"], d["4x4/Dense1/bias"] = rnd(nf(0), 1 + labels), bias(1 + labels)
    d["lod"] = np.float32(0.0)
    return g, d


def _fake_class(module, name):
    """A class that pickles under ``module.name`` as the released files do; gone again after dumping."""
    cls = type(name, (), {"__getstate__": lambda self: self.state, "__reduce_ex__": object.__reduce_ex__})
    cls.__module__, cls.__qualname__ = module, name
    return cls


def write_pickle(path, objs_states, module="tfutil", protocol=4):
    mod = types.ModuleType(module)
    cls = _fake_class(module, "Network")
    mod.Network = cls
    sys.modules[module] = mod
    try:
        objs = []
        for state in objs_states:
            o = cls.__new__(cls)
            o.state = state
            objs.append(o)
        with open(path, "wb") as f:
            pickle.dump(tuple(objs), f, protocol=protocol)
    finally:
        del sys.modules[module]           # loading must not depend on any such module
    return str(path)


def tf_pickle(path, g, d, R=4, C=3, latent=24, labels=0, g_fused=True, d_fused=True, gs=None):
    common = dict(num_channels=C, resolution=2 ** R, label_size=labels, fmap_base=64, fmap_max=64)
    src = "import os\nos.system('touch SHOULD_NOT_EXIST')\n"      # a released file carries its source; never run
    gk = dict(common, latent_size=latent, fused_scale=g_fused, func="networks.G_paper")   # extras are ignored
    dk = dict(common, fused_scale=d_fused, mbstd_group_size=4)

    def state(name, func, kwargs, variables):
        return {"version": 2, "name": name, "static_kwargs": kwargs, "build_module_src": src,
                "build_func_name": f"networks.{func}", "variables": list(variables.items())}
    return write_pickle(path, [state("G", "G_paper", gk, g), state("D", "D_paper", dk, d),
                               state("Gs", "G_paper", gk, gs if gs is not None else g)])


# ---- tests ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("g_fused,d_fused,labels", [(True, True, 0), (False, False, 0), (True, False, 3)])
def test_tf_pickle_converts_exactly(tmp_path, g_fused, d_fused, labels):
    g, d = tf_variables(labels=labels, g_fused=g_fused, d_fused=d_fused)
    gs = {k: (v * 0.5 if v.ndim else v) for k, v in g.items()}      # Gs differs from G
    path = tf_pickle(tmp_path / "net.pkl", g, d, labels=labels, g_fused=g_fused, d_fused=d_fused, gs=gs)
    result = convert(load_official(path))
    assert not os.path.exists("SHOULD_NOT_EXIST") and result.ignored == ["func"]
    net = result.net
    assert (net.resolution, net.z_dim, net.label_size, net.d_fused_pool) == (16, 24, labels, d_fused)
    nets = build_networks(result)
    rng = np.random.default_rng(1)
    z = rng.standard_normal((8, 24))
    lab = np.eye(labels)[np.arange(8) % labels] if labels else None
    for key, v in (("G", g), ("G_ema", gs)):
        want = tf_generator({k: x.astype(np.float64) for k, x in v.items()}, z, lab, 4, g_fused)
        with torch.no_grad():
            got = nets[key](torch.from_numpy(z).float(), None if lab is None else torch.from_numpy(lab).float())
        assert np.abs(got.numpy() - want).max() < 1e-4 * max(1.0, np.abs(want).max()), key
    images = rng.standard_normal((8, 3, 16, 16))
    want = tf_discriminator({k: x.astype(np.float64) for k, x in d.items()}, images, 4, d_fused)
    with torch.no_grad():
        got = nets["D"](torch.from_numpy(images).float()).numpy()
    assert got.shape == (8, 1 + labels)
    assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())


def test_fused_and_plain_generators_differ_only_in_layout(tmp_path):
    """The same trained weights stored both ways (flipped, transposed) convert to the same network."""
    g, d = tf_variables(g_fused=False, d_fused=False)
    fused = dict(g)
    for k in (3, 4):
        r = 2 ** k
        w = fused.pop(f"{r}x{r}/Conv0/weight")
        fused[f"{r}x{r}/Conv0_up/weight"] = np.ascontiguousarray(w[::-1, ::-1].transpose(0, 1, 3, 2))
        fused[f"{r}x{r}/Conv0_up/bias"] = fused.pop(f"{r}x{r}/Conv0/bias")
    a = build_networks(convert(load_official(tf_pickle(tmp_path / "a.pkl", g, d, g_fused=False, d_fused=False))))
    b = build_networks(convert(load_official(tf_pickle(tmp_path / "b.pkl", fused, d, g_fused=True, d_fused=False))))
    z = torch.randn(4, 24)
    assert torch.allclose(a["G"](z), b["G"](z), atol=1e-5)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch EVIL_RAN",))


def test_refuses_foreign_globals_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for payload in (_Evil(), (1, _Evil())):
        (tmp_path / "evil.pkl").write_bytes(pickle.dumps(payload))
        with pytest.raises(OfficialPickleError, match=r"refused: .*system"):
            load_official(str(tmp_path / "evil.pkl"))
    (tmp_path / "eval.pkl").write_bytes(pickle.dumps(eval))
    with pytest.raises(OfficialPickleError, match="builtins.eval"):
        load_official(str(tmp_path / "eval.pkl"))
    assert not (tmp_path / "EVIL_RAN").exists()
    r = CliRunner().invoke(main, ["convert-official", str(tmp_path / "evil.pkl"), str(tmp_path / "out.pt")])
    assert r.exit_code == 1 and "refused" in r.output and not (tmp_path / "out.pt").exists()
    (tmp_path / "junk.pkl").write_bytes(b"\x80\x04not really")
    with pytest.raises(OfficialPickleError, match="not a readable network pickle"):
        load_official(str(tmp_path / "junk.pkl"))


def test_missing_or_misnamed_variables_are_named(tmp_path):
    g, d = tf_variables()
    del g["8x8/Conv1/bias"]
    with pytest.raises(OfficialPickleError, match="'8x8/Conv1/bias' is missing"):
        convert(load_official(tf_pickle(tmp_path / "a.pkl", g, d)))
    g, d = tf_variables()
    d["16x16/Conv9/weight"] = d.pop("16x16/Conv0/weight")
    with pytest.raises(OfficialPickleError, match="16x16/Conv0/weight"):
        convert(load_official(tf_pickle(tmp_path / "b.pkl", g, d)))
    g, d = tf_variables()
    g["16x16/Extra/weight"] = np.zeros(3, np.float32)
    with pytest.raises(OfficialPickleError, match="map to nothing in pggan: 16x16/Extra/weight"):
        convert(load_official(tf_pickle(tmp_path / "c.pkl", g, d)))
    g, d = tf_variables()
    g["4x4/Conv/weight"] = g["4x4/Conv/weight"][:, :, :5]
    with pytest.raises(OfficialPickleError, match=r"'4x4/Conv/weight' has shape \(3, 3, 5, 32\)"):
        convert(load_official(tf_pickle(tmp_path / "d.pkl", g, d)))


def test_convert_command_feeds_generate_and_load_generator(tmp_path):
    from PIL import Image

    from pggan.api import latents_for_seeds, load_generator

    g, d = tf_variables()
    pkl = tf_pickle(tmp_path / "karras2018iclr-test.pkl", g, d)
    for out in ("gen.safetensors", "nets.pt"):
        r = CliRunner().invoke(main, ["convert-official", pkl, str(tmp_path / out)])
        assert r.exit_code == 0, r.output
        assert "tensorflow networks: 16x16" in r.output
    z = latents_for_seeds([0, 1], 24).double().numpy()
    want = tf_generator({k: x.astype(np.float64) for k, x in g.items()}, z, None, 4, True)
    want8 = np.clip(np.round((want + 1) * 127.5), 0, 255).transpose(0, 2, 3, 1)
    for out in ("gen.safetensors", "nets.pt"):
        images = load_generator(str(tmp_path / out)).generate(seeds=[0, 1]).images
        assert np.abs(images.astype(int) - want8).max() <= 1
    r = CliRunner().invoke(main, ["generate", "--network", str(tmp_path / "nets.pt"), "--seeds", "0-1",
                                  "--outdir", str(tmp_path / "img")])
    assert r.exit_code == 0, r.output
    assert np.abs(np.asarray(Image.open(tmp_path / "img" / "seed0000.png")).astype(int) - want8[0]).max() <= 1
    r = CliRunner().invoke(main, ["train", "--resume", str(tmp_path / "nets.pt")])
    assert r.exit_code == 1 and "without training state" in r.output
    r = CliRunner().invoke(main, ["convert-official", pkl, str(tmp_path / "x.onnx")])
    assert r.exit_code == 1 and "must end in .safetensors" in r.output


# ---- the Theano release ------------------------------------------------------------------------------

def true_conv_same(x, k):
    """Lasagne's default (flip_filters=True) 3x3 convolution with padding 1; k [out, in, 3, 3]:
    out[p] = sum_q x[p - q + 1] k[q]."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, k.shape[0], h, w))
    for a in range(3):
        for b in range(3):
            out += np.einsum("nchw,oc->nohw", xp[:, :, 2 - a:2 - a + h, 2 - b:2 - b + w], k[:, :, a, b])
    return out


def theano_params(R=4, C=3, latent=24, seed=0, labels=0):
    """Parameters in Lasagne's order, with WScale scales, and the NumPy networks that use them."""
    rng = np.random.default_rng(seed)
    gp, dp = [], []

    def layer(store, shape, n_out):
        w, s, b = rng.standard_normal(shape).astype(np.float32), np.float32(rng.uniform(0.02, 0.2)), \
            (0.1 * rng.standard_normal(n_out)).astype(np.float32)
        store += [w, np.asarray(s), b]
        return w.astype(np.float64) * float(s), b.astype(np.float64)

    G = {"G1a": layer(gp, (nf(1), latent + labels, 4, 4), nf(1)), "G1b": layer(gp, (nf(1), nf(1), 3, 3), nf(1))}
    for i in range(2, R):
        G[f"G{i}a"] = layer(gp, (nf(i), nf(i - 1), 3, 3), nf(i))
        G[f"G{i}b"] = layer(gp, (nf(i), nf(i), 3, 3), nf(i))
    G["Glod0"] = layer(gp, (nf(R - 1), C), C)
    for i in range(1, R - 1):
        G[f"Glod{i}"] = layer(gp, (nf(R - 1 - i), C), C)
    D = {f"D{R - 1}x": layer(dp, (C, nf(R - 1)), nf(R - 1))}
    for i in range(R - 1, 1, -1):
        D[f"D{i}b"] = layer(dp, (nf(i), nf(i), 3, 3), nf(i))
        D[f"D{i}a"] = layer(dp, (nf(i - 1), nf(i), 3, 3), nf(i - 1))
        D[f"D{i - 1}x"] = layer(dp, (C, nf(i - 1)), nf(i - 1))
    D["D1b"] = layer(dp, (nf(1), nf(1) + 1, 3, 3), nf(1))
    D["D1a"] = layer(dp, (nf(0), nf(1), 4, 4), nf(0))
    D["Dscores"] = layer(dp, (nf(0), 1), 1)
    if labels:
        D["Dlabels"] = layer(dp, (nf(0), labels), labels)
    return gp, dp, G, D


def theano_generator(G, z, R, labels=None):
    x = pn(z)                                                                  # the latent alone, then the label
    if labels is not None:
        x = np.concatenate([x, labels], 1)
    w, b = G["G1a"]
    x = pn(lrelu(np.einsum("ni,oiyx->noyx", x, w) + b[None, :, None, None]))     # full conv of a 1x1 input
    w, b = G["G1b"]
    x = pn(lrelu(true_conv_same(x, w) + b[None, :, None, None]))
    for i in range(2, R):
        x = x.repeat(2, axis=2).repeat(2, axis=3)
        for name in (f"G{i}a", f"G{i}b"):
            w, b = G[name]
            x = pn(lrelu(true_conv_same(x, w) + b[None, :, None, None]))
    w, b = G["Glod0"]
    return np.einsum("nchw,co->nohw", x, w) + b[None, :, None, None]


def theano_discriminator(D, images, R):
    w, b = D[f"D{R - 1}x"]
    x = lrelu(np.einsum("nchw,co->nohw", images, w) + b[None, :, None, None])
    for i in range(R - 1, 1, -1):
        for name in (f"D{i}b", f"D{i}a"):
            w, b = D[name]
            x = lrelu(true_conv_same(x, w) + b[None, :, None, None])
        n, c, h, wd = x.shape
        x = x.reshape(n, c, h // 2, 2, wd // 2, 2).mean(axis=(3, 5))
    stat = np.sqrt(np.mean((x - x.mean(0)) ** 2, axis=0) + 1e-8).mean()       # over the whole minibatch
    x = np.concatenate([x, np.full((x.shape[0], 1, 4, 4), stat)], 1)
    w, b = D["D1b"]
    x = lrelu(true_conv_same(x, w) + b[None, :, None, None])
    w, b = D["D1a"]                                                            # valid 4x4 true conv
    x = lrelu(np.einsum("nchw,ochw->no", x, w[:, :, ::-1, ::-1]) + b)
    w, b = D["Dscores"]
    out = x @ w + b
    if "Dlabels" in D:
        w, b = D["Dlabels"]
        out = np.concatenate([out, x @ w + b], 1)
    return out


@pytest.mark.parametrize("labels", [0, 3])
def test_theano_pickle_converts_exactly(tmp_path, labels):
    gp, dp, G, D = theano_params(labels=labels)
    spec = dict(num_channels=3, resolution=16, label_size=labels, fmap_base=64, fmap_max=64, latent_size=24)
    src = "raise SystemExit('never run')"
    states = [{"build_func_spec": dict(spec, func="G_paper"), "build_module_src": src, "param_values": gp,
               "toplevel_params": {"cur_lod": np.float32(0)}},
              {"build_func_spec": {k: v for k, v in dict(spec, func="D_paper").items() if k != "latent_size"},
               "build_module_src": src, "param_values": dp, "toplevel_params": {"cur_lod": np.float32(0)}},
              {"build_func_spec": dict(spec, func="G_paper"), "build_module_src": src, "param_values": gp,
               "toplevel_params": {"cur_lod": np.float32(0)}}]
    path = write_pickle(tmp_path / "theano.pkl", states, module="network", protocol=2)
    result = convert(load_official(path))
    assert result.source == "theano"
    nets = build_networks(result)
    rng = np.random.default_rng(3)
    z = rng.standard_normal((6, 24))
    lab = np.eye(labels)[np.arange(6) % labels] if labels else None
    with torch.no_grad():
        got = nets["G_ema"](torch.from_numpy(z).float(), None if lab is None else torch.from_numpy(lab).float()).numpy()
    want = theano_generator(G, z, 4, lab)
    assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())
    images = rng.standard_normal((6, 3, 16, 16))
    with torch.no_grad():
        got = nets["D"](torch.from_numpy(images).float()).numpy()
    want = theano_discriminator(D, images, 4)
    assert np.abs(got - want).max() < 1e-4 * max(1.0, np.abs(want).max())
    short = dict(states[0], param_values=gp[:-1])
    path = write_pickle(tmp_path / "short.pkl", [short, states[1], states[2]], module="network", protocol=2)
    with pytest.raises(OfficialPickleError, match="is missing"):
        convert(load_official(path))
