"""Fast model scaling against the properties "Fast and Accurate Model Scaling" (Dollár et al. 2021) states.

Strategy exponents (e_d, e_w, e_r) are the paper's, written out here; activations of a scaled model grow
about s^(e_d + e_w/2 + e_r). The fitted exponents fall a little below that for small factors because the
stem, the classifier and each stage's first (strided) block do not multiply with depth; at larger factors
they approach it.
"""

import json
import subprocess
import sys

import numpy as np
import pytest

from regnet_zoo.cli import main
from regnet_zoo.cli import scale as scale_cli
from regnet_zoo.counting import model_complexity
from regnet_zoo.registry import UnknownModelError, get_entry
from regnet_zoo.scaler import STRATEGIES, ScalingError, UnknownStrategyError, get_strategy, scale

A = 0.8
PAPER = {"d": (1, 0, 0), "w": (0, 1, 0), "r": (0, 0, 1), "dw": (1 / 2, 1 / 2, 0), "dr": (1 / 2, 0, 1 / 2),
         "wr": (0, 1 / 2, 1 / 2), "dwr": (1 / 3, 1 / 3, 1 / 3), "dW": (1 - A, A, 0),
         "dWr": ((1 - A) / 2, A, (1 - A) / 2)}
FACTORS = [2, 3, 4, 6, 8, 12, 16]
BASES = [("regnetx_200mf", 224), ("regnety_4.0gf", 224), ("regnetz_500mf", 224), ("regnetz_4gf", 256),
         ("regnety_10b", 224)]


def test_strategy_table_is_the_papers():
    assert set(STRATEGIES) == set(PAPER)
    for name, (e_d, e_w, e_r) in PAPER.items():
        s = get_strategy(name, A)
        assert (s.e_d, s.e_w, s.e_r) == pytest.approx((e_d, e_w, e_r)) and s.e_d + s.e_w + s.e_r == pytest.approx(1)
        assert s.acts_exponent == pytest.approx(e_d + e_w / 2 + e_r)
    assert get_strategy("dW").acts_exponent == pytest.approx(0.6) == get_strategy("dWr").acts_exponent
    assert get_strategy("dwr").acts_exponent == pytest.approx(5 / 6)
    assert get_strategy("dW", alpha=0.5).e_d == pytest.approx(0.5)


def test_rounding_by_hand():
    """RegNetY-4.0GF x4: depths [2, 6, 12, 2], widths [128, 192, 512, 1088], g 64 (pycls' scaler rules)."""
    dw = scale("RegNetY-4.0GF", 4, "dW")  # d x 4^0.2 = 1.3195, w and g x 4^0.4 = 1.7411
    assert dw.cfg.depths == [3, 8, 16, 3]  # 2.64, 7.92, 15.83, 2.64
    # w: 8 round(w 1.7411 / 8) = 224, 336, 888, 1896; g: round(64 1.7411) = 111 -> multiple of 8: 112;
    # compatibility: multiples of 112 -> 224, 336, 896, 1904
    assert dw.cfg.widths == [224, 336, 896, 1904] and dw.cfg.group_widths == [112] * 4
    assert dw.resolution == 224 and dw.cfg.se_ratio == 0.25 and dw.cfg.stem_width == 32
    dwr = scale("RegNetY-4.0GF", 4, "dWr")  # d x 4^0.1 = 1.1487; r: 4 round(224 4^0.05 / 4) = 240
    assert dwr.cfg.depths == [2, 7, 14, 2] and dwr.cfg.widths == dw.cfg.widths and dwr.resolution == 240
    r = scale("RegNetY-4.0GF", 4, "r")  # only the resolution doubles
    assert r.cfg == get_entry("RegNetY-4.0GF").cfg.to_anynet() and r.resolution == 448
    z = scale("regnetz_500mf", 16, "w")  # Z: bot_mul 4, g 4 x 4 = 16; compatibility with lcm(16, 4) = 16
    assert z.cfg.widths == [64, 160, 416, 1024] and z.cfg.group_widths == [16] * 4
    assert (z.cfg.block, z.cfg.activation, z.cfg.head_width) == ("z", "silu", 1024)


def _flops(cfg, res) -> tuple[int, int]:
    """(total flops, flops of the stages alone: without the stem and head, which the scaler keeps)."""
    cx = model_complexity(cfg, res, per_stage=True)
    return cx["flops"], sum(s["flops"] for s in cx["stages"][1:-1])


@pytest.mark.parametrize("name,res", BASES, ids=[b[0] for b in BASES])
def test_flops_ratio_is_hit_within_rounding(name, res):
    """Quanta: 1 block per stage (stages of 1-2 blocks: up to 25%), 8 channels, group snapping, 4 px."""
    base, base_body = _flops(get_entry(name).cfg, res)
    for st in STRATEGIES:
        flops, body = np.array([_flops(sm.cfg, sm.resolution) for sm in
                                (scale(name, f, st, resolution=res) for f in FACTORS)]).T
        ratios, body_ratios = flops / base / FACTORS, body / base_body / FACTORS
        assert np.all((ratios > 0.8) & (ratios < 1.15)), (st, ratios.round(3))
        assert abs(np.log(body_ratios).mean()) < 0.12, (st, body_ratios.round(3))  # no bias beyond rounding
        if name == "regnety_10b":  # widths of thousands of channels: the rounding is fine, so is the ratio
            assert np.all((body_ratios > 0.95) & (body_ratios < 1.06)), (st, body_ratios.round(3))
        assert np.all(np.diff(flops) > 0), st  # more flops for every larger factor


