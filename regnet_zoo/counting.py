"""Exact analytic complexity of AnyNet/RegNet models: flops, params, activations. No torch.

Counted exactly as the paper's code (pycls ``*_cx`` functions) counts them:

* flops: multiply-adds of convs and linear layers (+ one per output for a bias); BN, ReLU,
  pooling, the SE gate and residual adds count 0;
* params: conv/linear weights and biases + 2 per BN channel (gamma, beta; running stats are
  buffers), so it equals ``sum(p.numel() for p in model.parameters())``;
* acts: output elements of every conv and linear layer (BN/ReLU outputs are not counted).

RegNetZ's linear block (``block="z"``) counts as pycls' ``ResBottleneckLinearBlock``: its bottleneck
transform only (1x1 expand, 3x3 group conv, SE, 1x1 project, BN after each conv), never a shortcut
conv; the head conv (``head_width`` > 0) as pycls' ``AnyHead``: 1x1 conv + BN before pool + linear.

Spatial sizes follow ``h_out = (h - 1) // stride + 1`` (odd kernels, "same" padding).
Everything is vectorised over N configs held in padded (N, S) stage arrays, so a design-space
sweep evaluates 10^5 configs in well under a second (0.6 s here for 4-stage configs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from regnet_zoo.config import AnyNetCfg, ModelCfg

METRICS = ("flops", "params", "acts")


@dataclass(frozen=True)
class Complexity:
    """Complexity of a part of a network; ``h`` is its output's spatial size (square inputs)."""

    flops: int = 0
    params: int = 0
    acts: int = 0
    h: int = 0

    def __add__(self, other: Complexity) -> Complexity:
        """Sequential composition: counts add up, the spatial size is the later part's."""
        return Complexity(self.flops + other.flops, self.params + other.params,
                          self.acts + other.acts, other.h)

    def as_dict(self) -> dict[str, int]:
        return {m: getattr(self, m) for m in METRICS}


def _scalar(acc: dict[str, np.ndarray], h) -> Complexity:
    return Complexity(*(int(acc[m][0]) for m in METRICS), h=int(np.asarray(h).reshape(-1)[0]))


def stem_complexity(in_chans: int, width: int, h: int) -> Complexity:
    """The stem (3x3 stride-2 conv + BN) on an h x h input."""
    acc = _zeros(1)
    h_out = _stem(acc, in_chans, width, np.array([h]))
    return _scalar(acc, h_out)


def needs_projection(w_in, w_out, stride):
    """Whether a block's shortcut is a 1x1 conv + BN (shape changes) rather than the identity."""
    return (w_in != w_out) | (stride != 1)


def block_complexity(w_in: int, w_out: int, h: int, stride: int, bot_mul: float,
                     group_width: int, se_ratio: float, projection: bool | None = None,
                     block: str = "x") -> Complexity:
    """One residual bottleneck block (``block`` "x") or linear block ("z") on an h x h input.

    ``projection`` overrides ``needs_projection`` (a dilated block also projects when its
    dilation changes); a linear block never has a projection.
    """
    acc = _zeros(1)
    proj = None if projection is None else np.array([projection])
    h_out = _block(acc, np.array([w_in]), np.array([w_out]), np.array([h]), np.array([stride]),
                   np.array([bot_mul]), np.array([group_width]), np.array([se_ratio]), np.array([True]), proj,
                   np.array([block == "z"]))
    return _scalar(acc, h_out)


def head_complexity(w_in: int, num_classes: int, head_width: int = 0, h: int = 1) -> Complexity:
    """[1x1 conv to ``head_width`` + BN on the h x h input,] global average pool + linear (with bias).

    ``num_classes`` 0 counts no linear layer.
    """
    acc = _zeros(1)
    _head(acc, np.array([w_in]), num_classes, np.array([head_width]), np.array([h]))
    return _scalar(acc, 1)


def _zeros(n: int) -> dict[str, np.ndarray]:
    return {m: np.zeros(n, dtype=np.int64) for m in METRICS}


def _add(acc: dict[str, np.ndarray], flops, params, acts, where=True) -> None:
    acc["flops"] += np.where(where, flops, 0)
    acc["params"] += np.where(where, params, 0)
    acc["acts"] += np.where(where, acts, 0)


