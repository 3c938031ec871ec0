"""Complexity scaling (reproduction a): acts ~ flops^0.5 for RegNet, ~linear for EfficientNet."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from regnet_zoo.counting import model_complexity
from regnet_zoo.design_space import power_law, regnet_family
from regnet_zoo.design_space.efficientnet import traced_complexity
from regnet_zoo.design_space.scaling import efficientnet_family, scaling_table
from regnet_zoo.models import AnyNet
from regnet_zoo.registry import MODELS


@pytest.fixture(scope="module")
def table():
    return scaling_table()


def test_power_law_recovers_exponent():
    x = np.geomspace(1e8, 1e11, 7)
    k, c = power_law(x, 3.0 * x ** 0.5)
    assert k == pytest.approx(0.5) and c == pytest.approx(3.0)
    with pytest.raises(ValueError, match="two points"):
        power_law([1.0], [2.0])


def test_regnet_acts_grow_like_sqrt_flops(table):
    for fam in ("RegNetX", "RegNetY"):
        assert len(table[fam]["models"]) == 12
        assert 0.45 <= table[fam]["acts_exponent"] <= 0.6, fam


def test_efficientnet_acts_grow_about_linearly(table):
    k = table["EfficientNet"]["acts_exponent"]
    # log-log fit of the paper's own Table 4 counts gives 0.82; RegNets are near 0.5
    assert 0.75 <= k <= 1.05
    assert k - max(table["RegNetX"]["acts_exponent"], table["RegNetY"]["acts_exponent"]) > 0.2


def test_efficientnet_counts_match_paper_table_4(table):
    rows = {r["name"]: r for r in table["EfficientNet"]["models"]}
    assert [r["resolution"] for r in rows.values()] == [224, 240, 260, 300, 380, 456, 528, 600]
    # activations (M) of B0..B5 as listed in "Designing Network Design Spaces", Table 4
    for b, acts in enumerate([6.7, 10.9, 13.8, 23.8, 49.5, 98.9]):
        assert rows[f"EfficientNet-B{b}"]["acts"] / 1e6 == pytest.approx(acts, abs=0.06)
    b0 = rows["EfficientNet-B0"]
    assert b0["flops"] / 1e9 == pytest.approx(0.39, abs=0.01) and b0["params"] / 1e6 == pytest.approx(5.3, abs=0.05)


def test_table_equals_the_committed_scaling_file(table):
    # the committed benchmarks/results/sweep/scaling.json (reproduction a) is what the code computes
    committed = json.loads((Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "sweep" /
                            "scaling.json").read_text())
    assert set(committed) == set(table)
    for fam, t in table.items():
        assert committed[fam]["models"] == t["models"], fam
        assert committed[fam]["acts_exponent"] == pytest.approx(t["acts_exponent"], rel=1e-12)


def test_tracer_agrees_with_analytic_count_on_a_regnet():
    cfg = MODELS["regnety_200mf"].cfg
    with torch.device("meta"):
        model = AnyNet(cfg)
    traced = traced_complexity(model, 224)
    exact = model_complexity(cfg)
    assert traced["params"] == exact["params"] and traced["acts"] == exact["acts"]
    # the analytic count adds one flop per bias output (SE convs and the classifier); the tracer does not
    assert 0 < exact["flops"] - traced["flops"] < 1e-3 * exact["flops"]


def test_regnet_family_rows():
    rows = regnet_family("x")
    assert rows[0]["name"] == "RegNetX-200MF" and rows[0]["flops"] == model_complexity(MODELS["regnetx_200mf"].cfg)[
        "flops"]
    with pytest.raises(ValueError, match="'x' or 'y'"):
        regnet_family("z")
    assert efficientnet_family([0])[0]["name"] == "EfficientNet-B0"


def test_strategy_curves_and_their_plot(tmp_path):
    """Activations vs flops of RegNetZ-500MF scaled by three strategies (Dollár et al. 2021, Fig. 1 style)."""
    from regnet_zoo.design_space.plots import plot_strategies
    from regnet_zoo.design_space.scaling import strategy_curves

    curves = strategy_curves("regnetz_500mf", (1, 2, 4, 8, 16), ("w", "dW", "d"))
    assert list(curves) == ["w", "dW", "d"]
    assert curves["w"]["models"][0] == {"factor": 1.0, "resolution": 224,
                                        **model_complexity(MODELS["regnetz_500mf"].cfg)}
    ks = [curves[s]["acts_exponent"] for s in ("w", "dW", "d")]
    assert ks == sorted(ks)
    for c in curves.values():
        assert c["expected_acts_exponent"] - 0.12 < c["acts_exponent"] < c["expected_acts_exponent"] + 0.01
    path = plot_strategies(curves, tmp_path / "strategies.svg", title="RegNetZ-500MF")
    svg = path.read_text()
    assert path.suffix == ".svg" and "paper 0.60" in svg and list(tmp_path.iterdir()) == [path]
