"""Map the variables of a released network onto pggan's G, D and G_ema.

TensorFlow release (``tfutil.Network``, build functions ``G_paper`` / ``D_paper``): named variables in
the reference's layouts (HWIO convolutions, [in, out] dense layers), stored as the unscaled N(0, 1)
parameters of the equalized learning rate, so their runtime constants equal pggan's and the values copy
over after a transpose. A fused ``Conv0_up`` kernel is [k, k, out, in] and used by a transposed
convolution; it equals nearest upsampling followed by a 3x3 convolution with the spatially flipped kernel.
A fused ``Conv1_down`` is a 3x3 convolution and 2x2 average before the bias, which pggan's D offers as
``d_fused_pool``.

Theano release (``network.Network``, Lasagne): an unnamed parameter list in Lasagne's layer order, true
convolutions (flipped kernels), and a stored scalar ``scale`` per layer instead of a fixed constant, so
each weight becomes ``W * scale / c`` with pggan's runtime constant ``c``.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from ..checkpoint import FORMAT_VERSION, load_state, save_generator
from ..config import ConfigError, NetworkConfig, TrainConfig, validate
from ..layers import SQRT2
from ..networks import Discriminator, Generator
from ..util.errors import first_line
from ..util.files import atomic_write
from .unpickle import OfficialPickleError, TFNetwork, TheanoNetwork, load_official

TF_G_DEFAULTS = dict(num_channels=1, resolution=32, label_size=0, fmap_base=8192, fmap_decay=1.0, fmap_max=512,
                     latent_size=None, normalize_latents=True, use_wscale=True, use_pixelnorm=True,
                     pixelnorm_epsilon=1e-8, use_leakyrelu=True, dtype="float32", fused_scale=True, structure=None,
                     is_template_graph=False)
TF_D_DEFAULTS = dict(num_channels=1, resolution=32, label_size=0, fmap_base=8192, fmap_decay=1.0, fmap_max=512,
                     use_wscale=True, mbstd_group_size=4, dtype="float32", fused_scale=True, structure=None,
                     is_template_graph=False)
THEANO_G_DEFAULTS = dict(num_channels=1, resolution=32, label_size=0, fmap_base=4096, fmap_decay=1.0, fmap_max=256,
                         latent_size=None, normalize_latents=True, use_wscale=True, use_pixelnorm=True,
                         use_leakyrelu=True, use_batchnorm=False, tanh_at_end=None)
THEANO_D_DEFAULTS = dict(num_channels=1, resolution=32, label_size=0, fmap_base=4096, fmap_decay=1.0, fmap_max=256,
                         mbstat_func="Tstdeps", mbstat_avg="all", mbdisc_kernels=None, use_wscale=True, use_gdrop=True,
                         use_layernorm=False)
WHOLE_BATCH = 2 ** 30      # Theano's minibatch statistic over the whole batch = one group of any size


def _kwargs(given: dict, defaults: dict, ignored: list) -> dict:
    """The build function's arguments; like the release's build functions (``**kwargs``), arguments
    they do not know are ignored (and reported)."""
    ignored.extend(sorted(set(given) - set(defaults)))
    return {**defaults, **{k: v for k, v in given.items() if k in defaults}}


def _net_config(g: dict, d: dict, **extra) -> NetworkConfig:
    for key in ("num_channels", "resolution", "label_size", "fmap_base", "fmap_decay", "fmap_max"):
        if g[key] != d[key]:
            raise OfficialPickleError(f"G and D disagree on {key} ({g[key]} vs {d[key]})")
    net = NetworkConfig(resolution=int(g["resolution"]), channels=int(g["num_channels"]),
                        label_size=int(g["label_size"]), fmap_base=int(g["fmap_base"]),
                        fmap_decay=float(g["fmap_decay"]), fmap_max=int(g["fmap_max"]),
                        latent_size=int(g["latent_size"] or 0), normalize_latents=bool(g["normalize_latents"]),
                        use_wscale=bool(g["use_wscale"]), g_norm="pixel" if g["use_pixelnorm"] else "none",
                        g_act="lrelu" if g["use_leakyrelu"] else "relu", **extra)
    try:
        validate(TrainConfig(net=net))
    except ConfigError as e:
        raise OfficialPickleError(f"the pickle describes a network pggan cannot build: {first_line(e)}") from None
    return net


def _t(a) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(a, dtype=np.float32)))


class _Vars:
    """The variables of one network; every one must be used exactly once."""

    def __init__(self, variables, what: str):
        self.what = what
        self.vars = {str(n): np.asarray(v) for n, v in variables}
        self.used: set[str] = set()

    def take(self, name: str, shape) -> np.ndarray:
        if name not in self.vars:
            raise OfficialPickleError(f"{self.what}: variable '{name}' is missing from the pickle")
        v = self.vars[name]
        if tuple(v.shape) != tuple(shape):
            raise OfficialPickleError(f"{self.what}: variable '{name}' has shape {tuple(v.shape)}, expected {tuple(shape)}")
        self.used.add(name)
        return v

    def finish(self) -> None:
        left = sorted(set(self.vars) - self.used)
        if left:
            raise OfficialPickleError(f"{self.what}: variable(s) that map to nothing in pggan: {', '.join(left[:8])}"
                                      + (" ..." if len(left) > 8 else ""))


def _hwio(w) -> torch.Tensor:
    return _t(w).permute(3, 2, 0, 1).contiguous()          # [kh, kw, in, out] -> [out, in, kh, kw]


def _tf_generator(v: _Vars, net: NetworkConfig, fused: bool) -> dict:
    R, C, zin = net.resolution_log2, net.channels, net.z_dim + net.label_size
    sd = {}
    ch = net.width(4)
    sd["blocks.2.dense.weight"] = _t(v.take("4x4/Dense/weight", (zin, ch * 16))).T.contiguous()
    sd["blocks.2.bias"] = _t(v.take("4x4/Dense/bias", (ch,)))
    sd["blocks.2.conv.weight"] = _hwio(v.take("4x4/Conv/weight", (3, 3, ch, ch)))
    sd["blocks.2.conv.bias"] = _t(v.take("4x4/Conv/bias", (ch,)))
    for k in range(3, R + 1):
        r, cin, cout = 2 ** k, net.width(2 ** (k - 1)), net.width(2 ** k)
        if fused:   # transposed conv kernel [k, k, out, in] -> upsample + conv with the flipped kernel
            w = _t(v.take(f"{r}x{r}/Conv0_up/weight", (3, 3, cout, cin))).permute(2, 3, 0, 1).flip(2, 3)
            sd[f"blocks.{k}.conv0.weight"] = w.contiguous()
            sd[f"blocks.{k}.conv0.bias"] = _t(v.take(f"{r}x{r}/Conv0_up/bias", (cout,)))
        else:
            sd[f"blocks.{k}.conv0.weight"] = _hwio(v.take(f"{r}x{r}/Conv0/weight", (3, 3, cin, cout)))
            sd[f"blocks.{k}.conv0.bias"] = _t(v.take(f"{r}x{r}/Conv0/bias", (cout,)))
        sd[f"blocks.{k}.conv1.weight"] = _hwio(v.take(f"{r}x{r}/Conv1/weight", (3, 3, cout, cout)))
        sd[f"blocks.{k}.conv1.bias"] = _t(v.take(f"{r}x{r}/Conv1/bias", (cout,)))
    for k in range(2, R + 1):
        ch = net.width(2 ** k)
        sd[f"torgb.{k}.weight"] = _hwio(v.take(f"ToRGB_lod{R - k}/weight", (1, 1, ch, C)))
        sd[f"torgb.{k}.bias"] = _t(v.take(f"ToRGB_lod{R - k}/bias", (C,)))
    return sd


def _tf_discriminator(v: _Vars, net: NetworkConfig, fused: bool) -> dict:
    R, C = net.resolution_log2, net.channels
    sd = {}
    for k in range(2, R + 1):
        ch = net.width(2 ** k)
        sd[f"fromrgb.{k}.weight"] = _hwio(v.take(f"FromRGB_lod{R - k}/weight", (1, 1, C, ch)))
        sd[f"fromrgb.{k}.bias"] = _t(v.take(f"FromRGB_lod{R - k}/bias", (ch,)))
    for k in range(3, R + 1):
        r, cin, cout = 2 ** k, net.width(2 ** k), net.width(2 ** (k - 1))
        sd[f"blocks.{k}.conv0.conv.weight"] = _hwio(v.take(f"{r}x{r}/Conv0/weight", (3, 3, cin, cin)))
        sd[f"blocks.{k}.conv0.conv.bias"] = _t(v.take(f"{r}x{r}/Conv0/bias", (cin,)))
        name = f"{r}x{r}/Conv1_down" if fused else f"{r}x{r}/Conv1"
        sd[f"blocks.{k}.conv1.conv.weight"] = _hwio(v.take(f"{name}/weight", (3, 3, cin, cout)))
        sd[f"blocks.{k}.conv1.conv.bias"] = _t(v.take(f"{name}/bias", (cout,)))
    ch, mb = net.width(4), 1 if net.mbstd_group_size > 1 else 0
    sd["blocks.2.conv.conv.weight"] = _hwio(v.take("4x4/Conv/weight", (3, 3, ch + mb, ch)))
    sd["blocks.2.conv.conv.bias"] = _t(v.take("4x4/Conv/bias", (ch,)))
    sd["blocks.2.dense0.weight"] = _t(v.take("4x4/Dense0/weight", (ch * 16, net.nf(0)))).T.contiguous()
    sd["blocks.2.dense0.bias"] = _t(v.take("4x4/Dense0/bias", (net.nf(0),)))
    sd["blocks.2.dense1.weight"] = _t(v.take("4x4/Dense1/weight", (net.nf(0), 1 + net.label_size))).T.contiguous()
    sd["blocks.2.dense1.bias"] = _t(v.take("4x4/Dense1/bias", (1 + net.label_size,)))
    return sd


def _lod(v: _Vars) -> float:
    return float(v.take("lod", ())) if "lod" in v.vars else 0.0


def convert_tf(G: TFNetwork, D: TFNetwork, Gs: TFNetwork) -> dict:
    for n, fn in ((G, "G_paper"), (D, "D_paper"), (Gs, "G_paper")):
        name = str(n.state.get("build_func_name", ""))
        if name.split(".")[-1] != fn:
            raise OfficialPickleError(f"network '{n.state.get('name')}' is built by '{name}', not the paper's {fn}; "
                                      f"only G_paper/D_paper networks can be converted")
    ignored: list = []
    gk = _kwargs(G.state.get("static_kwargs", {}), TF_G_DEFAULTS, ignored)
    dk = _kwargs(D.state.get("static_kwargs", {}), TF_D_DEFAULTS, ignored)
    if abs(float(gk["pixelnorm_epsilon"]) - 1e-8) > 1e-12:
        raise OfficialPickleError(f"G uses pixelnorm_epsilon {gk['pixelnorm_epsilon']}; pggan's pixel norm uses 1e-8")
    group = int(dk["mbstd_group_size"])
    net = _net_config(gk, dk, mbstd_group_size=group if group > 1 else 0, d_fused_pool=bool(dk["fused_scale"]))
    out, lods = {}, {}
    for key, n, build in (("G", G, _tf_generator), ("D", D, _tf_discriminator), ("G_ema", Gs, _tf_generator)):
        v = _Vars(n.state.get("variables", []), f"{key} ('{n.state.get('name')}')")
        fused = bool(gk["fused_scale"] if build is _tf_generator else dk["fused_scale"])
        out[key] = build(v, net, fused)
        lods[key] = _lod(v)
        v.finish()
    return Converted(net, float(lods["G_ema"]), "tensorflow", sorted(set(ignored)), bool(gk["fused_scale"]),
                     bool(dk["fused_scale"]), out)


# ---- Theano ----------------------------------------------------------------------------------------

class _Params:
    """Lasagne's parameter list, consumed in order."""

    def __init__(self, values, what: str):
        self.values, self.what, self.pos = [np.asarray(v) for v in values], what, 0

    def take(self, name: str, shape) -> np.ndarray:
        if self.pos >= len(self.values):
            raise OfficialPickleError(f"{self.what}: parameter {self.pos} ({name}) is missing: the pickle holds only "
                                      f"{len(self.values)}")
        v = self.values[self.pos]
        if tuple(v.shape) != tuple(shape):
            raise OfficialPickleError(f"{self.what}: parameter {self.pos} ({name}) has shape {tuple(v.shape)}, "
                                      f"expected {tuple(shape)}")
        self.pos += 1
        return v

    def layer(self, name: str, shape, wscale: bool, bias_len: int):
        """(W * scale, bias) of a layer and its WScale layer (or a plain layer's W and b)."""
        w = self.take(f"{name}.W", shape).astype(np.float64)
        if wscale:
            w = w * float(self.take(f"{name}.scale", ()))
        return w, self.take(f"{name}.b", (bias_len,))

    def finish(self) -> None:
        if self.pos != len(self.values):
            raise OfficialPickleError(f"{self.what}: {len(self.values) - self.pos} parameter(s) left over that map "
                                      f"to nothing in pggan (another architecture?)")


