"""VGG16 features for precision and recall, as Kynkaanniemi et al. use them: the 4096-d output of the
second fully connected layer (after its ReLU) for images resized to 224x224 and normalised with the
ImageNet mean and deviation. Built to load torchvision's ``vgg16-397923af.pth`` (a plain state dict;
no download here, the user gives the file); widths come from the file, so tests use a narrow one.
"""
from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..util.errors import PgganError, first_line

WEIGHTS_NAME = "vgg16-397923af.pth"
BLOCKS = (2, 2, 3, 3, 3)                  # 3x3 convolutions per block, each block ends in a 2x2 max pool
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class VGGWeightsError(PgganError, ValueError):
    """The VGG16 weights file is missing or does not fit; the message says what to do."""


def conv_names() -> list[str]:
    """torchvision's module indices of the 13 convolutions (ReLUs and pools sit between them)."""
    names, i = [], 0
    for n in BLOCKS:
        for _ in range(n):
            names.append(f"features.{i}")
            i += 2
        i += 1
    return names


class VGG16Features(nn.Module):
    def __init__(self, sd: dict):
        super().__init__()
        self.convs = nn.ModuleList()
        for name in conv_names():
            out_c, in_c, kh, kw = sd[f"{name}.weight"].shape
            self.convs.append(nn.Conv2d(in_c, out_c, (kh, kw), padding=1))
        self.fc1 = nn.Linear(*reversed(sd["classifier.0.weight"].shape))
        self.fc2 = nn.Linear(*reversed(sd["classifier.3.weight"].shape))
        self.feature_dim = self.fc2.out_features
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1))

    def load(self, sd: dict) -> None:
        mine = {}
        for conv, name in zip(self.convs, conv_names()):
            mine[name] = conv
        mine["classifier.0"], mine["classifier.3"] = self.fc1, self.fc2
        for name, module in mine.items():
            module.weight.data.copy_(sd[f"{name}.weight"])
            module.bias.data.copy_(sd[f"{name}.bias"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, C, H, W] in [0, 255] (C = 1 or 3) -> [N, feature_dim]."""
        x = x.float() / 255.0
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        k = 0
        for n in BLOCKS:
            for _ in range(n):
                x = F.relu(self.convs[k](x))
                k += 1
            x = F.max_pool2d(x, 2)
        x = F.adaptive_avg_pool2d(x, 7).flatten(1)        # [N, C * 49]
        return F.relu(self.fc2(F.relu(self.fc1(x))))


def load_vgg16(path: str, device: str | torch.device = "cpu") -> VGG16Features:
    """The feature network of a torchvision VGG16 state dict (loaded without executing code)."""
    hint = f"give torchvision's {WEIGHTS_NAME} (its VGG16 with ImageNet weights)"
    if not os.path.isfile(path):
        raise VGGWeightsError(f"the VGG16 weights file '{path}' does not exist; {hint}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read means the same thing to the user
        raise VGGWeightsError(f"'{path}' is not a readable weights file ({first_line(e)}); {hint}") from None
    needed = [f"{n}.{p}" for n in conv_names() + ["classifier.0", "classifier.3"] for p in ("weight", "bias")]
    missing = [k for k in needed if not isinstance(sd, dict) or k not in sd]
    if missing:
        raise VGGWeightsError(f"'{path}' is not a VGG16 state dict (no {missing[0]}); {hint}")
    try:
        net = VGG16Features(sd)
        net.load(sd)
    except (RuntimeError, ValueError, TypeError) as e:
        raise VGGWeightsError(f"'{path}' does not fit VGG16 ({first_line(e)}); {hint}") from None
    return net.eval().requires_grad_(False).to(device)
