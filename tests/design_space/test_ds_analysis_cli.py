"""Analysis, plots and the `regnet-zoo sweep` command on synthetic results of real sampled configs."""

import json

import numpy as np
import pytest
from scipy import stats as sps

from regnet_zoo.cli import main as cli
from regnet_zoo.config import AnyNetCfg, RegNetCfg, StageCfg
from regnet_zoo.design_space import (
    LargeDigitsWarning,
    TrainSettings,
    analyze_groups,
    block_widths,
    design_values,
    digits_size_warning,
    load_results,
    read_trials,
    run_sweep,
    sample,
    summarize,
    trials_from_samples,
    write_jsonl_atomic,
)
from regnet_zoo.design_space import plots as ds_plots
from regnet_zoo.design_space.analysis import best_records, fit_records
from regnet_zoo.design_space.records import append_jsonl
from regnet_zoo.registry import MODELS


def _fake_results(space, n, shift, seed):
    """Real configs of ``space`` with synthetic errors: shift + noise, lowest near depth 20."""
    rng = np.random.default_rng(seed)
    trials = trials_from_samples(sample(space, n, seed=seed, flops="200e6:800e6"))
    out = []
    for t in trials:
        d = design_values(t)["d"]  # total blocks
        out.append({**t, "status": "ok", "error": shift + 0.05 * abs(d - 20) + rng.normal(0, 0.3)})
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, space, shift in (("a", "anynetx_a", 40.0), ("r", "regnetx", 37.0)):
        for rec in _fake_results(space, 24, shift, seed=1):
            append_jsonl(root / name / "results.jsonl", rec)
    return root


def test_design_values_by_hand():
    rec = {"cfg": MODELS["regnetx_200mf"].cfg.to_dict(), "complexity": {"flops": 1, "params": 2, "acts": 3}}
    assert design_values(rec) == {"d": 13, "w0": 24, "wa": 36.44, "wm": 2.49, "b": 1.0, "g": 8, "flops": 1,
                                  "params": 2, "acts": 3}
    net = AnyNetCfg(stages=(StageCfg(2, 32, 8, 0.5), StageCfg(3, 64, 8, 0.5)))
    # the keys follow the space's definition, not the values: AnyNetX_A has per-stage b and g even when
    # this model's stages happen to share them; AnyNetX_C shares both
    per_stage = {"d": 5, "d1": 2, "d2": 3, "w1": 32, "w2": 64, "b1": 2.0, "b2": 2.0, "g1": 8, "g2": 8}
    assert design_values({"cfg": net.to_dict(), "space": "anynetx_a", "complexity": {}}) == per_stage
    assert design_values({"cfg": net.to_dict(), "complexity": {}}) == per_stage  # no space: nothing shared
    assert design_values({"cfg": net.to_dict(), "space": "anynetx_c"}) == {
        "d": 5, "d1": 2, "d2": 3, "w1": 32, "w2": 64, "b": 2.0, "g": 8}
    b_only = design_values({"cfg": net.to_dict()}, space="anynetx_b")
    assert b_only["b"] == 2.0 and (b_only["g1"], b_only["g2"]) == (8, 8) and "g" not in b_only
    assert block_widths({"cfg": net.to_dict()}) == [32, 32, 64, 64, 64]
    mixed = AnyNetCfg(stages=(StageCfg(2, 32, 8, 0.5), StageCfg(3, 64, 16, 0.5)))
    with pytest.raises(ValueError, match=r"anynetx_c shares g across stages, but the config has g = \[8, 16\]"):
        design_values({"id": "x", "cfg": mixed.to_dict(), "space": "anynetx_c"})


def test_mixed_anynet_population_keeps_b_and_g():
    # AnyNetX_A models whose stages share b and g and models whose stages do not: summarize bootstraps
    # b1..b4 and g1..g4 for all of them (keys from the space, not from each record's values)
    def rec(i, bot_muls, groups):
        cfg = AnyNetCfg(stages=tuple(StageCfg(1 + i % 3, 64, g, bm) for bm, g in zip(bot_muls, groups)))
        return {"id": f"m{i}", "space": "anynetx_a", "cfg": cfg.to_dict(), "status": "ok", "error": 10.0 + i,
                "complexity": {"flops": 1000 + i, "params": 10, "acts": 5}}

    recs = [rec(0, (1, 1, 1, 1), (8, 8, 8, 8)), rec(1, (1, 0.5, 1, 1), (8, 16, 8, 8)),
            rec(2, (0.5, 0.5, 0.5, 0.5), (16, 16, 16, 16)), rec(3, (0.25, 1, 1, 1), (8, 8, 8, 32))]
    s = summarize(recs, top=2, n_boot=200)
    assert {"b1", "b2", "b3", "b4", "g1", "g2", "g3", "g4"} <= set(s["bootstrap"])
    assert "b" not in s["bootstrap"] and "g" not in s["bootstrap"]
    # one model per resample (fraction 1/4 of 4): the best model's b2 is any of the four models' values
    assert (s["bootstrap"]["b2"]["low"], s["bootstrap"]["b2"]["high"]) == (1.0, 2.0)