def _scaled(w: np.ndarray, c: float) -> torch.Tensor:
    """pggan stores w / c and multiplies by c at run time."""
    return _t(w / c)


def _theano_generator(p: _Params, net: NetworkConfig) -> dict:
    R, C, ws = net.resolution_log2, net.channels, net.use_wscale
    c = (lambda gain, fan_in: gain / math.sqrt(fan_in)) if ws else (lambda gain, fan_in: 1.0)
    sd = {}
    ch, zin = net.width(4), net.z_dim + net.label_size
    w, b = p.layer("G1a", (ch, zin, 4, 4), ws, ch)                 # full conv of the 1x1 latent = dense
    sd["blocks.2.dense.weight"] = _scaled(w.transpose(0, 2, 3, 1).reshape(ch * 16, zin), c(SQRT2 / 4, zin))
    sd["blocks.2.bias"] = _t(b)
    w, b = p.layer("G1b", (ch, ch, 3, 3), ws, ch)
    sd["blocks.2.conv.weight"], sd["blocks.2.conv.bias"] = _scaled(w[:, :, ::-1, ::-1], c(SQRT2, ch * 9)), _t(b)
    for k in range(3, R + 1):
        cin, cout = net.width(2 ** (k - 1)), net.width(2 ** k)
        for conv, name, i in (("conv0", f"G{k - 1}a", cin), ("conv1", f"G{k - 1}b", cout)):
            w, b = p.layer(name, (cout, i, 3, 3), ws, cout)           # true convolution: flip for PyTorch
            sd[f"blocks.{k}.{conv}.weight"] = _scaled(w[:, :, ::-1, ::-1], c(SQRT2, i * 9))
            sd[f"blocks.{k}.{conv}.bias"] = _t(b)
    for i in range(R - 1):                                          # Glod0 is the full resolution
        k = R - i
        ch = net.width(2 ** k)
        w, b = p.layer(f"Glod{i}", (ch, C), ws, C)
        sd[f"torgb.{k}.weight"], sd[f"torgb.{k}.bias"] = _scaled(w.T[:, :, None, None], c(1.0, ch)), _t(b)
    return sd


