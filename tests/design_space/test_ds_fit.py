"""Quantized-linear fit: exact on the paper's models and on random RegNets, e_fit > 0 otherwise."""

import numpy as np
import pytest

from regnet_zoo.config import RegNetCfg
from regnet_zoo.design_space import fit_error, fit_quantized_linear, sample
from regnet_zoo.generator import quantized_linear_widths
from regnet_zoo.registry import MODELS

PAPER = [n for n, e in MODELS.items() if e.paper]


def test_fit_error_by_hand():
    assert fit_error([16, 32], [16, 16]) == pytest.approx(np.log(2) / 2)
    assert fit_error([16, 8], [16, 16]) == pytest.approx(np.log(2) / 2)  # |log| : under- and over-shoot count
    with pytest.raises(ValueError, match="same non-zero length"):
        fit_error([1, 2], [1])


@pytest.mark.parametrize("name", PAPER)
def test_paper_models_fit_exactly_and_regenerate(name):
    cfg = MODELS[name].cfg
    f = fit_quantized_linear(cfg.block_widths)
    assert f.e_fit == 0.0 and f.depth == cfg.depth
    assert list(f.predicted) == cfg.block_widths == list(f.observed)
    # the fitted parameters generate the same network (stages after the group compatibility step too)
    refit = RegNetCfg(depth=f.depth, w0=f.w0, wa=f.wa, wm=f.wm, group_width=cfg.group_width, se_ratio=cfg.se_ratio)
    assert refit.block_widths == cfg.block_widths and refit.to_anynet() == cfg.to_anynet()
    assert f.w0 == cfg.w0  # block 0 has width w0, so w0 is determined


def test_random_regnets_fit_exactly():
    for s in sample("regnetx", 12, seed=3, flops="200e6:4e9").samples:
        f = fit_quantized_linear(s.cfg.block_widths)
        assert f.e_fit == 0.0, s.params
        assert quantized_linear_widths(f.w0, f.wa, f.wm, f.depth).widths.tolist() == s.cfg.block_widths


@pytest.mark.parametrize("widths", [
    [64] * 3 + [128] * 4 + [256] * 6 + [512] * 3,  # ResNet-50's stages: depths 3, 4, 6, 3 do not grow linearly
    [16, 256, 256, 512, 64],  # not monotone
    [32, 40, 48, 56, 64, 72, 80, 88],  # linear but not quantized (8 distinct widths in 8 blocks)
])
def test_non_regnet_widths_have_positive_error(widths):
    f = fit_quantized_linear(widths)
    assert f.e_fit == pytest.approx(fit_error(f.predicted, widths))
    assert f.e_fit > 0.01


def test_fit_is_the_best_on_a_brute_force_grid():
    # independent check on a non-RegNet sequence: no (w0, wa, wm) on a plain grid does better
    obs = np.array([24, 24, 48, 64, 64, 160, 160, 200])
    f = fit_quantized_linear(obs)
    best = min(fit_error(quantized_linear_widths(w0, wa, wm, len(obs)).widths, obs)
               for w0 in range(8, 56, 8) for wa in np.arange(0.5, 60, 0.5) for wm in np.arange(1.5, 3.0001, 0.05))
    assert f.e_fit <= best + 1e-12


def test_bad_input():
    with pytest.raises(ValueError, match="positive numbers"):
        fit_quantized_linear([16, 0])
    with pytest.raises(ValueError, match="multiples of q"):
        fit_quantized_linear([16, 32], w0_candidates=[12])
    with pytest.raises(ValueError, match="wm_range"):
        fit_quantized_linear([16, 32], wm_range=(0.5, 2))
