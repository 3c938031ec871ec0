"""EDF, complexity-normalised EDF, KS distance and the empirical bootstrap, checked by hand and vs SciPy."""

import numpy as np
import pytest
from scipy import stats as sps

from regnet_zoo.design_space import (
    bootstrap_best,
    compare_populations,
    complexity_edges,
    complexity_weights,
    edf,
    edf_dominance,
    ks_statistic,
    normalized_edf,
)


def test_edf_by_hand_strict_inequality():
    errs = [3.0, 1.0, 2.0, 2.0]
    # F(e) = fraction with error < e
    np.testing.assert_allclose(edf(errs, at=[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 9.0]), [0, 0, .25, .25, .75, .75, 1])
    xs, ys = edf(errs)
    assert xs.tolist() == [1, 2, 2, 3] and ys.tolist() == [.25, .5, .75, 1.0]


def test_complexity_weights_by_hand():
    # log-bins over [1, 100] with 2 bins: 1, 1, 2 fall in the first, 100 in the second
    w = complexity_weights([1, 1, 2, 100], bins=2)
    np.testing.assert_allclose(w, [1 / 6, 1 / 6, 1 / 6, 1 / 2])
    # linear bins: [0, 50) and [50, 100]
    np.testing.assert_allclose(complexity_weights([1, 60, 70, 100], bins=2, log=False), [1 / 2, 1 / 6, 1 / 6, 1 / 6])
    # an empty middle bin does not take weight
    np.testing.assert_allclose(complexity_weights([1, 1, 100], bins=3, log=False), [1 / 4, 1 / 4, 1 / 2])
    np.testing.assert_allclose(complexity_weights([5, 5]), [.5, .5])