def test_summarize(runs):
    recs = load_results(runs / "r")
    s = summarize(recs, top=3, n_boot=2000)
    errs = [r["error"] for r in recs]
    assert s["n"] == 24 and s["error"]["min"] == min(errs) and s["error"]["mean"] == pytest.approx(np.mean(errs))
    assert set(s["bootstrap"]) == {"d", "w0", "wa", "wm", "b", "g", "flops", "params", "acts"}
    b = s["bootstrap"]["d"]
    assert b["low"] <= b["best"] <= b["high"]
    assert [x["error"] for x in s["best"]] == sorted(errs)[:3]
    for x, r in zip(s["best"], best_records(recs, 3)):
        # the network's widths are fitted: exactly a RegNet's unless the group compatibility step moved them
        exact = block_widths(r) == RegNetCfg(**{k: v for k, v in r["cfg"].items() if k != "type"}).block_widths
        assert (x["fit"]["e_fit"] == 0.0) == exact and x["fit"]["e_fit"] < 0.1
    with pytest.raises(ValueError, match="no finished trials"):
        summarize([])


@pytest.mark.parametrize("ext", ["png", "svg"])
def test_plots_write_files(runs, tmp_path, ext):
    groups = {"anynetx_a": load_results(runs / "a"), "regnetx": load_results(runs / "r")}
    s = summarize(groups["regnetx"], n_boot=500)
    best = best_records(groups["anynetx_a"], 3)
    paths = [
        ds_plots.plot_edfs(groups, tmp_path / f"edf.{ext}"),
        ds_plots.plot_edfs(groups, tmp_path / f"edfn.{ext}", normalized=True),
        ds_plots.plot_param_errors(groups["regnetx"], s["bootstrap"], tmp_path / f"p.{ext}", title="regnetx"),
        ds_plots.plot_best_widths(best, fit_records(best), tmp_path / f"w.{ext}"),
        ds_plots.plot_scaling({"RegNetX": {"models": [{"flops": 1e8, "acts": 1e6, "params": 1e6},
                                                      {"flops": 4e8, "acts": 2e6, "params": 3e6}],
                                           "acts_exponent": 0.5, "acts_coef": 1e2, "params_exponent": 0.8,
                                           "params_coef": 1.0}}, tmp_path / f"s.{ext}"),
    ]
    for p in paths:
        data = p.read_bytes()
        assert len(data) > 5000
        assert data.startswith(b"\x89PNG") if ext == "png" else b"<svg" in data[:2000]