@pytest.mark.parametrize("name,res", [("regnety_400mf", 224), ("regnety_4.0gf", 224), ("regnetx_1.6gf", 224),
                                      ("regnetz_500mf", 224), ("regnetz_4gf", 256)])
def test_activation_growth_exponents(name, res):
    k = {}
    for st in STRATEGIES:
        cx = [scale(name, f, st, resolution=res).complexity() for f in FACTORS]
        k[st] = np.polyfit(np.log([c["flops"] for c in cx]), np.log([c["acts"] for c in cx]), 1)[0]
        expected = get_strategy(st).acts_exponent
        assert expected - 0.12 < k[st] < expected + 0.01, (st, k[st], expected)
    # the paper's ranking: width-heavy (fast) scaling grows activations least, depth/resolution most
    assert k["w"] < min(k["dW"], k["dWr"]) <= max(k["dW"], k["dWr"]) < min(k["dw"], k["wr"])
    assert max(k["dw"], k["wr"]) < k["dwr"] < min(k["d"], k["dr"], k["r"])


@pytest.mark.parametrize("name,res", [("regnety_4.0gf", 224), ("regnetz_4gf", 256)])
def test_activation_exponents_approach_the_papers_at_large_factors(name, res):
    for st in STRATEGIES:
        cx = [scale(name, f, st, resolution=res).complexity() for f in (16, 32, 64, 128)]
        k = np.polyfit(np.log([c["flops"] for c in cx]), np.log([c["acts"] for c in cx]), 1)[0]
        assert k == pytest.approx(get_strategy(st).acts_exponent, abs=0.04), st


def test_group_widths_scale_with_widths():
    base = get_entry("regnety_4.0gf").cfg.to_anynet()
    for f in (4, 16):
        s = scale("regnety_4.0gf", f, "w")  # width x sqrt(f): 2, 4
        assert s.cfg.group_widths == [64 * int(f ** 0.5)] * 4
        assert [w // g for w, g in zip(s.cfg.widths, s.cfg.group_widths)] == \
               [w // g for w, g in zip(base.widths, base.group_widths)]  # same number of groups
    fixed = scale("regnety_4.0gf", 16, "w", scale_groups=False)
    assert fixed.cfg.group_widths == [64] * 4 and fixed.cfg.widths == [512, 768, 2048, 4352]
    assert scale("regnetz_500mf", 1, "dW").cfg == get_entry("regnetz_500mf").cfg.to_anynet()


def test_bad_requests():
    with pytest.raises(UnknownStrategyError) as e:
        scale("regnetx_200mf", 2, "dwW")
    assert "dW" in str(e.value)  # closest names listed
    for factor in (0, -2, float("nan"), float("inf"), "2"):
        with pytest.raises(ScalingError):
            scale("regnetx_200mf", factor)
    for alpha in (0, 1.5):
        with pytest.raises(ScalingError):
            scale("regnetx_200mf", 2, "dW", alpha=alpha)
    with pytest.raises(UnknownModelError):
        scale("regnetq_200mf", 2)
    with pytest.raises(ValueError):
        scale("regnetx_200mf", 2, resolution=0)
    assert issubclass(UnknownStrategyError, ScalingError) and issubclass(ScalingError, ValueError)


def _run(argv: list[str]) -> int:
    return main(["scale", *argv])


def test_cli_prints_scaled_configs_and_exact_complexity(capsys, tmp_path):
    assert _run(["RegNetZ-500MF", "--flops", "4x", "--strategy", "all", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["strategy"] for r in out["scaled"]] == list(STRATEGIES)
    for r in out["scaled"]:
        ref = scale("regnetz_500mf", 4, r["strategy"])
        assert r["complexity"] == ref.complexity() and r["resolution"] == ref.resolution
        assert r["flops_ratio"] == pytest.approx(r["complexity"]["flops"] / out["base"]["complexity"]["flops"])
    assert _run(["regnety_4.0gf", "--flops", "4", "--strategy", "dW", "dWr"]) == 0
    text = capsys.readouterr().out
    assert "[224,336,896,1904]" in text and "dWr" in text
    assert _run(["regnety_4.0gf", "--flops", "4x", "--strategy", "dwW"]) == 2
    assert "dW" in capsys.readouterr().err
    assert _run(["regnety_4.0gf", "--flops", "4x", "--resolution", "0"]) == 2
    with pytest.raises(SystemExit):
        _run(["regnety_4.0gf", "--flops", "0x"])
    assert scale_cli.parse_factor("2.5x") == 2.5 == scale_cli.parse_factor("x2.5")
    png = tmp_path / "fig" / "strategies.png"
    assert _run(["regnetx_200mf", "--flops", "8x", "--strategy", "w", "dW", "d", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and list(png.parent.iterdir()) == [png]


def test_scaler_and_its_command_import_no_torch():
    code = ("import sys; import regnet_zoo, regnet_zoo.scaler; from regnet_zoo.cli import main; "
            "assert main(['scale', 'regnetz_4gf', '--flops', '2x', '--json']) == 0; "
            "regnet_zoo.scale('regnety_10b', 2); "
            "bad = [m for m in ('torch', 'timm', 'lightning') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
