"""The paper's quantized-linear fit of a network's per-block widths w_j (Sec. 3.3). No torch.

With d the network's depth, (w0, wa, wm) minimise e_fit = (1/d) sum_j |log(w_hat_j / w_j)|, the mean
absolute log-ratio of predicted (``generator.quantized_linear_widths``) to observed widths; e_fit = 0
means the widths are exactly a RegNet's. A grid search as in the paper, made exact along wa: w0 runs
over multiples of q within a factor of 2 of the narrowest block, wm over a grid on ``wm_range``
(refined twice around the best candidates); for fixed (w0, wm) the exponent of block j only changes
when r = wa / w0 crosses (wm^(k - 1/2) - 1) / j, so one r between consecutive critical values
enumerates every width sequence reachable by wa.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from regnet_zoo.generator import quantized_linear_widths, quantized_linear_widths_batch

_CHUNK = 2_000_000  # candidate-block elements evaluated per NumPy call


@dataclass(frozen=True)
class LinearFit:
    """Result of ``fit_quantized_linear``: parameters, their predicted widths and e_fit."""

    w0: int
    wa: float
    wm: float
    depth: int
    e_fit: float
    observed: tuple[int, ...]
    predicted: tuple[int, ...]

    @property
    def widths_cont(self) -> np.ndarray:
        """The fitted line u_j = w0 + wa * j (continuous widths, channels)."""
        return self.w0 + self.wa * np.arange(self.depth)

    def as_dict(self) -> dict[str, float]:
        return {"w0": self.w0, "wa": self.wa, "wm": self.wm, "depth": self.depth, "e_fit": self.e_fit}


def fit_error(predicted, observed) -> float:
    """e_fit: mean |log(predicted / observed)| over blocks."""
    p, o = np.asarray(predicted, dtype=np.float64), np.asarray(observed, dtype=np.float64)
    if p.shape != o.shape or p.size == 0:
        raise ValueError(f"predicted and observed widths need the same non-zero length, got {p.size}, {o.size}")
    return float(np.mean(np.abs(np.log(p / o))))


def _candidate_ratios(w0: np.ndarray, wm: np.ndarray, depth: int, w_max: float) -> np.ndarray:
    """(P, C) ratios r = wa / w0 hitting every distinct exponent sequence for each (w0, wm) pair."""
    if depth == 1:
        return np.zeros((len(w0), 1))
    # exponent levels that can matter: up to the first whose width exceeds twice the widest block
    k_max = int(np.ceil(np.max(np.log(2 * w_max / w0) / np.log(wm)))) + 1
    k = np.arange(1, max(k_max, 1) + 1)
    t = np.power(wm[:, None], k[None, :] - 0.5) - 1  # (P, K) thresholds of 1 + r j
    useful = (w0[:, None] * np.power(wm[:, None], k[None, :] - 1)) <= 2 * w_max
    t = np.where(useful, t, np.nan)
    j = np.arange(1, depth)
    crit = (t[:, :, None] / j[None, None, :]).reshape(len(w0), -1)
    crit.sort(axis=1)  # NaN last
    mids = np.concatenate([crit[:, :1] / 2, (crit[:, 1:] + crit[:, :-1]) / 2, crit[:, -1:] * 1.5], axis=1)
    return np.where(np.isfinite(mids), mids, 0.0)


def _best_of(w0: np.ndarray, wm: np.ndarray, obs: np.ndarray, q: int,
             top: int) -> list[tuple[float, int, float, float]]:
    """Evaluate all (w0, wm) pairs with their candidate ratios; return the ``top`` best
    (e_fit, w0, wa, wm), one per pair."""
    d = len(obs)
    log_obs = np.log(obs)
    found: list[tuple[float, int, float, float]] = []
    r_all = _candidate_ratios(w0, wm, d, float(obs.max()))
    c = r_all.shape[1]
    step = max(1, _CHUNK // (c * d))
    for s in range(0, len(w0), step):
        w0c, wmc, rc = w0[s:s + step], wm[s:s + step], r_all[s:s + step]
        p = len(w0c)
        ws, _ = quantized_linear_widths_batch(
            np.repeat(w0c, c), (rc * w0c[:, None]).reshape(-1), np.repeat(wmc, c), np.full(p * c, d), q)
        err = np.abs(np.log(ws) - log_obs[None, :]).mean(axis=1).reshape(p, c)
        best_c = err.argmin(axis=1)
        best_e = err[np.arange(p), best_c]
        for i in np.argsort(best_e, kind="stable")[:top]:
            found.append((float(best_e[i]), int(w0c[i]), float(rc[i, best_c[i]] * w0c[i]), float(wmc[i])))
    found.sort(key=lambda f: f[0])
    return found[:top]


def _tidy(w0: int, wa: float, wm: float, obs: np.ndarray, q: int, e_best: float) -> tuple[float, float]:
    """Round wa and wm to as few decimals as keep the same e_fit (readable parameters)."""
    for dw in (1, 2, 3, 4, 6):
        for dm in (2, 3, 4, 5, 6):
            wa_r, wm_r = round(wa, dw), round(wm, dm)
            if wm_r > 1 and wa_r >= 0:
                pred = quantized_linear_widths(w0, wa_r, wm_r, len(obs), q).widths
                if fit_error(pred, obs) <= e_best + 1e-12:
                    return wa_r, wm_r
    return wa, wm


def fit_quantized_linear(
    block_widths,
    *,
    q: int = 8,
    wm_range: tuple[float, float] = (1.5, 3.0),
    wm_step: float = 0.05,
    w0_candidates=None,
    top: int = 8,
) -> LinearFit:
    """Fit (w0, wa, wm) to per-block widths (length d = depth); see the module docstring.

    ``w0_candidates`` overrides the w0 grid (multiples of ``q``); ``top`` pairs are refined.
    """
    obs = np.asarray(block_widths, dtype=np.float64).reshape(-1)
    if obs.size == 0 or np.any(~np.isfinite(obs)) or np.any(obs <= 0):
        raise ValueError(f"block widths must be a non-empty sequence of positive numbers, got {list(obs)}")
    lo, hi = wm_range
    if not 1 < lo <= hi:
        raise ValueError(f"wm_range must satisfy 1 < low <= high, got {wm_range}")
    if w0_candidates is None:
        w_min = obs.min()
        w0s = np.arange(max(q, int(np.ceil(w_min / 2 / q)) * q), int(2 * w_min) + 1, q)
        w0s = w0s if len(w0s) else np.array([max(q, int(round(w_min / q)) * q)])
    else:
        w0s = np.asarray(sorted({int(v) for v in w0_candidates}))
        if not len(w0s) or np.any(w0s <= 0) or np.any(w0s % q):
            raise ValueError(f"w0_candidates must be positive multiples of q={q}, got {list(w0_candidates)}")
    wms = np.round(np.arange(lo, hi + wm_step / 2, wm_step), 10)
    g0, gm = np.meshgrid(w0s, wms, indexing="ij")
    best = _best_of(g0.reshape(-1).astype(np.float64), gm.reshape(-1), obs, q, top)
    step = wm_step
    for _ in range(2):  # refine wm around the best pairs (same w0), 20x finer each time
        if best[0][0] == 0:
            break
        fine = step / 20
        offsets = np.arange(-step, step + fine / 2, fine)
        pairs = {(w0, round(float(np.clip(wm + o, lo, hi)), 12)) for _, w0, _, wm in best for o in offsets}
        w0a, wma = (np.array(v, dtype=np.float64) for v in zip(*sorted(pairs)))
        best = sorted(best + _best_of(w0a, wma, obs, q, top), key=lambda f: f[0])[:top]
        step = fine
    e_best, w0, wa, wm = best[0]
    wa, wm = _tidy(w0, wa, wm, obs, q, e_best)
    pred = quantized_linear_widths(w0, wa, wm, len(obs), q).widths
    return LinearFit(w0=int(w0), wa=float(wa), wm=float(wm), depth=len(obs), e_fit=fit_error(pred, obs),
                     observed=tuple(int(v) for v in obs), predicted=tuple(int(v) for v in pred))
