"""Statistics of model populations: error EDFs, complexity-normalised EDFs, empirical bootstrap. No torch.

* Error EDF (Radosavovic et al. 2019/2020): F(e) = (1/n) sum_i 1[e_i < e], the fraction of
  models with error below e. A design space whose EDF lies to the left/above is better.
* Normalised EDF ("On Network Design Spaces for Visual Recognition", Sec. 4): F(e) =
  sum_i w_i 1[e_i < e] with per-model weights that make the complexity distribution uniform:
  the complexity range is split into k bins and each of the m_j models of bin j gets weight
  1 / (k' m_j), k' = number of non-empty bins.
* Empirical bootstrap (paper Sec. 3.1; pycls ``analysis.get_filters``): resample a fraction
  (25%) of the (value, error) pairs with replacement, keep the value of the lowest-error model,
  repeat B times; the 2.5/50/97.5 percentiles give the 95% interval of the best model's value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _errors(errors) -> np.ndarray:
    e = np.asarray(errors, dtype=np.float64).reshape(-1)
    if e.size == 0:
        raise ValueError("need at least one error value")
    if not np.all(np.isfinite(e)):
        raise ValueError("errors must be finite numbers")
    return e


def edf(errors, at=None, weights=None) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Error EDF F(e) = sum_i w_i 1[e_i < e] (w_i = 1/n unless ``weights`` are given).

    With ``at`` (array of errors) returns F evaluated there. Without, returns the step points
    ``(sorted errors, F just after each)`` ready for plotting as a staircase.
    """
    e = _errors(errors)
    w = np.full(e.size, 1.0 / e.size) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != e.shape or np.any(w < 0) or not np.isclose(w.sum(), 1.0):
        raise ValueError("weights must be non-negative, one per error, and sum to 1")
    order = np.argsort(e, kind="stable")
    xs, cum = e[order], np.cumsum(w[order])
    if at is None:
        return xs, cum
    at = np.asarray(at, dtype=np.float64)
    # strict inequality: F(e) counts models with error < e
    idx = np.searchsorted(xs, at, side="left")
    return np.where(idx > 0, cum[np.maximum(idx - 1, 0)], 0.0)


def complexity_weights(complexity, bins: int = 10, log: bool = True) -> np.ndarray:
    """Per-model weights making the complexity distribution uniform over ``bins`` equal bins.

    Bins span [min, max] of ``complexity`` (in log space when ``log``); each model in bin j gets
    1 / (k' m_j) where m_j is the bin's count and k' the number of non-empty bins. Sums to 1.
    """
    c = np.asarray(complexity, dtype=np.float64).reshape(-1)
    if c.size == 0 or np.any(c <= 0 if log else ~np.isfinite(c)):
        raise ValueError("complexity must be a non-empty array of positive numbers")
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    x = np.log(c) if log else c
    lo, hi = x.min(), x.max()
    if hi == lo:
        return np.full(c.size, 1.0 / c.size)
    j = np.minimum(((x - lo) / (hi - lo) * bins).astype(np.int64), bins - 1)
    counts = np.bincount(j, minlength=bins)
    return 1.0 / (np.count_nonzero(counts) * counts[j])


def normalized_edf(errors, complexity, at=None, bins: int = 10, log: bool = True):
    """Complexity-normalised error EDF (see module docstring); same returns as ``edf``."""
    return edf(errors, at=at, weights=complexity_weights(complexity, bins, log))


def ks_statistic(errors_a, errors_b) -> float:
    """Kolmogorov-Smirnov distance sup_e |F_a(e) - F_b(e)| between two error EDFs."""
    a, b = _errors(errors_a), _errors(errors_b)
    grid = np.concatenate([a, b, [np.inf]])
    return float(np.max(np.abs(edf(a, at=grid) - edf(b, at=grid))))


def edf_dominance(errors_a, errors_b) -> float:
    """Mean of F_a(e) - F_b(e) over the pooled errors: > 0 when A's EDF lies left of B's."""
    a, b = _errors(errors_a), _errors(errors_b)
    grid = np.sort(np.concatenate([a, b]))
    grid = np.nextafter(grid, np.inf)  # evaluate just after each step, so F includes the point
    return float(np.mean(edf(a, at=grid) - edf(b, at=grid)))


@dataclass(frozen=True)
class BootstrapInterval:
    """Where the best model's value lies: ``low``/``high`` bound the (1 - alpha) interval."""

    low: float
    best: float  # median of the bootstrapped best values
    high: float
    alpha: float = 0.05

    def as_dict(self) -> dict[str, float]:
        return {"low": self.low, "best": self.best, "high": self.high, "alpha": self.alpha}


def bootstrap_best(
    values,
    errors,
    *,
    fraction: float = 0.25,
    n_boot: int = 10_000,
    alpha: float = 0.05,
    seed: int | None = 0,
) -> BootstrapInterval:
    """Empirical bootstrap of the best model's value of one parameter (see module docstring).

    Each of ``n_boot`` resamples draws ``max(1, round(fraction * n))`` (value, error) pairs with
    replacement (``fraction > 1`` means that many pairs) and keeps the value of the lowest error.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    e = _errors(errors)
    if v.shape != e.shape:
        raise ValueError(f"values and errors need the same length, got {v.size} and {e.size}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not fraction > 0 or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError("fraction must be > 0 and n_boot an integer >= 1")
    n = e.size
    m = int(fraction) if fraction > 1 else max(1, int(round(fraction * n)))
    rng = np.random.default_rng(seed)
    best = np.empty(n_boot)
    for start in range(0, n_boot, 2048):  # chunks keep memory at 2048 x m
        idx = rng.integers(0, n, size=(min(2048, n_boot - start), m))
        best[start:start + len(idx)] = v[idx[np.arange(len(idx)), np.argmin(e[idx], axis=1)]]
    lo, med, hi = np.percentile(best, [100 * alpha / 2, 50, 100 * (1 - alpha / 2)])
    return BootstrapInterval(float(lo), float(med), float(hi), alpha)
