"""Seeded, vectorised sampling of design spaces, constrained to a complexity band. No torch.

Candidates are drawn in batches as padded (N, S) stage arrays, their exact complexity computed at
once (``counting.complexity_arrays``) and those inside the bands kept, in draw order, until ``n``
distinct configs are found. The same (space, seed, constraints, batch_size) gives the same models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from regnet_zoo.config import AnyNetCfg, ModelCfg, RegNetCfg, StageCfg
from regnet_zoo.counting import METRICS, complexity_arrays
from regnet_zoo.design_space.spaces import AnyNetSpace, DesignSpace, RegNetSpace, get_space
from regnet_zoo.generator import generate_regnet_batch, quantized_linear_widths_batch

Band = tuple[float, float]


@dataclass(frozen=True)
class Sample:
    """One sampled model: its config, design parameters (paper's names) and exact complexity."""

    cfg: ModelCfg
    params: dict[str, Any]
    complexity: dict[str, int]


@dataclass
class SampleResult:
    """Sampled models plus the acceptance statistics of the draw."""

    space: DesignSpace
    samples: list[Sample]
    drawn: int = 0  # candidates drawn
    compatible: int = 0  # ... that were valid / compatible configs
    in_band: int = 0  # ... that also met the complexity bands
    settings: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)


class SamplingError(RuntimeError):
    """Too few configs met the constraints within the candidate budget."""


def parse_band(text: str | Band | None) -> Band | None:
    """'360e6:400e6' or (lo, hi) -> (lo, hi); None passes through."""
    if text is None:
        return None
    if isinstance(text, str):
        parts = text.split(":")
        if len(parts) != 2:
            raise ValueError(f"a complexity band is written LOW:HIGH (e.g. 360e6:400e6), got {text!r}")
        try:
            lo, hi = (float(p) if p.strip() else (0.0 if i == 0 else np.inf) for i, p in enumerate(parts))
        except ValueError as e:
            raise ValueError(f"a complexity band is written LOW:HIGH with numbers, got {text!r}") from e
    else:
        lo, hi = (float(v) for v in text)
    if not 0 <= lo <= hi:
        raise ValueError(f"a complexity band needs 0 <= low <= high, got ({lo}, {hi})")
    return lo, hi


def _log_uniform(rng: np.random.Generator, low: float, high: float, q: float, n: int) -> np.ndarray:
    """Log-uniform on [low, high] quantized up to multiples of q (pycls' log_uniform rule)."""
    lo = low - min(q, low / 2)
    f = np.exp(rng.uniform(np.log(lo), np.log(high), n))
    v = np.ceil(f / q - 1e-9) * q
    decimals = max(0, -int(np.floor(np.log10(q))) + 1) if q < 1 else 0
    return np.clip(np.round(v, decimals), low, high)


