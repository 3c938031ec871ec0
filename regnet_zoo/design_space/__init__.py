"""The paper's method: design spaces, sampling, EDFs, bootstrap, quantized-linear fit, sweeps.

    from regnet_zoo import design_space as ds
    trials = ds.trials_from_samples(ds.sample("regnetx", 64, flops="4e6:6e6", resolution=32, num_classes=10))
    ds.run_sweep(trials, "runs/regnetx", ds.TrainSettings(epochs=5), workers=2)
    s = ds.summarize(ds.load_results("runs/regnetx"))

Samplers, statistics and the fit are pure NumPy; the trial function imports torch/Lightning when it
runs, ``run_sweep_ray`` imports Ray, and ``plots`` (matplotlib) is imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

# module of regnet_zoo.design_space -> the names it exports here (imported on first use)
_EXPORTS = {
    "analysis": ("analyze_groups", "block_widths", "design_values", "format_summary", "group_by_space",
                 "load_groups", "summarize", "trial_timing"),
    "fit": ("LinearFit", "fit_error", "fit_quantized_linear"),
    "records": ("SweepFileError", "load_results", "read_jsonl", "read_trials", "trials_from_samples",
                "write_jsonl_atomic"),
    "sampling": ("Sample", "SampleResult", "SamplingError", "parse_band", "sample"),
    "scaling": ("power_law", "regnet_family", "scaling_table"),
    "spaces": ("SPACES", "AnyNetSpace", "RegNetSpace", "UnknownSpaceError", "get_space"),
    "stats": ("BootstrapInterval", "bootstrap_best", "compare_populations", "complexity_edges",
              "complexity_weights", "edf", "edf_dominance", "ks_statistic", "normalized_edf"),
    "sweep": ("LargeDigitsWarning", "SweepSummary", "TrainSettings", "digits_size_warning", "run_sweep",
              "run_sweep_ray", "run_trial"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _MODULE_OF:
        return getattr(importlib.import_module(f"regnet_zoo.design_space.{_MODULE_OF[name]}"), name)
    if name == "plots":
        return importlib.import_module("regnet_zoo.design_space.plots")
    raise AttributeError(f"module 'regnet_zoo.design_space' has no attribute {name!r}")


__all__ = sorted(_MODULE_OF)
