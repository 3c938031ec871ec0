"""EDF, complexity-normalised EDF, KS distance and the empirical bootstrap, checked by hand and vs SciPy."""

import numpy as np
import pytest
from scipy import stats as sps

from regnet_zoo.design_space import (
    bootstrap_best,
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


@pytest.mark.parametrize("call,match", [
    (lambda: edf([]), "at least one"),
    (lambda: edf([1, np.nan]), "finite"),
    (lambda: edf([1, 2], weights=[1, 1]), "sum to 1"),
    (lambda: complexity_weights([0, 1]), "positive"),
    (lambda: bootstrap_best([1, 2], [1]), "same length"),
    (lambda: bootstrap_best([1], [1], alpha=1.5), "alpha"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
