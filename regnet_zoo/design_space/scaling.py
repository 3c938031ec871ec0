"""Complexity scaling across model families: activations and parameters vs flops (paper Sec. 5).

Across the best RegNets acts grow like flops^0.5, across EfficientNet B0-B7 about linearly (which
makes EfficientNet slow on GPUs); ``strategy_curves`` fits the same for one model scaled by each
strategy of Dollár et al. 2021 (``regnet_zoo.scaler``). Flops = multiply-adds of conv and linear
layers, acts = their output elements (the paper code's conventions). RegNets are counted exactly
(``counting.model_complexity``); EfficientNets are traced by ``design_space.efficientnet`` (imported on use).
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


def _laws(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``rows`` with the power laws of their acts and params vs flops (``<metric>_exponent``, ``_coef``)."""
    out: dict[str, Any] = {"models": rows}
    flops = [r["flops"] for r in rows]
    for metric in ("acts", "params"):
        out[f"{metric}_exponent"], out[f"{metric}_coef"] = power_law(flops, [r[metric] for r in rows])
    return out


def scaling_table(include_efficientnet: bool = True) -> dict[str, Any]:
    """Per family: the models' complexity and the fitted exponents of acts and params vs flops."""
    families = {"RegNetX": regnet_family("x"), "RegNetY": regnet_family("y")}
    if include_efficientnet:
        families["EfficientNet"] = efficientnet_family()
    return {fam: _laws(rows) for fam, rows in families.items()}


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
        scaled = [scale(model, f, name, alpha, resolution=resolution, scale_groups=scale_groups) for f in factors]
        rows = [{"factor": float(f), "resolution": sm.resolution, **sm.complexity()} for f, sm in zip(factors, scaled)]
        out[name] = {**_laws(rows), "expected_acts_exponent": get_strategy(name, alpha).acts_exponent}
    return out
