"""Complexity scaling across model families: activations and parameters vs flops (paper Sec. 5).

``strategy_curves`` does the same for one model scaled by each strategy of Dollár et al. 2021
(``regnet_zoo.scaler``): the fitted activation exponent next to the strategy's e_d + e_w/2 + e_r.

The paper observes that across the best RegNets activations grow like flops^0.5 (and params about
linearly), while for EfficientNet B0-B7 activations grow about linearly with flops, which makes
EfficientNet slow on GPUs. ``power_law`` fits y = c * x^k by least squares in log-log space.

Counting conventions (the paper code's): flops = multiply-adds of conv and linear layers,
params = all learnable parameters, acts = output elements of every conv and linear layer.
RegNets are counted analytically (``counting.model_complexity``, exact pycls numbers, 224 px).
EfficientNets are traced at their native resolutions (224 ... 600 px) by
``design_space.efficientnet``, imported on use (torch, timm).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from regnet_zoo.config import ModelCfg
from regnet_zoo.counting import model_complexity
from regnet_zoo.registry import MODELS
from regnet_zoo.scaler import DEFAULT_ALPHA, STRATEGIES, get_strategy, scale


def power_law(x, y) -> tuple[float, float]:
    """Least-squares fit of y = c * x^k in log-log space; returns (k, c)."""
    lx, ly = np.log(np.asarray(x, dtype=np.float64)), np.log(np.asarray(y, dtype=np.float64))
    if lx.size < 2 or lx.shape != ly.shape or np.ptp(lx) == 0:
        raise ValueError("power_law needs at least two points with distinct x and one y per x")
    k, logc = np.polyfit(lx, ly, 1)
    return float(k), float(np.exp(logc))


def regnet_family(family: str, resolution: int = 224) -> list[dict[str, Any]]:
    """Complexity of the paper's 12 RegNetX (``family="x"``) or RegNetY (``"y"``) models."""
    if family not in ("x", "y"):
        raise ValueError(f"family must be 'x' or 'y', got {family!r}")
    return [{"name": e.display, "resolution": resolution, **model_complexity(e.cfg, resolution)}
            for name, e in MODELS.items() if e.paper and name.startswith(f"regnet{family}_")]


def efficientnet_family(variants=range(8)) -> list[dict[str, Any]]:
    """Traced complexity of timm's EfficientNet-B0..B7 at native resolution (meta device)."""
    from regnet_zoo.design_space.efficientnet import efficientnet_complexity  # torch, timm: on use

    return [{"name": f"EfficientNet-B{b}", **efficientnet_complexity(b)} for b in variants]


def scaling_table(include_efficientnet: bool = True) -> dict[str, Any]:
    """Per family: the models' complexity and the fitted exponents of acts and params vs flops."""
    families = {"RegNetX": regnet_family("x"), "RegNetY": regnet_family("y")}
    if include_efficientnet:
        families["EfficientNet"] = efficientnet_family()
    out = {}
    for fam, rows in families.items():
        flops = [r["flops"] for r in rows]
        ka, ca = power_law(flops, [r["acts"] for r in rows])
        kp, cp = power_law(flops, [r["params"] for r in rows])
        out[fam] = {"models": rows, "acts_exponent": ka, "acts_coef": ca, "params_exponent": kp, "params_coef": cp}
    return out


def strategy_curves(
    model: str | ModelCfg,
    factors=(1, 2, 4, 8, 16),
    strategies=STRATEGIES,
    alpha: float = DEFAULT_ALPHA,
    *,
    resolution: int = 224,
    scale_groups: bool = True,
) -> dict[str, dict[str, Any]]:
    """Per strategy: the scaled models' complexity for each flops factor and the power laws fitted to
    acts and params vs flops (``acts_exponent``), with the paper's ``expected_acts_exponent``."""
    out = {}
    for name in strategies:
        rows = []
        for f in factors:
            sm = scale(model, f, name, alpha, resolution=resolution, scale_groups=scale_groups)
            rows.append({"factor": float(f), "resolution": sm.resolution, **sm.complexity()})
        flops = [r["flops"] for r in rows]
        out[name] = {"models": rows, "expected_acts_exponent": get_strategy(name, alpha).acts_exponent,
                     "acts_exponent": power_law(flops, [r["acts"] for r in rows])[0],
                     "params_exponent": power_law(flops, [r["params"] for r in rows])[0]}
    return out