def _theano_discriminator(p: _Params, net: NetworkConfig) -> dict:
    R, C, ws = net.resolution_log2, net.channels, net.use_wscale
    c = (lambda gain, fan_in: gain / math.sqrt(fan_in)) if ws else (lambda gain, fan_in: 1.0)
    sd = {}

    def from_rgb(k):
        ch = net.width(2 ** k)
        w, b = p.layer(f"D{k - 1}x", (C, ch), ws, ch)
        sd[f"fromrgb.{k}.weight"], sd[f"fromrgb.{k}.bias"] = _scaled(w.T[:, :, None, None], c(SQRT2, C)), _t(b)

    from_rgb(R)
    for k in range(R, 2, -1):
        cin, cout = net.width(2 ** k), net.width(2 ** (k - 1))
        for conv, name, o in (("conv0", f"D{k - 1}b", cin), ("conv1", f"D{k - 1}a", cout)):
            w, b = p.layer(name, (o, cin, 3, 3), ws, o)
            sd[f"blocks.{k}.{conv}.conv.weight"] = _scaled(w[:, :, ::-1, ::-1], c(SQRT2, cin * 9))
            sd[f"blocks.{k}.{conv}.conv.bias"] = _t(b)
        from_rgb(k - 1)
    ch, mb = net.width(4), 1 if net.mbstd_group_size else 0
    w, b = p.layer("D1b", (ch, ch + mb, 3, 3), ws, ch)
    sd["blocks.2.conv.conv.weight"] = _scaled(w[:, :, ::-1, ::-1], c(SQRT2, (ch + mb) * 9))
    sd["blocks.2.conv.conv.bias"] = _t(b)
    nf0 = net.nf(0)
    w, b = p.layer("D1a", (nf0, ch, 4, 4), ws, nf0)                  # valid 4x4 true conv = dense on the flip
    sd["blocks.2.dense0.weight"] = _scaled(w[:, :, ::-1, ::-1].reshape(nf0, ch * 16), c(SQRT2, ch * 16))
    sd["blocks.2.dense0.bias"] = _t(b)
    w, b = p.layer("Dscores", (nf0, 1), ws, 1)
    rows, biases = [w.T], [b]
    if net.label_size:
        w, b = p.layer("Dlabels", (nf0, net.label_size), ws, net.label_size)
        rows.append(w.T)
        biases.append(b)
    sd["blocks.2.dense1.weight"] = _scaled(np.concatenate(rows), c(1.0, nf0))
    sd["blocks.2.dense1.bias"] = _t(np.concatenate(biases))
    return sd