def _sorted_uniform(rng: np.random.Generator, n_values: int, s: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform non-decreasing length-s sequences of indices in [0, n_values) (stars and bars).

    Draws s distinct indices from n_values + s - 1 (rows with repeats are rejected, returned as
    ``ok = False``), sorts them and subtracts 0..s-1. Returns (indices (n, s), ok (n,)).
    """
    c = rng.integers(0, n_values + s - 1, size=(n, s))
    c.sort(axis=1)
    ok = np.all(np.diff(c, axis=1) > 0, axis=1)
    return c - np.arange(s)[None, :], ok


def _draw_anynet(space: AnyNetSpace, rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], int]:
    """Draw n configs as (n, S) arrays; returns the arrays of the compatible ones and their count."""
    s = space.num_stages

    def indices(n_values: int, increasing: bool) -> tuple[np.ndarray, np.ndarray]:
        return _sorted_uniform(rng, n_values, s, n) if increasing else (rng.integers(0, n_values, (n, s)), True)

    di, ok_d = indices(space.max_depth, space.depths_increasing)
    wi, ok_w = indices(space.width_values, space.widths_increasing)
    ok = np.ones(n, dtype=bool) & ok_d & ok_w
    bs, gs = np.asarray(space.bottleneck_ratios), np.asarray(space.group_widths)
    b = bs[rng.integers(0, len(bs), size=(n, 1) if space.shared_b else (n, s))] * np.ones((1, s), np.int64)
    g = gs[rng.integers(0, len(gs), size=(n, 1) if space.shared_g else (n, s))] * np.ones((1, s), np.int64)
    w = (wi + 1) * space.width_quantum
    wb = w // b
    ok &= np.all((w % b == 0) & (g <= wb) & (wb % g == 0), axis=1)
    out = {"depths": di + 1, "widths": w, "b": b, "group_widths": g}
    return {key: v[ok] for key, v in out.items()}, int(ok.sum())


def _draw_regnet(space: RegNetSpace, rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], int]:
    """Draw n parameter sets; returns the arrays of the valid ones and their count."""
    d = rng.integers(space.depth[0], space.depth[1] + 1, n)
    w0 = _log_uniform(rng, space.w0[0], space.w0[1], space.q, n)
    wa = w0.copy() if space.w0_equals_wa else _log_uniform(rng, space.wa[0], space.wa[1], space.wa_quantum, n)
    wm = _log_uniform(rng, space.wm[0], space.wm[1], space.wm_quantum, n)
    b = np.asarray(space.bottleneck_ratios)[rng.integers(0, len(space.bottleneck_ratios), n)]
    g = np.asarray(space.group_widths)[rng.integers(0, len(space.group_widths), n)]
    # stage counts before the compatibility step, as pycls counts them; a RegNet whose
    # quantization skips an exponent (stages != max exponent + 1) is rejected like pycls does
    ws, k = quantized_linear_widths_batch(w0, wa, wm, d, space.q)
    num_s = 1 + ((ws[:, 1:] != ws[:, :-1]) & (ws[:, 1:] > 0)).sum(axis=1)
    ok = (num_s == k.max(axis=1) + 1) & (num_s >= space.num_stages[0]) & (num_s <= space.num_stages[1])
    params = {"d": d, "w0": w0, "wa": wa, "wm": wm, "b": b, "g": g}
    out = {key: v[ok] for key, v in params.items()}
    out.update(generate_regnet_batch(out["w0"], out["wa"], out["wm"], out["d"], out["g"], 1.0 / out["b"], space.q)
               if ok.any() else {})
    return out, int(ok.sum())


def _anynet_cfg(space: AnyNetSpace, row: dict[str, np.ndarray]) -> tuple[ModelCfg, dict[str, Any]]:
    stages = tuple(
        StageCfg(depth=int(d), width=int(w), group_width=int(g), bot_mul=1.0 / int(b))
        for d, w, b, g in zip(row["depths"], row["widths"], row["b"], row["group_widths"]))
    cfg = AnyNetCfg(stages=stages, stem_width=space.stem_width, se_ratio=space.se_ratio)
    params = {"ds": [int(v) for v in row["depths"]], "ws": [int(v) for v in row["widths"]],
              "bs": [int(v) for v in row["b"]], "gs": [int(v) for v in row["group_widths"]]}
    return cfg, params


def _regnet_cfg(space: RegNetSpace, row: dict[str, np.ndarray]) -> tuple[ModelCfg, dict[str, Any]]:
    cfg = RegNetCfg(depth=int(row["d"]), w0=int(row["w0"]), wa=float(row["wa"]), wm=float(row["wm"]),
                    group_width=int(row["g"]), bot_mul=1.0 / int(row["b"]), se_ratio=space.se_ratio,
                    stem_width=space.stem_width, q=space.q)
    params = {"d": cfg.depth, "w0": cfg.w0, "wa": cfg.wa, "wm": cfg.wm, "b": int(row["b"]), "g": cfg.group_width}
    return cfg, params


def sample(
    space: str | DesignSpace,
    n: int,
    *,
    seed: int = 0,
    flops: str | Band | None = None,
    params: str | Band | None = None,
    acts: str | Band | None = None,
    resolution: int = 224,
    in_chans: int = 3,
    num_classes: int = 1000,
    batch_size: int = 100_000,
    max_candidates: int = 20_000_000,
) -> SampleResult:
    """Draw ``n`` distinct models from ``space`` whose exact complexity lies in the given bands.

    Bands are inclusive (lo, hi) tuples or 'LO:HI' strings in raw counts (flops = multiply-adds at
    ``resolution`` x ``resolution``, ``in_chans`` input channels and a ``num_classes`` head).
    Raises ``SamplingError`` with the acceptance rates when the budget runs out.
    """
    space = get_space(space)
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of models) must be an integer >= 1, got {n!r}")
    bands = {m: parse_band(v) for m, v in (("flops", flops), ("params", params), ("acts", acts))}
    rng = np.random.default_rng(seed)
    result = SampleResult(space, [], settings={
        "seed": seed, "resolution": resolution, "in_chans": in_chans, "num_classes": num_classes,
        **{m: list(b) if b else None for m, b in bands.items()}})
    draw_fn, make = (_draw_anynet, _anynet_cfg) if isinstance(space, AnyNetSpace) else (_draw_regnet, _regnet_cfg)
    seen: set = set()
    while len(result.samples) < n:
        if result.drawn >= max_candidates:
            raise SamplingError(
                f"only {len(result.samples)} of {n} models of {space.name} found in {result.drawn} candidates "
                f"({result.compatible} compatible, {result.in_band} in the complexity bands "
                f"{ {m: b for m, b in bands.items() if b} }); widen the bands or raise max_candidates")
        m = min(batch_size, max_candidates - result.drawn)
        draw, n_ok = draw_fn(space, rng, m)
        result.drawn += m
        result.compatible += n_ok
        if not n_ok:
            continue
        bot_muls = 1.0 / (draw["b"] if draw["b"].ndim == 2 else draw["b"][:, None])
        cx = complexity_arrays(
            draw["depths"], draw["widths"], draw["group_widths"], bot_muls,
            2, space.se_ratio, space.stem_width, resolution, in_chans, num_classes)
        keep = np.ones(n_ok, dtype=bool)
        for metric, band in bands.items():
            if band:
                keep &= (cx[metric] >= band[0]) & (cx[metric] <= band[1])
        result.in_band += int(keep.sum())
        for j in np.flatnonzero(keep):
            row = {k: v[j] for k, v in draw.items()}
            cfg, design = make(space, row)
            if cfg in seen:
                continue
            seen.add(cfg)
            result.samples.append(Sample(cfg, design, {mm: int(cx[mm][j]) for mm in METRICS}))
            if len(result.samples) == n:
                break
    return result
