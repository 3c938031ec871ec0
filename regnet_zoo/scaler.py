"""Fast model scaling (Dollár, Singh, Girshick, "Fast and Accurate Model Scaling", CVPR 2021). No torch.

A strategy splits a flops factor ``s`` over depth, width and resolution with exponents
``e_d + e_w + e_r = 1``: depth x s^e_d, width x s^(e_w/2), resolution x s^(e_r/2); activations then grow
about s^(e_d + e_w/2 + e_r). The paper's strategies and pycls' rounding (``pycls/models/scaler.py``: per
stage, on the generated AnyNet stages; stem and head widths stay) are tabled in ``docs/scaling.md``.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, replace
from typing import Any

from regnet_zoo.config import AnyNetCfg, ModelCfg, RegNetCfg, StageCfg
from regnet_zoo.counting import model_complexity
from regnet_zoo.generator import adjust_block_compatibility
from regnet_zoo.registry import get_entry

STRATEGIES: tuple[str, ...] = ("d", "w", "r", "dw", "dr", "wr", "dwr", "dW", "dWr")
DEFAULT_ALPHA = 0.8


class ScalingError(ValueError):
    """Bad scaling request: factor <= 0, alpha outside (0, 1], unknown strategy."""


class UnknownStrategyError(ScalingError):
    """A strategy name that is not one of ``STRATEGIES`` (the message lists the closest)."""


@dataclass(frozen=True)
class Strategy:
    """How a flops factor s splits: depth x s^e_d, width x s^(e_w/2), resolution x s^(e_r/2)."""

    name: str
    e_d: float
    e_w: float
    e_r: float

    @property
    def acts_exponent(self) -> float:
        """k of activations ~ s^k: e_d + e_w / 2 + e_r."""
        return self.e_d + self.e_w / 2 + self.e_r


def get_strategy(name: str, alpha: float = DEFAULT_ALPHA) -> Strategy:
    """The strategy ``name`` (one of ``STRATEGIES``; ``alpha`` is the width share of dW / dWr)."""
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or not 0 < alpha <= 1:
        raise ScalingError(f"alpha (the width share e_w of dW/dWr) must be in (0, 1], got {alpha!r}")
    if name not in STRATEGIES:
        close = difflib.get_close_matches(str(name), STRATEGIES, n=3, cutoff=0.3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise UnknownStrategyError(f"unknown scaling strategy {name!r}{hint}; strategies: {', '.join(STRATEGIES)}")
    if name == "dW":
        e = (1 - alpha, alpha, 0.0)
    elif name == "dWr":
        e = ((1 - alpha) / 2, alpha, (1 - alpha) / 2)
    else:
        e = tuple(1 / len(name) if c in name else 0.0 for c in "dwr")
    return Strategy(name, *e)


@dataclass(frozen=True)
class ScaledModel:
    """A scaled model: its stages (``cfg``) and input ``resolution`` (pixels), and how it was made."""

    cfg: AnyNetCfg
    resolution: int
    strategy: Strategy
    factor: float  # requested flops factor s
    base: AnyNetCfg
    base_resolution: int

    def complexity(self, in_chans: int = 3, num_classes: int = 1000) -> dict[str, int]:
        """Exact flops (multiply-adds), params and acts at ``resolution``."""
        return model_complexity(self.cfg, self.resolution, in_chans, num_classes)

    def to_dict(self) -> dict[str, Any]:
        s = self.strategy
        return {"strategy": s.name, "e_d": s.e_d, "e_w": s.e_w, "e_r": s.e_r, "factor": self.factor,
                "resolution": self.resolution, "base_resolution": self.base_resolution, "cfg": self.cfg.to_dict()}


def _snap_group(g: int) -> int:
    """pycls' group-width snapping: keep 1 and 2, 3..5 -> 4, else the nearest multiple of 8."""
    return g if g <= 2 else 4 if g <= 5 else round(g / 8) * 8


def scale(
    model: str | ModelCfg,
    factor: float,
    strategy: str = "dW",
    alpha: float = DEFAULT_ALPHA,
    *,
    resolution: int = 224,
    scale_groups: bool = True,
) -> ScaledModel:
    """Scale ``model`` (registry name or config) by flops ``factor`` with ``strategy`` (a name of ``STRATEGIES``).

    ``resolution`` is the base model's input size; ``scale_groups`` scales group widths with the
    widths (pycls' ``g`` weight equal to ``w``, as in its fast-scaling recipe). The flops ratio is
    ``factor`` up to the rounding of depths, widths, groups and resolution (and the stem and head,
    which do not scale).
    """
    if not isinstance(factor, (int, float)) or isinstance(factor, bool) or not math.isfinite(factor) \
            or factor <= 0:
        raise ScalingError(f"scale factor (flops ratio) must be a finite number > 0, got {factor!r}")
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer (pixels), got {resolution!r}")
    st = get_strategy(strategy, alpha)
    cfg = get_entry(model).cfg if isinstance(model, str) else model
    if not isinstance(cfg, (RegNetCfg, AnyNetCfg)):
        raise TypeError(f"model must be a name, RegNetCfg or AnyNetCfg, got {type(model).__name__}")
    base = cfg.to_anynet()
    d_s, w_s, r_s = factor ** st.e_d, factor ** (st.e_w / 2), factor ** (st.e_r / 2)
    g_s = w_s if scale_groups else 1.0
    ds = [max(1, round(d * d_s)) for d in base.depths]
    ws = [max(1, round(w * w_s / 8)) * 8 for w in base.widths]
    gs = [_snap_group(max(1, round(g * g_s))) for g in base.group_widths]
    ws, bs, gs = adjust_block_compatibility(ws, base.bot_muls, gs)
    stages = tuple(StageCfg(depth=d, width=w, group_width=g, bot_mul=b, stride=s.stride)
                   for d, w, g, b, s in zip(ds, ws, gs, bs, base.stages))
    return ScaledModel(replace(base, stages=stages), round(resolution * r_s / 4) * 4, st, float(factor), base,
                       resolution)
