"""The paper's method: design spaces, sampling, EDFs, bootstrap, quantized-linear fit, sweeps.

    from regnet_zoo import design_space as ds
    trials = ds.trials_from_samples(ds.sample("regnetx", 64, flops="4e6:6e6", resolution=32, num_classes=10))
    ds.run_sweep(trials, "runs/regnetx", ds.TrainSettings(epochs=5), workers=2)
    s = ds.summarize(ds.load_results("runs/regnetx"))

Samplers, statistics and the fit are pure NumPy; the trial function imports torch/Lightning when it
runs, ``run_sweep_ray`` imports Ray, and ``plots`` (matplotlib) is imported on first use.
"""

from regnet_zoo.design_space.analysis import (
    analyze_groups,
    block_widths,
    design_values,
    format_summary,
    group_by_space,
    load_groups,
    summarize,
    trial_timing,
)
from regnet_zoo.design_space.fit import LinearFit, fit_error, fit_quantized_linear
from regnet_zoo.design_space.records import (
    SweepFileError,
    load_results,
    read_jsonl,
    read_trials,
    trials_from_samples,
    write_jsonl_atomic,
)
from regnet_zoo.design_space.sampling import Sample, SampleResult, SamplingError, parse_band, sample
from regnet_zoo.design_space.scaling import power_law, regnet_family, scaling_table
from regnet_zoo.design_space.spaces import (
    SPACES,
    AnyNetSpace,
    RegNetSpace,
    UnknownSpaceError,
    get_space,
    size_table,
)
from regnet_zoo.design_space.stats import (
    BootstrapInterval,
    bootstrap_best,
    compare_populations,
    complexity_edges,
    complexity_weights,
    edf,
    edf_dominance,
    ks_statistic,
    normalized_edf,
)
from regnet_zoo.design_space.sweep import (
    LargeDigitsWarning,
    SweepSummary,
    TrainSettings,
    digits_size_warning,
    run_sweep,
    run_trial,
)

__all__ = [
    "SPACES", "AnyNetSpace", "BootstrapInterval", "LargeDigitsWarning", "LinearFit", "RegNetSpace", "Sample",
    "SampleResult", "SamplingError", "SweepFileError", "SweepSummary", "TrainSettings", "UnknownSpaceError",
    "analyze_groups", "block_widths", "bootstrap_best", "compare_populations", "complexity_edges",
    "complexity_weights", "design_values", "digits_size_warning", "edf", "edf_dominance", "fit_error",
    "fit_quantized_linear", "format_summary", "get_space", "group_by_space", "ks_statistic", "load_groups",
    "load_results", "normalized_edf", "parse_band", "power_law", "read_jsonl", "read_trials", "regnet_family",
    "run_sweep", "run_sweep_ray", "run_trial", "sample", "scaling_table", "size_table", "summarize",
    "trial_timing", "trials_from_samples", "write_jsonl_atomic",
]


def __getattr__(name: str):
    if name == "run_sweep_ray":
        from regnet_zoo.design_space.ray_runner import run_sweep_ray

        return run_sweep_ray
    if name == "plots":
        import importlib

        return importlib.import_module("regnet_zoo.design_space.plots")
    raise AttributeError(f"module 'regnet_zoo.design_space' has no attribute {name!r}")
