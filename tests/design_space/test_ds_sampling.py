"""Sampling: seeded, in band (exact complexity), constraints of each space, compatibility, errors."""

import subprocess
import sys

import numpy as np
import pytest

from regnet_zoo.config import RegNetCfg
from regnet_zoo.counting import model_complexity
from regnet_zoo.design_space import SPACES, AnyNetSpace, SamplingError, parse_band, sample
from regnet_zoo.design_space.sampling import _sorted_uniform
from regnet_zoo.generator import adjust_block_compatibility
from regnet_zoo.models import AnyNet

BAND = (360e6, 400e6)


@pytest.fixture(scope="module")
def drawn():
    return {name: sample(name, 30, seed=1, flops=BAND) for name in
            ("anynetx_a", "anynetx_b", "anynetx_c", "anynetx_d", "anynetx_e", "regnetx", "regnetx_refined",
             "regnety_wm2")}


def test_seeded(drawn):
    again = sample("anynetx_a", 30, seed=1, flops=BAND)
    assert [s.cfg for s in again.samples] == [s.cfg for s in drawn["anynetx_a"].samples]
    other = sample("anynetx_a", 30, seed=2, flops=BAND)
    assert [s.cfg for s in other.samples] != [s.cfg for s in again.samples]


def test_sampling_is_prefix_stable(drawn):
    # a larger draw with the same seed starts with the smaller one (sweeps can be extended)
    small = sample("regnetx", 7, seed=1, flops=BAND)
    assert [s.cfg for s in small.samples] == [s.cfg for s in drawn["regnetx"].samples[:7]]


def test_samples_are_distinct_and_in_band_by_scalar_complexity(drawn):
    for name, r in drawn.items():
        assert len(r) == 30 and len({s.cfg for s in r.samples}) == 30
        for s in r.samples:
            # the scalar path (one model at a time) agrees with the vectorised sampler
            assert model_complexity(s.cfg) == s.complexity, name
            assert BAND[0] <= s.complexity["flops"] <= BAND[1]
        assert r.drawn >= r.compatible >= r.in_band >= 30


def test_params_match_built_torch_model(drawn):
    for name in ("anynetx_a", "regnety_wm2"):
        s = drawn[name].samples[0]
        model = AnyNet(s.cfg)
        assert sum(p.numel() for p in model.parameters()) == s.complexity["params"]


def test_anynet_constraints(drawn):
    spaces = SPACES
    for name in ("anynetx_a", "anynetx_b", "anynetx_c", "anynetx_d", "anynetx_e"):
        space = spaces[name]
        for s in drawn[name].samples:
            net = s.cfg
            bs = [round(1 / b) for b in net.bot_muls]
            assert s.params == {"ds": net.depths, "ws": net.widths, "bs": bs, "gs": net.group_widths}
            assert len(net.stages) == 4 and net.stem_width == 32 and net.strides == [2, 2, 2, 2]
            assert all(1 <= d <= 16 for d in net.depths)
            assert all(8 <= w <= 1024 and w % 8 == 0 for w in net.widths)
            assert set(bs) <= {1, 2, 4} and set(net.group_widths) <= {1, 2, 4, 8, 16, 32}
            # compatible = a fixed point of the core's compatibility step
            assert adjust_block_compatibility(net.widths, net.bot_muls, net.group_widths) == (
                net.widths, net.bot_muls, net.group_widths)
            assert (len(set(bs)) == 1) >= space.shared_b
            assert (len(set(net.group_widths)) == 1) >= space.shared_g
            assert (net.widths == sorted(net.widths)) >= space.widths_increasing
            assert (net.depths == sorted(net.depths)) >= space.depths_increasing
    # the unconstrained space does produce mixed b, g and unordered widths
    a = drawn["anynetx_a"].samples
    assert any(len(set(s.params["bs"])) > 1 for s in a) and any(s.params["ws"] != sorted(s.params["ws"]) for s in a)


def test_regnet_constraints(drawn):
    for name in ("regnetx", "regnetx_refined", "regnety_wm2"):
        space = SPACES[name]
        for s in drawn[name].samples:
            c = s.cfg
            assert isinstance(c, RegNetCfg) and c.se_ratio == space.se_ratio
            assert c.depth in range(1, 64) and 8 <= c.w0 <= 248 and c.w0 % 8 == 0
            assert 8 <= c.wa <= 255.9 and space.wm[0] <= c.wm <= space.wm[1]
            assert round(c.wa, 1) == c.wa and round(c.wm, 3) == c.wm
            assert len(c.to_anynet().stages) == 4  # pycls' NUM_STAGES constraint
            assert s.params == {"d": c.depth, "w0": c.w0, "wa": c.wa, "wm": c.wm, "b": round(1 / c.bot_mul),
                                "g": c.group_width}
            if space.w0_equals_wa:
                assert c.wa == c.w0


def test_sorted_sampling_is_uniform_over_multisets():
    idx, ok = _sorted_uniform(np.random.default_rng(0), 3, 2, 60_000)
    pairs = idx[ok]
    assert np.all(np.diff(pairs, axis=1) >= 0)
    _, counts = np.unique(pairs, axis=0, return_counts=True)
    assert len(counts) == 6  # {0,0},{0,1},{0,2},{1,1},{1,2},{2,2}
    np.testing.assert_allclose(counts / counts.sum(), 1 / 6, atol=0.01)


def test_params_and_acts_bands():
    r = sample("regnetx", 10, seed=0, flops="200e6:800e6", params=":3e6", acts="2e6:6e6")
    for s in r.samples:
        assert s.complexity["params"] <= 3e6 and 2e6 <= s.complexity["acts"] <= 6e6


def test_impossible_band_raises_with_rates():
    tiny = AnyNetSpace("tiny", max_depth=1, max_width=16)
    with pytest.raises(SamplingError, match=r"only 0 of 5 models of tiny found in 2000 candidates \(\d+ compatible"):
        sample(tiny, 5, flops=(1e12, 2e12), batch_size=1000, max_candidates=2000)


@pytest.mark.parametrize("text,match", [("100", "LOW:HIGH"), ("a:b", "with numbers"), ("5:1", "low <= high")])
def test_parse_band_errors(text, match):
    with pytest.raises(ValueError, match=match):
        parse_band(text)
    assert parse_band("1e6:") == (1e6, np.inf) and parse_band(":2") == (0.0, 2.0)


def test_no_torch_needed_for_sampling():
    code = ("import sys; from regnet_zoo.design_space import sample, summarize, fit_quantized_linear, edf; "
            "sample('regnetx', 3, flops='200e6:800e6'); "
            "bad = [m for m in ('torch', 'lightning', 'ray', 'matplotlib') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
