"""The models a benchmark compares, and how their complexity is counted (the one tracer of regnet-zoo).

* Zoo models: the exact pycls count, ``regnet_zoo.counting.model_complexity`` (no tracing).
* Other torch models (timm's EfficientNets): ``traced_complexity`` on one image, on the *meta* device
  when the model is built there (no memory, no compute).

Counting convention (the paper code's): flops = multiply-adds of conv and linear layers (a FLOP/s
figure counts 2 per multiply-add), params = learnable parameters, acts = output elements of every conv
and linear layer. ``torch.utils.flop_counter`` counts no biases: up to 0.1% fewer flops than pycls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from regnet_zoo.counting import model_complexity
from regnet_zoo.factory import create
from regnet_zoo.registry import get_entry

# EfficientNet-B0..B7 native input sizes in pixels (Tan & Le, 2019; timm's tf_efficientnet_bN input_size)
EFFICIENTNET_RESOLUTION = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528,
                           "b7": 600}
# flops-matched RegNets of each EfficientNet, "Designing Network Design Spaces" Table 4 (RegNets at 224 px)
FLOPS_MATCHED = {"b0": ("regnety_400mf",), "b1": ("regnety_600mf",), "b2": ("regnety_800mf",),
                 "b3": ("regnety_1.6gf",), "b4": ("regnety_4.0gf",), "b5": ("regnetx_8.0gf", "regnety_8.0gf")}
HEADLINE = ("regnetx_8.0gf", "b5")  # the paper's claim: RegNetX-8.0GF ~5x faster than EfficientNet-B5 (GPU)


def efficientnet_variant(variant: str | int) -> str:
    """Normalise ``3``, ``"B3"``, ``"efficientnet_b3"`` to ``"b3"``; unknown variants raise ``ValueError``."""
    v = f"b{variant}" if isinstance(variant, int) else str(variant).lower().removeprefix("efficientnet_")
    if v not in EFFICIENTNET_RESOLUTION:
        raise ValueError(f"unknown EfficientNet {variant!r}; choose from {', '.join(EFFICIENTNET_RESOLUTION)}")
    return v


def efficientnet_resolution(variant: str | int) -> int:
    """Native input size in pixels of EfficientNet-B``variant`` (224 for B0 ... 600 for B7)."""
    return EFFICIENTNET_RESOLUTION[efficientnet_variant(variant)]


def traced_complexity(model: nn.Module, resolution: int, in_chans: int = 3) -> dict[str, int]:
    """``{'flops', 'params', 'acts'}`` of ``model`` on one (in_chans, resolution, resolution) image, traced.

    flops are multiply-adds (``FlopCounterMode``'s count halved), acts the output elements of every
    ``Conv2d`` and ``Linear``. Runs in eval mode (restored after) on the model's device; build the
    model under ``torch.device("meta")`` to count without memory or compute.
    """
    acts = [0]

    def hook(_module: nn.Module, _inp: Any, out: torch.Tensor) -> None:
        acts[0] += out.numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    param = next(model.parameters())
    x = torch.empty(1, in_chans, resolution, resolution, device=param.device, dtype=param.dtype)
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        with counter, torch.no_grad():
            model.eval()(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return {"flops": int(counter.get_total_flops()) // 2, "params": sum(p.numel() for p in model.parameters()),
            "acts": int(acts[0])}


def efficientnet_complexity(variant: str | int) -> dict[str, int]:
    """``traced_complexity`` of timm's ``efficientnet_bN`` at its native resolution (built on the meta device)."""
    v = efficientnet_variant(variant)
    with torch.device("meta"):
        model = timm.create_model(f"efficientnet_{v}", pretrained=False)
    return {"resolution": EFFICIENTNET_RESOLUTION[v], **traced_complexity(model, EFFICIENTNET_RESOLUTION[v])}


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