def test_cli_sample_spaces_fit(tmp_path, capsys):
    out = tmp_path / "t.jsonl"
    assert cli(["sweep", "sample", "--space", "regnetx", "--flops", "4e6:6e6", "--resolution", "32",
                "--num-classes", "10", "--n", "5", "-o", str(out)]) == 0
    trials = read_trials(out)
    assert len(trials) == 5 and all(4e6 <= t["complexity"]["flops"] <= 6e6 for t in trials)
    assert trials[0]["resolution"] == 32 and trials[0]["num_classes"] == 10
    assert "5 models of regnetx" in capsys.readouterr().out
    assert cli(["sweep", "sample", "--space", "regnetx", "--n", "5", "-o", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert cli(["sweep", "sample", "--space", "regnetz", "--n", "5", "-o", str(tmp_path / "x.jsonl")]) == 2
    assert "did you mean regnety, regnetx" in capsys.readouterr().err
    assert cli(["sweep", "spaces", "--json"]) == 0
    sizes = json.loads(capsys.readouterr().out)
    assert sizes["anynetx_a"]["paper"] == (16 * 128 * 3 * 6) ** 4
    assert cli(["sweep", "fit", "regnetx_200mf", "--json"]) == 0
    f = json.loads(capsys.readouterr().out)
    assert f["e_fit"] == 0 and f["predicted"] == MODELS["regnetx_200mf"].cfg.block_widths
    assert cli(["sweep", "fit", "16,256,256,512,64"]) == 0 and "e_fit=0.4" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:  # argparse's error, listing the subcommands
        cli(["sweep", "smaple"])
    assert e.value.code == 2 and "sample" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_analyze(runs, tmp_path, capsys):
    plots = tmp_path / "plots"
    assert cli(["sweep", "analyze", str(runs / "a"), str(runs / "r"), "--plots", str(plots), "--n-boot", "500"]) == 0
    text = capsys.readouterr().out
    assert "anynetx_a" in text and "EDF left of anynetx_a" in text and "one-sided Mann-Whitney p" in text
    summary = json.loads((plots / "summary.json").read_text())
    groups = {"anynetx_a": load_results(runs / "a"), "regnetx": load_results(runs / "r")}
    # the CLI writes exactly the library's analysis (one function behind both it and the reproduction script)
    assert summary == json.loads(json.dumps(analyze_groups(groups, n_boot=500)))
    v = summary["regnetx"]["vs_anynetx_a"]
    ea, er = [r["error"] for r in groups["anynetx_a"]], [r["error"] for r in groups["regnetx"]]
    assert v["edf_dominance"] > 0 and v["edf_dominance_ci"][0] > 0  # errors 3 points lower: clearly left
    assert v["mann_whitney_p"] == pytest.approx(sps.mannwhitneyu(er, ea, alternative="less").pvalue) and \
        v["mann_whitney_p"] < 1e-6
    assert "vs_anynetx_a" not in summary["anynetx_a"] and summary["_analysis"]["reference"] == "anynetx_a"
    # another reference: AnyNetX_A's EDF lies right of RegNetX's
    assert cli(["sweep", "analyze", str(runs / "a"), str(runs / "r"), "--reference", "regnetx", "--n-boot",
                "200"]) == 0
    assert "EDF right of regnetx" in capsys.readouterr().out
    assert cli(["sweep", "analyze", str(runs / "a"), "--reference", "regnety"]) == 2
    assert "reference 'regnety' is not one of the populations ['anynetx_a']" in capsys.readouterr().err
    assert sorted(p.name for p in plots.iterdir()) == [
        "edf.png", "edf_normalized.png", "errors_anynetx_a.png", "errors_regnetx.png", "summary.json",
        "widths_anynetx_a.png", "widths_regnetx.png"]
    assert cli(["sweep", "analyze", str(tmp_path / "nothing")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_cli_train_warns_about_digits_at_large_resolution(tmp_path, capsys):
    good = trials_from_samples(sample("regnetx", 1, seed=0, flops="200e6:800e6", num_classes=10))[0]  # 224 px
    bad = {**good, "cfg": {**good["cfg"], "w0": 12}}  # fails when built, before the digits are upsampled
    t = write_jsonl_atomic(tmp_path / "t.jsonl", [bad])
    assert cli(["sweep", "train", str(t), "--out", str(tmp_path / "o"), "--workers", "0"]) == 1
    err = capsys.readouterr().err
    # 1797 digits x 3 channels x 224^2 px x 4 bytes = 1.01 GiB; (224 / 32)^2 = 49x the compute of 32 px
    assert "warning: training on the 8x8 digits at 224 px: the upsampled images alone take 1.0 GiB" in err
    assert "49x the compute" in err and "--resolution 32 --num-classes 10" in err
    # no warning at 32 px, nor for an image folder
    assert digits_size_warning([{**good, "resolution": 32}], TrainSettings()) is None
    assert digits_size_warning([good], TrainSettings(image_size=32)) is None
    assert digits_size_warning([good], TrainSettings(data=str(tmp_path))) is None
    with pytest.warns(LargeDigitsWarning, match="Sample the trials at 32 px"):
        run_sweep([bad], tmp_path / "lib", TrainSettings(), workers=0)


def test_cli_train_rejects_bad_input(tmp_path, capsys):
    t = tmp_path / "t.jsonl"
    write_jsonl_atomic(t, [{"id": "x"}])
    assert cli(["sweep", "train", str(t), "--out", str(tmp_path / "o")]) == 2
    assert "lacks" in capsys.readouterr().err
    assert cli(["sweep", "train", str(t), "--out", str(tmp_path / "o"), "--data", "nowhere"]) == 2
