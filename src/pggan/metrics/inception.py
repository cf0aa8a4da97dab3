"""Inception-v3 for FID and IS, built to load the weights of the widely used PyTorch port of the
TensorFlow FID Inception (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``), so that values are
comparable with published ones. The weights cannot be downloaded here; the user gives the file.

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

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"
ENV_VAR = "PGGAN_INCEPTION"


class InceptionWeightsError(PgganError, ValueError):
    """The Inception weights are missing or do not fit; the message says what to do."""


def default_weights_path() -> str:
    cache = os.environ.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache"))
    return os.path.join(cache, "pggan", WEIGHTS_NAME)


def find_weights(path: str | None = None) -> str:
    """The weights file: the given path, else $PGGAN_INCEPTION, else ~/.cache/pggan/<name>."""
    candidates = [path] if path else [os.environ.get(ENV_VAR), default_weights_path()]
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    where = path or os.environ.get(ENV_VAR) or default_weights_path()
    raise InceptionWeightsError(
        f"FID, IS, KID and precision/recall need the Inception-v3 weights file '{where}', which is not there. Download "
        f"{WEIGHTS_URL} (pytorch-fid's port of the TF FID Inception) and pass --inception PATH, set "
        f"{ENV_VAR}=PATH, or put it at {default_weights_path()}")


class BasicConv(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3, inference statistics) -> ReLU."""

    def __init__(self, sd: dict, name: str, stride: int = 1, padding=0):
        super().__init__()
        out_c, in_c, kh, kw = sd[f"{name}.conv.weight"].shape
        self.conv = nn.Conv2d(in_c, out_c, (kh, kw), stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(out_c, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


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
    """``forward(images)`` with images in [0, 255] (any size, resized to 299 bilinearly) returns
    (pool3 features [N, 2048], logits [N, 1008]) for the standard weights."""

    def __init__(self, sd: dict):
        super().__init__()
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
        out_c, in_c = sd["fc.weight"].shape
        self.fc = nn.Linear(in_c, out_c)

    @property
    def feature_dim(self) -> int:
        return self.fc.in_features

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = images.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        x = x / 127.5 - 1.0                                 # the network expects [-1, 1]
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        features = x.mean(dim=(2, 3))                       # [N, 2048] pool3
        return features, self.fc(features)


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_inception(path: str | None = None, device: str | torch.device = "cpu") -> InceptionV3:
    """The network of a weights file (a plain state dict, loaded without executing code)."""
    path = find_weights(path)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means the same thing to the user
        raise InceptionWeightsError(f"'{path}' is not a readable Inception weights file ({type(e).__name__}: "
                                    f"{str(e).splitlines()[0] if str(e) else ''}); download {WEIGHTS_URL}") from None
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or "fc.weight" not in sd:
        raise InceptionWeightsError(f"'{path}' is not an Inception-v3 state dict (no 'fc.weight'); download {WEIGHTS_URL}")
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked") and not k.startswith("AuxLogits.")}
    hint = f"it should be {WEIGHTS_NAME} from {WEIGHTS_URL}"
    try:
        net = InceptionV3(sd)
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
    net.weights_path, net.weights_sha256 = os.path.abspath(path), file_sha256(path)
    return net.eval().requires_grad_(False).to(device)