def _bin_mass(weights, complexity, edges):
    """Weighted mass of each bin [e_j, e_j+1) (last bin closed)."""
    j = np.clip(np.searchsorted(edges, complexity, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(j, weights=weights, minlength=len(edges) - 1)


def test_shared_edges_give_populations_the_same_target():
    # A spans [1, 50], B spans [5, 100]; pooled log-bins over [1, 100] with 2 bins: [1, 10), [10, 100]
    a, b = np.array([1.0, 2.0, 3.0, 50.0]), np.array([5.0, 20.0, 30.0, 100.0])
    edges = complexity_edges(a, b, bins=2)
    np.testing.assert_allclose(edges, [1, 10, 100])
    wa, wb = complexity_weights(a, edges=edges), complexity_weights(b, edges=edges)
    np.testing.assert_allclose(wa, [1 / 6, 1 / 6, 1 / 6, 1 / 2])
    np.testing.assert_allclose(wb, [1 / 2, 1 / 6, 1 / 6, 1 / 6])
    # both reweighted to the same uniform target: half the mass below 10, half above
    np.testing.assert_allclose(_bin_mass(wa, a, edges), [.5, .5])
    np.testing.assert_allclose(_bin_mass(wb, b, edges), [.5, .5])
    # bins from each population's own range (B's midpoint is sqrt(500) = 22.4) put B's target elsewhere
    own_b = complexity_weights(b, bins=2)
    np.testing.assert_allclose(own_b, [1 / 4] * 4)
    assert _bin_mass(own_b, b, edges)[0] == pytest.approx(0.25)
    # normalized_edf takes the same edges: F(e) with A's errors 10, 20, 30, 40
    np.testing.assert_allclose(normalized_edf([10, 20, 30, 40], a, at=[35, 45], edges=edges), [.5, 1.0])
    with pytest.raises(ValueError, match="outside the bin edges"):
        complexity_weights([0.5, 2.0], edges=edges)
    np.testing.assert_allclose(complexity_edges([1, 2, 3, 4], bins=3, log=False), [1, 2, 3, 4])


def test_normalized_edf_by_hand():
    errs, cx = [10.0, 20.0, 30.0, 40.0], [1, 1, 1, 100]
    # weights 1/6, 1/6, 1/6, 1/2: F(35) = 1/2, F(45) = 1
    np.testing.assert_allclose(normalized_edf(errs, cx, at=[15, 35, 45], bins=2), [1 / 6, 1 / 2, 1.0])
    # with a uniform complexity the normalised EDF is the plain EDF
    np.testing.assert_allclose(normalized_edf(errs, [1, 2, 3, 4], at=[25, 45], bins=4, log=False),
                               edf(errs, at=[25, 45]))


def test_ks_statistic_equals_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(30, 3, 80), rng.normal(32, 4, 60)
    assert ks_statistic(a, b) == pytest.approx(sps.ks_2samp(a, b).statistic)


def test_edf_dominance_sign():
    rng = np.random.default_rng(1)
    better, worse = rng.normal(30, 2, 100), rng.normal(35, 2, 100)
    assert edf_dominance(better, worse) > 0.3 > 0 > -0.3 > edf_dominance(worse, better)
    assert edf_dominance(better, better) == pytest.approx(0.0)


def test_bootstrap_small_cases_by_hand():
    # one pair per resample (fraction -> 1 of 2): the best is either value half the time
    r = bootstrap_best([5.0, 7.0], [1.0, 2.0], fraction=0.5, n_boot=4000, seed=0)
    assert (r.low, r.high) == (5.0, 7.0)
    # 50 pairs per resample: the low-error model (value 5) is drawn in every resample (miss prob 2^-50)
    r = bootstrap_best([5.0, 7.0], [1.0, 2.0], fraction=50, n_boot=2000, seed=0)
    assert (r.low, r.best, r.high) == (5.0, 5.0, 5.0)


def test_bootstrap_brackets_the_optimum():
    # error is a noisy parabola in the parameter with its minimum at 20 (the paper's depth finding)
    rng = np.random.default_rng(0)
    d = rng.integers(1, 60, 500)
    err = 30 + 0.01 * (d - 20) ** 2 + rng.normal(0, 0.5, d.size)
    r = bootstrap_best(d, err, seed=1)
    assert r.low <= 20 <= r.high and r.high - r.low < 15 and abs(r.best - 20) <= 4
    assert r.as_dict()["alpha"] == 0.05
    assert bootstrap_best(d, err, seed=1) == r  # seeded


def test_compare_populations_by_hand():
    # A = {1, 2} below B = {3, 4}: of the C(4, 2) = 6 equally likely rank splits under H0, only this one
    # has U_A = 0, so the exact one-sided p-value is 1/6
    r = compare_populations([1.0, 2.0], [3.0, 4.0], n_boot=200)
    assert r["mann_whitney_u"] == 0 and r["mann_whitney_p"] == pytest.approx(1 / 6)
    assert r["prob_lower_error"] == 1.0 and r["ks"] == 1.0
    # pooled grid 1..4: F_A - F_B = 1/2, 1, 1/2, 0 -> mean 1/2
    assert r["edf_dominance"] == pytest.approx(0.5) == pytest.approx(edf_dominance([1, 2], [3, 4]))
    # resamples: grid a1 <= a2 < b1 <= b2 gives (x + 1 + y + 0) / 4 with x = 1 if a1 = a2 else 1/2 and
    # y = 0 if b1 = b2 else 1/2; each tie has probability 1/2, so 3/8, 1/2, 5/8 with prob. 1/4, 1/2, 1/4
    assert r["edf_dominance_ci"] == pytest.approx([0.375, 0.625])


def test_compare_populations_significance():
    rng = np.random.default_rng(2)
    better, worse = rng.normal(30, 2, 60), rng.normal(32, 2, 60)
    r = compare_populations(better, worse, n_boot=2000, seed=3)
    assert r == compare_populations(better, worse, n_boot=2000, seed=3)  # seeded
    assert r["mann_whitney_p"] == pytest.approx(sps.mannwhitneyu(better, worse, alternative="less").pvalue)
    assert r["mann_whitney_p"] < 0.01 and 0 < r["edf_dominance_ci"][0] < r["edf_dominance"] < r["edf_dominance_ci"][1]
    # the same distribution: not significant, the interval straddles 0
    same = compare_populations(better, rng.normal(30, 2, 60), n_boot=2000)
    assert same["mann_whitney_p"] > 0.05 and same["edf_dominance_ci"][0] < 0 < same["edf_dominance_ci"][1]
    # the bootstrap draws are the statistic of resampled populations: check one by hand
    rs = np.random.default_rng(7)
    a, b = better[rs.integers(0, 60, 60)], worse[rs.integers(0, 60, 60)]
    grid = np.sort(np.concatenate([a, b]))
    by_hand = np.mean([(a <= g).mean() - (b <= g).mean() for g in grid])
    assert edf_dominance(a, b) == pytest.approx(by_hand)


@pytest.mark.parametrize("call,match", [
    (lambda: edf([]), "at least one"),
    (lambda: edf([1, np.nan]), "finite"),
    (lambda: edf([1, 2], weights=[1, 1]), "sum to 1"),
    (lambda: complexity_weights([0, 1]), "positive"),
    (lambda: complexity_weights([1, 2], edges=[3, 2]), "ascending"),
    (lambda: compare_populations([1, 2], [3], alpha=2), "alpha"),
    (lambda: bootstrap_best([1, 2], [1]), "same length"),
    (lambda: bootstrap_best([1], [1], alpha=1.5), "alpha"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