def convert_theano(G: TheanoNetwork, D: TheanoNetwork, Gs: TheanoNetwork) -> dict:
    specs = []
    for n, fn in ((G, "G_paper"), (D, "D_paper"), (Gs, "G_paper")):
        spec = dict(n.state.get("build_func_spec", {}))
        if spec.pop("func", None) != fn:
            raise OfficialPickleError(f"a Theano network is not built by {fn}; only G_paper/D_paper can be converted")
        specs.append(spec)
    ignored: list = []
    gk = _kwargs(specs[0], THEANO_G_DEFAULTS, ignored)
    dk = _kwargs(specs[1], THEANO_D_DEFAULTS, ignored)
    refuse = [("G use_batchnorm", gk["use_batchnorm"]), ("D use_layernorm", dk["use_layernorm"]),
              ("D mbdisc_kernels", dk["mbdisc_kernels"]), ("G tanh_at_end other than 1", gk["tanh_at_end"] not in (None, 1, 1.0)),
              ("D mbstat_func other than Tstdeps", dk["mbstat_func"] != "Tstdeps"),
              ("D mbstat_avg other than 'all'", dk["mbstat_avg"] not in ("all", None))]
    bad = [what for what, flag in refuse if flag]
    if bad:
        raise OfficialPickleError(f"this Theano network uses {bad[0]}, which pggan does not build")
    if dk["use_wscale"] != gk["use_wscale"]:
        raise OfficialPickleError("G and D disagree on use_wscale; pggan uses one setting for both")
    net = _net_config(gk, dk, mbstd_group_size=WHOLE_BATCH if dk["mbstat_avg"] == "all" else 0,
                      g_out="tanh" if gk["tanh_at_end"] is not None else "linear",
                      normalize_labels=False)      # the Theano G normalises the latent, then appends the label
    out = {}
    for key, n, build in (("G", G, _theano_generator), ("D", D, _theano_discriminator), ("G_ema", Gs, _theano_generator)):
        p = _Params(n.state.get("param_values", []), key)
        out[key] = build(p, net)
        p.finish()
    lod = float(np.asarray(Gs.state.get("toplevel_params", {}).get("cur_lod", 0.0)))
    return Converted(net, lod, "theano", sorted(set(ignored)), False, False, out)


