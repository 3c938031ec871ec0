"""The models a benchmark compares: zoo models, timm's and torchvision's same architectures, EfficientNets."""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from regnet_zoo.factory import create
from regnet_zoo.registry import get_entry

# EfficientNet-B0..B7 native resolutions (Tan & Le, 2019; the paper's comparison point)
EFFICIENTNET_RESOLUTION = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528,
                           "b7": 600}
HEADLINE = ("regnetx_8.0gf", "b5")  # the paper's claim: RegNetX-8.0GF ~5x faster than EfficientNet-B5 (GPU)


@dataclass
class Subject:
    """One model to time: ``arch`` groups implementations of the same architecture."""

    label: str  # e.g. "regnetx_8.0gf/timm"
    arch: str  # zoo name or "efficientnet_b5"
    impl: str  # "zoo", "timm", "torchvision"
    model: nn.Module
    resolution: int
    in_chans: int = 3


def same_architecture(name: str, with_torchvision: bool = True) -> list[Subject]:
    """Our model, timm's (our state dict loaded, strict) and torchvision's (own init) for a zoo ``name``."""
    entry = get_entry(name)
    zoo = create(entry.name)
    ref = timm.create_model(entry.timm_name, pretrained=False)
    ref.load_state_dict(zoo.state_dict(), strict=True)
    subjects = [Subject(f"{entry.name}/zoo", entry.name, "zoo", zoo, 224),
                Subject(f"{entry.name}/timm", entry.name, "timm", ref, 224)]
    if with_torchvision and entry.torchvision_name:
        tv = getattr(torchvision.models, entry.torchvision_name)(weights=None)
        subjects.append(Subject(f"{entry.name}/torchvision", entry.name, "torchvision", tv, 224))
    return subjects


def efficientnet(variant: str) -> Subject:
    """timm's ``efficientnet_<variant>`` (random init) at its native resolution."""
    variant = variant.lower().removeprefix("efficientnet_")
    if variant not in EFFICIENTNET_RESOLUTION:
        raise ValueError(f"unknown EfficientNet {variant!r}; choose from {', '.join(EFFICIENTNET_RESOLUTION)}")
    arch = f"efficientnet_{variant}"
    return Subject(arch, arch, "timm", timm.create_model(arch, pretrained=False), EFFICIENTNET_RESOLUTION[variant])


@torch.no_grad()
def forward_flops(model: nn.Module, resolution: int, in_chans: int = 3) -> int:
    """FLOPs (multiply-add = 2) of one image's forward pass, counted by ``torch.utils.flop_counter``."""
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, resolution, resolution, device=param.device, dtype=param.dtype)
    with FlopCounterMode(display=False) as counter:
        model(x)
    model.train(was_training)
    return int(counter.get_total_flops())
