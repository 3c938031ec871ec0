"""The RegNet generator: from (d, w0, wa, wm) to per-block and per-stage widths.

Pure NumPy, no torch. This is the paper's quantized-linear parametrisation
(Radosavovic et al. 2020, Sec. 3.3) exactly as the paper's own code (pycls) computes it:

    u_j = w0 + wa * j                      continuous width of block j, 0 <= j < d
    k_j = round(log(u_j / w0) / log(wm))   quantized exponent
    w_j = round(w0 * wm**k_j / q) * q      per-block width, a multiple of q (q = 8)

Blocks of equal width form a stage. All rounding is NumPy's round-half-to-even, as in pycls;
a half-up rounding yields other widths for several paper models.

Then the bottleneck/group compatibility step makes the bottleneck width ``w * bot_mul`` a
multiple of the group width (``adjust_block_compatibility``). torchvision rounds that step
differently (half-up with a 90% floor); ``rounding="torchvision"`` reproduces it so
torchvision's weights load exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

Rounding = Literal["pycls", "torchvision"]
ROUNDINGS: tuple[str, ...] = ("pycls", "torchvision")


@dataclass(frozen=True)
class BlockWidths:
    """Per-block output of the quantized-linear generator (all arrays have length ``depth``)."""

    widths: np.ndarray  # int64, quantized per-block widths w_j (channels)
    widths_cont: np.ndarray  # float64, continuous widths u_j (channels)
    exponents: np.ndarray  # int64, quantized exponents k_j

    @property
    def num_stages(self) -> int:
        """Number of distinct widths, i.e. stages actually generated."""
        return len(np.unique(self.widths))

    @property
    def total_stages(self) -> int:
        """Number of possible stages, ``max(k_j) + 1`` (pycls' ``total_stages``)."""
        return int(self.exponents.max()) + 1


def check_regnet_params(w0: float, wa: float, wm: float, depth: int, q: int = 8) -> None:
    """Raise ``ValueError`` naming the parameter and the rule it breaks."""
    if not isinstance(depth, (int, np.integer)) or isinstance(depth, bool) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1 (number of blocks), got {depth!r}")
    if not isinstance(q, (int, np.integer)) or q < 1:
        raise ValueError(f"q (width quantum) must be an integer >= 1, got {q!r}")
    if not w0 > 0 or float(w0) % q != 0:
        raise ValueError(f"w0 must be a positive multiple of q={q} (initial width), got {w0!r}")
    if not wa >= 0:
        raise ValueError(f"wa must be >= 0 (width slope, channels per block), got {wa!r}")
    if not wm > 1:
        raise ValueError(f"wm must be > 1 (width multiplier between stages), got {wm!r}")


def quantized_linear_widths(w0: float, wa: float, wm: float, depth: int, q: int = 8) -> BlockWidths:
    """Per-block widths of a RegNet (see module docstring); validates the parameters."""
    check_regnet_params(w0, wa, wm, depth, q)
    widths_cont = np.arange(depth) * wa + w0
    exponents = np.round(np.log(widths_cont / w0) / np.log(wm))
    widths = np.round(w0 * np.power(wm, exponents) / q).astype(np.int64) * q
    return BlockWidths(widths=widths, widths_cont=widths_cont, exponents=exponents.astype(np.int64))


def stages_from_block_widths(block_widths: Sequence[int]) -> tuple[list[int], list[int]]:
    """Group non-decreasing per-block widths into stages: returns (stage widths, stage depths)."""
    ws = np.asarray(block_widths)
    if np.any(np.diff(ws) < 0):
        raise ValueError(f"per-block widths must be non-decreasing to form stages, got {ws.tolist()}")
    widths, depths = np.unique(ws, return_counts=True)
    return [int(w) for w in widths], [int(d) for d in depths]


def _make_divisible_tv(v: float, divisor: int) -> int:
    """torchvision's ``_make_divisible``: round half up to a multiple, never below 90% of v."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def adjust_block_compatibility(
    widths: Sequence[int],
    bot_muls: Sequence[float],
    group_widths: Sequence[int],
    rounding: Rounding = "pycls",
) -> tuple[list[int], list[float], list[int]]:
    """Make each stage's bottleneck width ``w * b`` a multiple of its group width.

    The group width is first capped at the bottleneck width; the bottleneck width is then
    rounded to a multiple of the group width (of ``lcm(g, b)`` for integer ``b > 1``), and the
    stage width recomputed from it. Returns (widths, bot_muls, group_widths), per stage.
    """
    if not len(widths) == len(bot_muls) == len(group_widths):
        raise ValueError(
            f"widths, bot_muls and group_widths need one entry per stage, got lengths "
            f"{len(widths)}, {len(bot_muls)}, {len(group_widths)}"
        )
    for name, values in (("widths", widths), ("bot_muls", bot_muls), ("group_widths", group_widths)):
        if not all(v > 0 for v in values):
            raise ValueError(f"{name} must all be > 0, got {list(values)}")
    if not all(b < 1 or b % 1 == 0 for b in bot_muls):
        raise ValueError(f"bot_muls must be < 1 or an integer, got {list(bot_muls)}")
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}, got {rounding!r}")
    vs = [int(max(1, w * b)) for w, b in zip(widths, bot_muls)]
    gs = [int(min(g, v)) for g, v in zip(group_widths, vs)]
    if rounding == "pycls":
        ms = [int(np.lcm(g, int(b))) if b > 1 else g for g, b in zip(gs, bot_muls)]
        vs = [max(m, int(np.round(v / m) * m)) for v, m in zip(vs, ms)]
    else:
        vs = [_make_divisible_tv(v, g) for v, g in zip(vs, gs)]
    ws = [int(v / b) for v, b in zip(vs, bot_muls)]
    return ws, list(bot_muls), gs


@dataclass(frozen=True)
class StagePlan:
    """Per-stage parameters generated for a RegNet (lists of equal length, one per stage)."""

    depths: list[int]
    widths: list[int]
    group_widths: list[int]
    bot_muls: list[float]
    block: BlockWidths


def generate_regnet(
    w0: float,
    wa: float,
    wm: float,
    depth: int,
    group_width: int,
    bot_mul: float = 1.0,
    q: int = 8,
    rounding: Rounding = "pycls",
) -> StagePlan:
    """Generate per-stage depths, widths and group widths from the RegNet parameters."""
    if not isinstance(group_width, (int, np.integer)) or group_width < 1:
        raise ValueError(f"group_width must be an integer >= 1 (channels per group), got {group_width!r}")
    if not bot_mul > 0:
        raise ValueError(f"bot_mul must be > 0 (bottleneck width / block width), got {bot_mul!r}")
    block = quantized_linear_widths(w0, wa, wm, depth, q)
    widths, depths = stages_from_block_widths(block.widths)
    n = len(widths)
    widths, bot_muls, gws = adjust_block_compatibility(widths, [bot_mul] * n, [group_width] * n, rounding)
    return StagePlan(depths=depths, widths=widths, group_widths=gws, bot_muls=bot_muls, block=block)


def quantized_linear_widths_batch(
    w0: np.ndarray, wa: np.ndarray, wm: np.ndarray, depth: np.ndarray, q: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``quantized_linear_widths`` for N parameter sets, without validation.

    Returns (widths, exponents): (N, max depth) int64 arrays of per-block widths w_j and
    exponents k_j; entries j >= depth of a row are 0.
    """
    w0, wa, wm = (np.asarray(a, dtype=np.float64) for a in (w0, wa, wm))
    depth = np.asarray(depth, dtype=np.int64)
    j = np.arange(int(depth.max()))[None, :]
    mask = j < depth[:, None]
    u = j * wa[:, None] + w0[:, None]
    k = np.round(np.log(u / w0[:, None]) / np.log(wm[:, None]))
    ws = np.round(w0[:, None] * np.power(wm[:, None], k) / q).astype(np.int64) * q
    return np.where(mask, ws, 0), np.where(mask, k, 0).astype(np.int64)


def generate_regnet_batch(
    w0: np.ndarray,
    wa: np.ndarray,
    wm: np.ndarray,
    depth: np.ndarray,
    group_width: np.ndarray,
    bot_mul: np.ndarray | float = 1.0,
    q: int = 8,
) -> dict[str, np.ndarray]:
    """Vectorised ``generate_regnet`` (pycls rounding) for N configs, without validation.

    Returns padded (N, S) arrays ``depths``, ``widths``, ``group_widths``, ``bot_muls`` where S
    is the largest stage count; absent stages have depth 0 (the complexity functions skip them).
    Callers validate first (the design-space samplers only draw valid parameters).
    """
    depth = np.asarray(depth, dtype=np.int64)
    n = len(depth)
    ws, _ = quantized_linear_widths_batch(w0, wa, wm, depth, q)
    mask = np.arange(ws.shape[1])[None, :] < depth[:, None]
    # stage index of each block: number of width changes so far (rows are non-decreasing)
    change = np.zeros_like(ws, dtype=np.int64)
    change[:, 1:] = (ws[:, 1:] != ws[:, :-1]) & mask[:, 1:]
    stage = np.cumsum(change, axis=1)
    smax = int(stage[mask].max()) + 1
    flat = np.arange(n)[:, None] * smax + stage
    depths = np.bincount(flat[mask], minlength=n * smax).reshape(n, smax)
    widths = np.zeros(n * smax, dtype=np.int64)
    widths[flat[mask]] = ws[mask]
    widths = widths.reshape(n, smax)
    # compatibility step, elementwise (pycls rounding)
    b = np.broadcast_to(np.asarray(bot_mul, dtype=np.float64), (n,))[:, None] * np.ones((1, smax))
    g = np.broadcast_to(np.asarray(group_width, dtype=np.int64), (n,))[:, None] * np.ones((1, smax), np.int64)
    present = depths > 0
    v = np.maximum(1, (widths * b).astype(np.int64))
    g = np.minimum(g, v)
    bi = np.where(b > 1, b, 1).astype(np.int64)
    m = np.where(b > 1, np.lcm(g, bi), g)
    v = np.maximum(m, (np.round(v / m) * m).astype(np.int64))
    widths = np.where(present, (v / b).astype(np.int64), 0)
    return {
        "depths": depths,
        "widths": widths,
        "group_widths": np.where(present, g, 0),
        "bot_muls": np.where(present, b, 0.0),
    }
