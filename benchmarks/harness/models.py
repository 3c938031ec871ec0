"""The models a benchmark compares and their complexity.

* Zoo models: the exact pycls count, ``regnet_zoo.counting.model_complexity`` (no tracing).
* timm's EfficientNets: ``regnet_zoo.design_space.efficientnet.efficientnet_complexity`` (traced on
  the meta device, the paper code's counting convention).
"""

from __future__ import annotations

from dataclasses import dataclass

import timm
import torchvision
from torch import nn

from regnet_zoo.counting import model_complexity
from regnet_zoo.design_space.efficientnet import efficientnet_complexity, efficientnet_variant
from regnet_zoo.factory import create
from regnet_zoo.registry import get_entry

# flops-matched RegNets of each EfficientNet, "Designing Network Design Spaces" Table 4 (RegNets at 224 px)
FLOPS_MATCHED = {"b0": ("regnety_400mf",), "b1": ("regnety_600mf",), "b2": ("regnety_800mf",),
                 "b3": ("regnety_1.6gf",), "b4": ("regnety_4.0gf",), "b5": ("regnetx_8.0gf", "regnety_8.0gf")}
HEADLINE = ("regnetx_8.0gf", "b5")  # the paper's claim: RegNetX-8.0GF ~5x faster than EfficientNet-B5 (GPU)


@dataclass
class Subject:
    """One model to time: ``arch`` groups implementations of the same architecture."""

    label: str  # e.g. "regnetx_8.0gf/timm"
    arch: str  # zoo name or "efficientnet_b5"
    impl: str  # "zoo", "timm", "torchvision"
    model: nn.Module
    resolution: int
    complexity: dict[str, int]  # flops (multiply-adds), params, acts of one image at ``resolution``
    in_chans: int = 3

    @property
    def flops(self) -> int:
        """FLOPs of one image's forward pass (2 per multiply-add)."""
        return 2 * self.complexity["flops"]


def zoo_complexity(name: str, resolution: int = 224) -> dict[str, int]:
    """The exact pycls count of a zoo model: flops (multiply-adds), params, acts."""
    return model_complexity(get_entry(name).cfg, resolution=resolution)


def zoo_model(name: str) -> Subject:
    """Our model ``name`` (random init) at 224 px."""
    entry = get_entry(name)
    return Subject(f"{entry.name}/zoo", entry.name, "zoo", create(entry.name), 224, zoo_complexity(entry.name))


def same_architecture(name: str, with_torchvision: bool = True) -> list[Subject]:
    """Our model, timm's (our state dict loaded, strict) and torchvision's (own init) for a zoo ``name``,
    where those libraries have it.

    All share the zoo model's exact complexity count (same architecture).
    """
    zoo = zoo_model(name)
    entry = get_entry(name)
    subjects = [zoo]
    if entry.timm_name:  # timm has no twin of e.g. RegNetZ-4GF
        ref = timm.create_model(entry.timm_name, pretrained=False)
        ref.load_state_dict(zoo.model.state_dict(), strict=True)
        subjects.append(Subject(f"{entry.name}/timm", entry.name, "timm", ref, 224, zoo.complexity))
    if with_torchvision and entry.torchvision_name:
        tv = getattr(torchvision.models, entry.torchvision_name)(weights=None)
        subjects.append(Subject(f"{entry.name}/torchvision", entry.name, "torchvision", tv, 224, zoo.complexity))
    return subjects


def efficientnet(variant: str | int) -> Subject:
    """timm's ``efficientnet_<variant>`` (random init) at its native resolution."""
    v = efficientnet_variant(variant)
    arch = f"efficientnet_{v}"
    cx = efficientnet_complexity(v)
    return Subject(arch, arch, "timm", timm.create_model(arch, pretrained=False), cx.pop("resolution"), cx)
