"""Reproduction (c), as committed: the digits sweep in benchmarks/results/sweep (see docs/design_space.md).

Checks the committed files against each other and against the models they name: every result is a trial of
the committed trial files, inside the flops band by an independent count, and RegNetX's error EDF lies left
of AnyNetX_A's. Reproductions (a) and (b) are recomputed in test_ds_scaling.py and test_ds_fit.py.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from regnet_zoo.config import cfg_from_dict
from regnet_zoo.counting import model_complexity
from regnet_zoo.design_space import (
    TrainSettings,
    edf_dominance,
    group_by_space,
    load_results,
    parse_band,
    read_trials,
)

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "sweep"


@pytest.fixture(scope="module")
def committed():
    summary = json.loads((RESULTS / "summary.json").read_text())
    return summary, group_by_space(load_results(RESULTS))


def test_results_are_the_committed_trials(committed):
    summary, groups = committed
    run = summary["_run"]
    lo, hi = parse_band(run["flops"])
    for space in ("anynetx_a", "regnetx"):
        trials = {t["id"]: t for t in read_trials(RESULTS / f"trials_{space}.jsonl")}
        recs = groups[space]
        assert len(recs) == run["n_per_space"] == summary[space]["n"]
        for r in recs:
            assert r["cfg"] == trials[r["id"]]["cfg"]
            assert TrainSettings.from_dict(r["settings"]).epochs == TrainSettings.from_dict(run["settings"]).epochs
            cx = model_complexity(cfg_from_dict(r["cfg"]), resolution=run["resolution"], num_classes=10)
            assert cx == r["complexity"] and lo <= cx["flops"] <= hi


def test_regnetx_edf_lies_left_of_anynetx_a(committed):
    summary, groups = committed
    ea = np.array([r["error"] for r in groups["anynetx_a"]])
    er = np.array([r["error"] for r in groups["regnetx"]])
    assert edf_dominance(er, ea) > 0 and er.mean() < ea.mean()
    assert summary["regnetx"]["vs_anynetx_a"]["edf_dominance"] == pytest.approx(edf_dominance(er, ea))
    assert summary["regnetx"]["error"]["mean"] == pytest.approx(er.mean())


def test_committed_fits_and_scaling_files():
    fits = json.loads((RESULTS / "paper_fits.json").read_text())
    assert len(fits) == 24 and all(f["e_fit"] == 0 and f["regenerates"] for f in fits.values())
    scaling = json.loads((RESULTS / "scaling.json").read_text())
    assert 0.45 < scaling["RegNetX"]["acts_exponent"] < 0.6 and scaling["EfficientNet"]["acts_exponent"] > 0.75