@dataclass
class Converted:
    """A released pickle read into pggan's terms."""
    net: NetworkConfig
    lod: float               # the level of detail the networks were saved at (0 = fully grown)
    source: str              # tensorflow or theano
    ignored: list            # build arguments the release's own code ignores too
    fused_G: bool            # G's upsampling conv was fused (the TF release's fused_scale)
    fused_D: bool
    states: dict             # {"G" | "D" | "G_ema": state dict}


def convert(nets) -> Converted:
    if len(nets) != 3:
        raise OfficialPickleError(f"a released pickle holds three networks (G, D, Gs); this one holds {len(nets)}")
    kinds = {type(n) for n in nets}
    if kinds == {TFNetwork}:
        return convert_tf(*nets)
    if kinds == {TheanoNetwork}:
        return convert_theano(*nets)
    raise OfficialPickleError("the pickle mixes TensorFlow and Theano networks")


def build_networks(result: Converted) -> dict:
    """pggan G, D and G_ema holding the converted weights."""
    nets = {}
    for key, cls in (("G", Generator), ("D", Discriminator), ("G_ema", Generator)):
        m = cls(result.net)
        load_state(m, result.states[key], key, "the converted pickle")
        nets[key] = m.eval().requires_grad_(False)
    return nets


def convert_file(pkl: str, out: str) -> Converted:
    """Read a released pickle and write ``out``: a .safetensors generator (Gs) or a .pt file with G, D
    and G_ema that pggan's commands read like a checkpoint."""
    if not out.endswith((".pt", ".safetensors")):
        raise OfficialPickleError(f"'{out}': the output must end in .safetensors (the generator) or .pt (G, D, G_ema)")
    result = convert(load_official(pkl))
    nets = build_networks(result)
    info = {"converted_from": os.path.abspath(pkl), "source": result.source, "lod": result.lod,
            "fused_G": result.fused_G, "fused_D": result.fused_D}
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if out.endswith(".safetensors"):
        save_generator(out, nets["G_ema"], result.net, info)
    else:
        cfg = TrainConfig(preset="converted", net=result.net)
        payload = {"kind": "pggan-checkpoint", "format_version": FORMAT_VERSION, "config": cfg.to_json(),
                   "cur_nimg": 0, "converted": json.dumps(info),
                   **{k: {n: t.contiguous() for n, t in m.state_dict().items()} for k, m in nets.items()}}
        atomic_write(out, lambda f: torch.save(payload, f))
    return result
