"""regnet-zoo: RegNet models (Radosavovic et al., "Designing Network Design Spaces", CVPR 2020).

    import regnet_zoo
    model = regnet_zoo.create("regnety_4.0gf", pretrained=True)
    regnet_zoo.list_models("regnetx*")
    regnet_zoo.complexity("RegNetX-8.0GF")  # {'flops': ..., 'params': ..., 'acts': ...}
    regnet_zoo.scale("RegNetZ-500MF", 4, strategy="dW")  # fast model scaling (Dollár et al. 2021)

The pure parts (``generator``, ``counting``, ``config``, ``registry``, ``scaler``) import no torch; the
torch-level names (``create``, ``AnyNet``, ...) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from regnet_zoo.config import AnyNetCfg, RegNetCfg, StageCfg
from regnet_zoo.registry import UnknownModelError, get_entry, list_models
from regnet_zoo.scaler import scale

__version__ = "0.1.0"

_LAZY = {
    "create": "regnet_zoo.factory",
    "register_timm_models": "regnet_zoo.factory",
    "AnyNet": "regnet_zoo.models",
    "save_pretrained": "regnet_zoo.weights.publish",
    "from_pretrained": "regnet_zoo.weights.publish",
    "push_to_hub": "regnet_zoo.weights.publish",
}


def complexity(
    model: str | RegNetCfg | AnyNetCfg,
    resolution: int = 224,
    in_chans: int = 3,
    num_classes: int = 1000,
    per_stage: bool = False,
) -> dict[str, Any]:
    """Exact flops (multiply-adds), params and activations of a model, as the paper's code counts.

    ``model`` is a registry name/alias or a config; ``per_stage=True`` adds a per-stage list.
    """
    from regnet_zoo.counting import model_complexity

    cfg = get_entry(model).cfg if isinstance(model, str) else model
    return model_complexity(cfg, resolution=resolution, in_chans=in_chans, num_classes=num_classes,
                            per_stage=per_stage)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'regnet_zoo' has no attribute {name!r}")


__all__ = ["AnyNet", "AnyNetCfg", "RegNetCfg", "StageCfg", "UnknownModelError", "complexity", "create",
           "from_pretrained", "get_entry", "list_models", "push_to_hub", "register_timm_models",
           "save_pretrained", "scale", "__version__"]
