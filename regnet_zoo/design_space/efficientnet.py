"""EfficientNet-B0..B7, the paper's comparison family: native resolutions and traced complexity.

``traced_complexity`` counts any torch model (the one tracer of regnet-zoo; zoo models use the exact
``regnet_zoo.counting``): flops = multiply-adds of conv and linear layers (``FlopCounterMode`` halved;
biases, < 0.1%, not counted), params = learnable parameters, acts = output elements of every ``Conv2d``
and ``Linear`` (the paper code's convention). Traced on the *meta* device (no memory or compute),
timm's ``efficientnet_bN`` give the paper's Table 4 numbers (B0: 0.39 GF, 5.3 M params, 6.7 M acts).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

# EfficientNet-B0..B7 native input sizes in pixels (Tan & Le, 2019; timm's tf_efficientnet_bN input_size)
EFFICIENTNET_RESOLUTION = {"b0": 224, "b1": 240, "b2": 260, "b3": 300, "b4": 380, "b5": 456, "b6": 528,
                           "b7": 600}


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

    Runs in eval mode (restored after) on the model's device; build the model under
    ``torch.device("meta")`` to count without memory or compute.
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