def _conv(acc, w_in, w_out, k, h, stride=1, groups=1, bias=False, where=True):
    """Accumulate a k x k conv on an h x h input; returns the output size."""
    h = (h - 1) // stride + 1
    _add(acc,
         k * k * w_in * w_out * h * h // groups + (w_out * h * h if bias else 0),
         k * k * w_in * w_out // groups + (w_out if bias else 0),
         w_out * h * h, where)
    return h


def _bn(acc, w, where=True):
    _add(acc, 0, 2 * w, 0, where)


def _stem(acc, in_chans, width, h):
    h = _conv(acc, in_chans, width, 3, h, stride=2)
    _bn(acc, width)
    return h


def _head(acc, w_in, num_classes, head_width=0, h=1):
    conv = head_width > 0
    _conv(acc, w_in, head_width, 1, h, where=conv)
    _bn(acc, head_width, conv)
    w_fc = np.where(conv, head_width, w_in)
    _add(acc, w_fc * num_classes + num_classes, w_fc * num_classes + num_classes, num_classes)


def _block(acc, w_in, w_out, h, stride, bot_mul, group_w, se_r, where, proj=None, linear=False):
    """One residual bottleneck block (X block, Y block when se_r > 0, Z block where ``linear``);
    returns the output size."""
    w_b = np.round(w_out * bot_mul).astype(np.int64)
    w_se = np.round(w_in * se_r).astype(np.int64)
    groups = np.maximum(w_b // np.maximum(group_w, 1), 1)
    proj = where & ~np.asarray(linear) & (needs_projection(w_in, w_out, stride) if proj is None else proj)
    _conv(acc, w_in, w_out, 1, h, stride=stride, where=proj)
    _bn(acc, w_out, proj)
    _conv(acc, w_in, w_b, 1, h, where=where)
    _bn(acc, w_b, where)
    h2 = _conv(acc, w_b, w_b, 3, h, stride=stride, groups=groups, where=where)
    _bn(acc, w_b, where)
    se = where & (w_se > 0)
    _conv(acc, w_b, w_se, 1, 1, bias=True, where=se)
    _conv(acc, w_se, w_b, 1, 1, bias=True, where=se)
    _conv(acc, w_b, w_out, 1, h2, where=where)
    _bn(acc, w_out, where)
    return h2


def complexity_arrays(
    depths: np.ndarray,
    widths: np.ndarray,
    group_widths: np.ndarray,
    bot_muls: np.ndarray | float = 1.0,
    strides: np.ndarray | int = 2,
    se_ratio: np.ndarray | float = 0.0,
    stem_width: np.ndarray | int = 32,
    resolution: int = 224,
    in_chans: int = 3,
    num_classes: int = 1000,
    block: np.ndarray | str = "x",
    head_width: np.ndarray | int = 0,
) -> dict[str, np.ndarray]:
    """Complexity of N AnyNets given padded (N, S) stage arrays; depth 0 marks an absent stage.

    ``se_ratio``, ``stem_width``, ``block`` ("x"/"z") and ``head_width`` are scalars or (N,) arrays.

    Returns ``flops``, ``params``, ``acts`` as (N,) int64 totals and ``stage_flops``,
    ``stage_params``, ``stage_acts`` as (N, S + 2) arrays: stem, stages 1..S, head.
    """
    depths = np.atleast_2d(np.asarray(depths, dtype=np.int64))
    n, s = depths.shape

    def per_stage(a, dtype):
        return np.broadcast_to(np.asarray(a, dtype=dtype), (n, s)) if np.ndim(a) == 2 else \
            np.broadcast_to(np.asarray(a, dtype=dtype).reshape(-1, 1), (n, s))

    widths = per_stage(widths, np.int64)
    group_widths = per_stage(group_widths, np.int64)
    bot_muls = per_stage(bot_muls, np.float64)
    strides = per_stage(strides, np.int64)
    se_r = np.broadcast_to(np.asarray(se_ratio, dtype=np.float64), (n,))
    stem_w = np.broadcast_to(np.asarray(stem_width, dtype=np.int64), (n,))
    linear = np.broadcast_to(np.asarray(block) == "z", (n,))
    head_w = np.broadcast_to(np.asarray(head_width, dtype=np.int64), (n,))

    parts = []
    acc = _zeros(n)
    h = _stem(acc, in_chans, stem_w, np.full(n, resolution, dtype=np.int64))
    parts.append(acc)
    prev_w = stem_w
    for i in range(s):
        acc = _zeros(n)
        d, w, stride = depths[:, i], widths[:, i], np.maximum(strides[:, i], 1)
        present = d > 0
        b, g = bot_muls[:, i], group_widths[:, i]
        h_first = _block(acc, prev_w, w, h, stride, b, g, se_r, present, linear=linear)
        rest = _zeros(n)
        _block(rest, w, w, h_first, 1, b, g, se_r, present & (d > 1), linear=linear)
        for m in METRICS:
            acc[m] += rest[m] * np.maximum(d - 1, 0)
        h = np.where(present, h_first, h)
        prev_w = np.where(present, w, prev_w)
        parts.append(acc)
    acc = _zeros(n)
    _head(acc, prev_w, num_classes, head_w, h)
    parts.append(acc)

    out = {f"stage_{m}": np.stack([p[m] for p in parts], axis=1) for m in METRICS}
    out.update({m: out[f"stage_{m}"].sum(axis=1) for m in METRICS})
    return out


def anynet_arrays(cfgs: list[AnyNetCfg]) -> dict[str, np.ndarray]:
    """Pack AnyNet configs into the padded arrays ``complexity_arrays`` takes."""
    s = max(len(c.stages) for c in cfgs)
    n = len(cfgs)
    arr = {k: np.zeros((n, s), dtype=np.int64) for k in ("depths", "widths", "group_widths", "strides")}
    arr["bot_muls"] = np.ones((n, s))
    for i, c in enumerate(cfgs):
        k = len(c.stages)
        arr["depths"][i, :k], arr["widths"][i, :k] = c.depths, c.widths
        arr["group_widths"][i, :k], arr["strides"][i, :k] = c.group_widths, c.strides
        arr["bot_muls"][i, :k] = c.bot_muls
    arr["se_ratio"] = np.array([c.se_ratio for c in cfgs])
    arr["stem_width"] = np.array([c.stem_width for c in cfgs], dtype=np.int64)
    arr["block"] = np.array([c.block for c in cfgs])
    arr["head_width"] = np.array([c.head_width for c in cfgs], dtype=np.int64)
    return arr


def model_complexity(
    cfg: ModelCfg,
    resolution: int = 224,
    in_chans: int = 3,
    num_classes: int = 1000,
    per_stage: bool = False,
) -> dict[str, object]:
    """Complexity of one model: ``{'flops', 'params', 'acts'}`` as ints (flops = multiply-adds).

    With ``per_stage=True`` also ``'stages'``: a list of dicts for stem, s1..sN and head.
    """
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive integer (pixels), got {resolution!r}")
    any_cfg = cfg.to_anynet()
    out = complexity_arrays(
        **anynet_arrays([any_cfg]), resolution=resolution, in_chans=in_chans, num_classes=num_classes)
    result: dict[str, object] = {m: int(out[m][0]) for m in METRICS}
    if per_stage:
        names = ["stem"] + [f"s{i + 1}" for i in range(len(any_cfg.stages))] + ["head"]
        result["stages"] = [
            {"name": name, **{m: int(out[f"stage_{m}"][0, j]) for m in METRICS}}
            for j, name in enumerate(names)
        ]
    return result


def format_count(value: float, unit: str = "") -> str:
    """Human-readable count: 199040872 -> '199.0M'."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.1f}{suffix}{unit}"
    return f"{value:.0f}{unit}"


def as_table(rows: Mapping[str, Mapping[str, int]]) -> str:
    """Render name -> {flops, params, acts} as an aligned text table."""
    head = f"{'name':<22} {'flops':>10} {'params':>10} {'acts':>10}"
    lines = [head, "-" * len(head)]
    for name, r in rows.items():
        lines.append(f"{name:<22} {format_count(r['flops']):>10} {format_count(r['params']):>10} "
                     f"{format_count(r['acts']):>10}")
    return "\n".join(lines)
