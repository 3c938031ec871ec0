"""Statistics of model populations, no torch: error EDFs (Radosavovic et al. 2019/2020; a design space
whose EDF lies left/above is better), complexity-normalised EDFs ("On Network Design Spaces for Visual
Recognition", Sec. 4), the paper's empirical bootstrap (Sec. 3.1; pycls ``analysis.get_filters``) and
the comparison of two populations (SciPy's Mann-Whitney U test, imported on use).
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
    # F(e) counts the models with error < e: the cumulative weight before e's left insertion point
    return np.concatenate([[0.0], cum])[np.searchsorted(xs, np.asarray(at, dtype=np.float64), side="left")]


def complexity_edges(*complexities, bins: int = 10, log: bool = True) -> np.ndarray:
    """(bins + 1,) bin edges spanning the pooled [min, max] of all given complexity arrays.

    Geometrically spaced when ``log`` (the values must be > 0). Pass the result as ``edges`` to
    ``complexity_weights`` / ``normalized_edf`` of every population so that all are reweighted toward
    the same uniform target; bins taken from each population's own range are not comparable.
    """
    if not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if not complexities:
        raise ValueError("need at least one complexity array")
    c = np.concatenate([_complexity(x, log) for x in complexities])
    lo, hi = float(c.min()), float(c.max())
    if hi == lo:
        return np.array([lo, hi])
    return np.geomspace(lo, hi, bins + 1) if log else np.linspace(lo, hi, bins + 1)


def _complexity(complexity, log: bool) -> np.ndarray:
    c = np.asarray(complexity, dtype=np.float64).reshape(-1)
    if c.size == 0 or not np.all(np.isfinite(c)) or (log and np.any(c <= 0)):
        raise ValueError("complexity must be a non-empty array of " + ("positive" if log else "finite") + " numbers")
    return c


def complexity_weights(complexity, bins: int = 10, log: bool = True, *, edges=None) -> np.ndarray:
    """Per-model weights making the complexity distribution uniform over equal bins.

    The bins are ``edges`` (ascending, in the complexity's units, e.g. from ``complexity_edges`` over
    several populations) or, without it, ``bins`` equal bins over [min, max] of ``complexity`` (in log
    space when ``log``). Each model in bin j gets 1 / (k' m_j), m_j the bin's count and k' the number
    of non-empty bins. Sums to 1. Values outside ``edges`` are an error.
    """
    c = _complexity(complexity, log)
    if edges is None:
        edges = complexity_edges(c, bins=bins, log=log)
    e = np.asarray(edges, dtype=np.float64).reshape(-1)
    if e.size < 2 or np.any(np.diff(e) < 0) or (log and e[0] <= 0):
        raise ValueError("edges must be >= 2 ascending values (positive with log=True)")
    if e[0] == e[-1]:  # one point: nothing to reweight
        if np.any(c != e[0]):
            raise ValueError(f"complexity values outside the bin edges [{e[0]:g}, {e[-1]:g}]")
        return np.full(c.size, 1.0 / c.size)
    tol = 1e-9 * (e[-1] - e[0])  # edges from geomspace may miss the extremes by a rounding error
    if np.any(c < e[0] - tol) or np.any(c > e[-1] + tol):
        raise ValueError(f"complexity values outside the bin edges [{e[0]:g}, {e[-1]:g}]")
    x, xe = (np.log(c), np.log(e)) if log else (c, e)
    j = np.clip(np.searchsorted(xe, x, side="right") - 1, 0, e.size - 2)  # the last bin includes its right edge
    counts = np.bincount(j, minlength=e.size - 1)
    return 1.0 / (np.count_nonzero(counts) * counts[j])


def normalized_edf(errors, complexity, at=None, bins: int = 10, log: bool = True, *, edges=None):
    """``edf`` weighted by ``complexity_weights``: the complexity distribution made uniform.

    Pass ``edges=complexity_edges(c_a, c_b, ...)`` to compare several populations."""
    return edf(errors, at=at, weights=complexity_weights(complexity, bins, log, edges=edges))


def ks_statistic(errors_a, errors_b) -> float:
    """Kolmogorov-Smirnov distance sup_e |F_a(e) - F_b(e)| between two error EDFs."""
    a, b = _errors(errors_a), _errors(errors_b)
    grid = np.concatenate([a, b, [np.inf]])
    return float(np.max(np.abs(edf(a, at=grid) - edf(b, at=grid))))


def _dominance_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``edf_dominance`` of each row pair of a (r, n_a) and b (r, n_b): with F including the point,
    mean_g F_a(g) - F_b(g) over the pooled row g equals sum_{g, i} 1[a_i <= g] / (n_a N) minus the same for b."""
    pooled = np.concatenate([a, b], axis=1)[:, None, :]
    fa, fb = ((pooled >= x[:, :, None]).sum(axis=(1, 2)) / (x.shape[1] * pooled.shape[2]) for x in (a, b))
    return fa - fb


def edf_dominance(errors_a, errors_b) -> float:
    """Mean of F_a(e) - F_b(e) over the pooled errors (F just after each point, i.e. including it):
    > 0 when A's EDF lies left of B's."""
    a, b = _errors(errors_a), _errors(errors_b)
    return float(_dominance_rows(a[None], b[None])[0])


def compare_populations(errors_a, errors_b, *, n_boot: int = 10_000, alpha: float = 0.05,
                        seed: int | None = 0) -> dict[str, float | list[float]]:
    """Is population A better (lower errors) than B? Distances and significance, JSON-able.

    * ``edf_dominance`` (> 0: A's EDF left of B's) and its ``edf_dominance_ci``: the (1 - alpha)
      percentile interval over ``n_boot`` bootstrap resamples (each population resampled with
      replacement, independently);
    * ``ks``: sup |F_a - F_b|;
    * ``mann_whitney_p``: one-sided Mann-Whitney U test (SciPy) of "A's errors are stochastically
      smaller than B's" (ties get mid-ranks and the tie-corrected normal approximation, exact for
      small samples without ties), with ``mann_whitney_u`` (SciPy's U of A) and ``prob_lower_error``
      = 1 - U / (n_a n_b): the chance that a random model of A has the lower error (ties count half).
    """
    try:
        from scipy.stats import mannwhitneyu
    except ImportError as e:  # scipy comes with scikit-learn (the train extra)
        raise ImportError("compare_populations needs SciPy for the Mann-Whitney U test: pip install scipy") from e
    a, b = _errors(errors_a), _errors(errors_b)
    if not 0 < alpha < 1 or not isinstance(n_boot, int) or n_boot < 1:
        raise ValueError("alpha must be in (0, 1) and n_boot an integer >= 1")
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    chunk = max(1, 2_000_000 // (a.size + b.size) ** 2)  # keeps the (chunk, n, N) comparison near 2M cells
    for start in range(0, n_boot, chunk):
        r = min(chunk, n_boot - start)
        boot[start:start + r] = _dominance_rows(a[rng.integers(0, a.size, (r, a.size))],
                                                b[rng.integers(0, b.size, (r, b.size))])
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    mw = mannwhitneyu(a, b, alternative="less")
    return {
        "edf_dominance": edf_dominance(a, b),
        "edf_dominance_ci": [float(lo), float(hi)],
        "ci_alpha": alpha,
        "ks": ks_statistic(a, b),
        "mann_whitney_u": float(mw.statistic),
        "mann_whitney_p": float(mw.pvalue),
        "prob_lower_error": float(1.0 - mw.statistic / (a.size * b.size)),
        "n_boot": n_boot,
    }


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
    """Empirical bootstrap of the best model's value of one parameter.

    Each of ``n_boot`` resamples draws ``max(1, round(fraction * n))`` (value, error) pairs with
    replacement (``fraction > 1`` means that many pairs) and keeps the value of the lowest error;
    the alpha/2, 50% and 1 - alpha/2 percentiles of those values are the interval and ``best``.
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
