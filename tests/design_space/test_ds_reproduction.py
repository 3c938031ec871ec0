"""Reproduction (c), as committed: the digits sweep in benchmarks/results/sweep (see docs/design_space.md).

Checks that the committed files agree with each other, with the models they name and with the docs: every
result is a trial of the committed trial files, inside the flops band by an independent count and trained
with the recorded settings; the counts in summary.json are the actual numbers of finished trials; every
statistic in summary.json is what the code computes from results.jsonl (Mann-Whitney also against SciPy);
the docs table quotes those numbers. It does not require significance: the data decide that, and the docs
must report it as it is. Reproductions (a) and (b) are recomputed in test_ds_scaling.py and test_ds_fit.py.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from regnet_zoo.config import cfg_from_dict
from regnet_zoo.counting import model_complexity
from regnet_zoo.design_space import (
    TrainSettings,
    compare_populations,
    edf_dominance,
    group_by_space,
    load_results,
    parse_band,
    read_trials,
    trial_timing,
)
from regnet_zoo.design_space.sweep import pending_trials

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results" / "sweep"
SPACES = ("anynetx_a", "regnetx")
DISPLAY = {"anynetx_a": "AnyNetX_A", "regnetx": "RegNetX"}


@pytest.fixture(scope="module")
def committed():
    summary = json.loads((RESULTS / "summary.json").read_text())
    return summary, group_by_space(load_results(RESULTS))


def test_counts_are_the_finished_trials(committed):
    summary, groups = committed
    run = summary["_run"]
    lo, hi = parse_band(run["flops"])
    trials = []
    for space in SPACES:
        ts = read_trials(RESULTS / f"trials_{space}.jsonl")[:run["n_requested"]]
        trials += ts
        by_id = {t["id"]: t for t in ts}
        recs = groups[space]
        # the actual number of ok results, wherever it is quoted
        assert len(recs) == run["n_ok"][space] == summary[space]["n"]
        assert run["n_ok"][space] + run["n_missing"][space] == len(ts) == run["n_requested"]
        assert run["n_failed"][space] <= run["n_missing"][space]
        for r in recs:
            assert r["cfg"] == by_id[r["id"]]["cfg"]
            cx = model_complexity(cfg_from_dict(r["cfg"]), resolution=run["resolution"], num_classes=10)
            assert cx == r["complexity"] and lo <= cx["flops"] <= hi
    # all results were trained with the recorded settings (the runner's own check) and the missing ones are missing
    todo, _ = pending_trials(trials, RESULTS / "results.jsonl", TrainSettings.from_dict(run["settings"]))
    assert len(todo) == sum(run["n_missing"].values())
    assert run["timing"] == pytest.approx(trial_timing(r for s in SPACES for r in groups[s]))


def test_statistics_are_recomputed_from_the_results(committed):
    summary, groups = committed
    ref = summary["_analysis"]["reference"]
    assert ref == "anynetx_a" and summary["_analysis"]["populations"] == list(SPACES)
    for space in SPACES:
        e = np.array([r["error"] for r in groups[space]])
        assert summary[space]["error"] == pytest.approx(
            {"min": e.min(), "mean": e.mean(), "median": np.median(e), "max": e.max()})
    ea = np.array([r["error"] for r in groups["anynetx_a"]])
    er = np.array([r["error"] for r in groups["regnetx"]])
    stored = summary["regnetx"]["vs_anynetx_a"]
    a = summary["_analysis"]
    again = compare_populations(er, ea, n_boot=a["n_boot"], seed=a["seed"])
    assert set(stored) == set(again)
    for k, v in again.items():
        assert stored[k] == pytest.approx(v), k
    assert stored["mann_whitney_p"] == pytest.approx(sps.mannwhitneyu(er, ea, alternative="less").pvalue)
    assert stored["ks"] == pytest.approx(sps.ks_2samp(er, ea).statistic)
    lo, hi = stored["edf_dominance_ci"]
    assert lo <= stored["edf_dominance"] <= hi
    # the reproduction's claim, as the docs state it: RegNetX's EDF lies left of AnyNetX_A's
    assert edf_dominance(er, ea) > 0 and er.mean() < ea.mean()
    # AnyNetX_A's per-stage b and g are analysed (keys from the space, not from each model's values)
    assert {f"{p}{i}" for p in "bg" for i in range(1, 5)} <= set(summary["anynetx_a"]["bootstrap"])
    for name in ("edf", "edf_normalized", "errors_anynetx_a", "errors_regnetx", "widths_anynetx_a",
                 "widths_regnetx"):
        assert (RESULTS / f"{name}.png").read_bytes().startswith(b"\x89PNG")


def test_docs_quote_the_committed_summary(committed):
    summary, _ = committed
    docs = (ROOT / "docs" / "design_space.md").read_text()
    for space in SPACES:
        s, e = summary[space], summary[space]["error"]
        row = f"| {DISPLAY[space]} | {s['n']} | {e['min']:.2f}% | {e['median']:.2f}% | {e['mean']:.2f}% |"
        assert row in docs, row
    v = summary["regnetx"]["vs_anynetx_a"]
    assert f"mean F difference {v['edf_dominance']:+.3f}" in docs
    assert f"95% CI {v['edf_dominance_ci'][0]:+.3f} to {v['edf_dominance_ci'][1]:+.3f}" in docs
    assert f"Mann-Whitney p = {v['mann_whitney_p']:.3f}" in docs and f"KS {v['ks']:.3f}" in docs
    significant = v["mann_whitney_p"] < 0.05
    assert ("is significant at the 5% level" in docs) == significant
    assert ("is not significant at the 5% level" in docs) == (not significant)


def test_committed_fits_and_scaling_files():
    fits = json.loads((RESULTS / "paper_fits.json").read_text())
    assert len(fits) == 24 and all(f["e_fit"] == 0 and f["regenerates"] for f in fits.values())
    scaling = json.loads((RESULTS / "scaling.json").read_text())
    assert 0.45 < scaling["RegNetX"]["acts_exponent"] < 0.6 and scaling["EfficientNet"]["acts_exponent"] > 0.75
    # the docs quote the fitted RegNetX-200MF parameters as committed
    f = fits["regnetx_200mf"]
    assert f"fitted wa {f['wa']:g}, wm {f['wm']:g}" in (ROOT / "docs" / "design_space.md").read_text()
