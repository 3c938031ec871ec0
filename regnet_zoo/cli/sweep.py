"""``regnet-zoo sweep``: design-space sweeps on the command line.

    regnet-zoo sweep spaces                                   # the spaces and their sizes
    regnet-zoo sweep sample --space anynetx_a --flops 4e6:6e6 --resolution 32 --num-classes 10 --n 64 -o a.jsonl
    regnet-zoo sweep train a.jsonl --data digits --epochs 5 --out runs/a [--workers 2] [--engine ray]
    regnet-zoo sweep analyze runs/a runs/regnetx --plots out/  # EDFs, bootstrap ranges, width fits
    regnet-zoo sweep fit regnetx_200mf | 24,56,56,152,...     # quantized-linear fit of widths
    regnet-zoo sweep scaling --plots out/                     # acts/params vs flops exponents

torch is only imported by ``train`` (and ``scaling`` for EfficientNet).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from regnet_zoo.cli import fail
from regnet_zoo.counting import format_count
from regnet_zoo.design_space.analysis import analyze_groups, format_summary, load_groups, write_summary
from regnet_zoo.design_space.fit import fit_quantized_linear
from regnet_zoo.design_space.records import SweepFileError, read_trials, trials_from_samples, write_jsonl_atomic
from regnet_zoo.design_space.sampling import SamplingError, sample
from regnet_zoo.design_space.scaling import scaling_table
from regnet_zoo.design_space.spaces import SPACES
from regnet_zoo.design_space.sweep import (
    LargeDigitsWarning,
    TrainSettings,
    digits_size_warning,
    run_sweep,
    run_sweep_ray,
)
from regnet_zoo.fileio import atomic_write
from regnet_zoo.registry import get_entry


def _add(sub, name: str, handler: Callable[[argparse.Namespace], int], help: str,
         description: str | None = None) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=description or help[0].upper() + help[1:])
    p.set_defaults(handler=handler)
    return p


def register(subparsers) -> None:
    sweep = subparsers.add_parser("sweep", help="design-space sweeps: sample, train, analyze",
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  description="Design-space sweeps, the paper's method.",
                                  epilog="examples:\n" + __doc__.split("\n\n")[1])
    sub = sweep.add_subparsers(title="subcommands", dest="sweep_command", metavar="SUBCOMMAND", required=True)
    p = _add(sub, "spaces", run_spaces, "the design spaces and their sizes")
    p.add_argument("--json", action="store_true")

    p = _add(sub, "sample", run_sample, "sample models of a design space into a trial file (JSONL)")
    p.add_argument("--space", required=True, help="design space, e.g. anynetx_a, regnetx (see `sweep spaces`)")
    p.add_argument("--n", type=int, required=True, help="number of distinct models")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flops", help="flops band LOW:HIGH in multiply-adds, e.g. 360e6:400e6")
    p.add_argument("--params", help="params band LOW:HIGH")
    p.add_argument("--acts", help="activations band LOW:HIGH")
    p.add_argument("--resolution", type=int, default=224, help="input size the bands refer to (pixels)")
    p.add_argument("--num-classes", type=int, default=1000, help="classifier outputs the bands refer to")
    p.add_argument("--in-chans", type=int, default=3)
    p.add_argument("--max-candidates", type=int, default=20_000_000)
    p.add_argument("-o", "--output", required=True, help="trial file to write (JSONL)")
    p.add_argument("--force", action="store_true", help="overwrite an existing trial file")

    p = _add(sub, "train", run_train, "train every trial briefly (resumable; local processes or Ray)",
             "Train every trial briefly; results go to OUT/results.jsonl (resumable: finished trials are skipped).")
    p.add_argument("trials", nargs="+", help="trial file(s) from `sweep sample`")
    p.add_argument("--out", required=True, help="run folder (results.jsonl is appended there)")
    for f in fields(TrainSettings):
        kind = {"action": argparse.BooleanOptionalAction} if isinstance(f.default, bool) else \
            {"type": f.metadata.get("type", type(f.default))}
        p.add_argument(f.metadata.get("flag", "--" + f.name.replace("_", "-")), dest=f.name, default=f.default,
                       help=f.metadata["help"], **kind)
    p.add_argument("--engine", choices=("local", "ray"), default="local")
    p.add_argument("--workers", type=int, default=1, help="local: trials in parallel (0: in this process)")
    p.add_argument("--ray-address", default=None, help="ray: join this cluster ('auto', 'ray://host:10001')")
    p.add_argument("--ray-num-cpus", type=int, default=None, help="ray: CPUs of a local Ray instance")
    p.add_argument("--gpus-per-trial", type=float, default=0.0, help="ray: GPUs per trial")

    p = _add(sub, "analyze", run_analyze, "EDFs, bootstrap ranges, fits, significance of sweeps")
    p.add_argument("runs", nargs="+", help="run folders (or results.jsonl files)")
    p.add_argument("--plots", default=None, help="folder for the figures and summary.json")
    p.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    p.add_argument("--reference", default=None, help="population the others are compared with (default: the first)")
    p.add_argument("--top", type=int, default=5, help="best models whose widths are fitted and drawn")
    p.add_argument("--n-boot", type=int, default=10_000)
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstraps")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")

    p = _add(sub, "fit", run_fit, "quantized-linear fit (w0, wa, wm, e_fit) of per-block widths")
    p.add_argument("widths", help="a model name (its per-block widths) or comma-separated per-block widths")
    p.add_argument("--json", action="store_true")

    p = _add(sub, "scaling", run_scaling, "acts/params vs flops power laws: RegNetX, RegNetY, EfficientNet")
    p.add_argument("--plots", default=None, help="folder for scaling.<format> and scaling.json")
    p.add_argument("--format", default="png", choices=("png", "svg", "pdf"))
    p.add_argument("--no-efficientnet", action="store_true", help="skip tracing timm's EfficientNets")


def run_spaces(a: argparse.Namespace) -> int:
    rows = {n: {"paper": s.size("paper"), "exact": s.size("exact"), "valid": s.size("valid"),
                "description": s.description} for n, s in SPACES.items()}
    if a.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'space':<18} {'size (paper)':>13} {'exact':>10} {'compatible':>11}  description")
    for n, r in rows.items():
        print(f"{n:<18} {r['paper']:>13.1e} {r['exact']:>10.1e} {r['valid']:>11.1e}  {r['description']}")
    return 0


def run_sample(a: argparse.Namespace) -> int:
    out = Path(a.output)
    if out.exists() and not a.force:
        return fail("sweep sample", f"{out} exists; pass --force to overwrite it", 2)
    try:
        result = sample(a.space, a.n, seed=a.seed, flops=a.flops, params=a.params, acts=a.acts,
                        resolution=a.resolution, in_chans=a.in_chans, num_classes=a.num_classes,
                        max_candidates=a.max_candidates)
    except ValueError as e:  # an UnknownSpaceError too
        return fail("sweep sample", e, 2)
    except SamplingError as e:
        return fail("sweep sample", e)
    write_jsonl_atomic(out, trials_from_samples(result))
    fl = [s.complexity["flops"] for s in result.samples]
    print(f"{len(result)} models of {result.space.name} -> {out}  (drawn {result.drawn}, compatible "
          f"{result.compatible}, in band {result.in_band}; flops {format_count(min(fl))}-{format_count(max(fl))} "
          f"at {a.resolution}px)")
    return 0


def run_train(a: argparse.Namespace) -> int:
    try:
        trials = [t for path in a.trials for t in read_trials(path)]
        if len({t["id"] for t in trials}) != len(trials):
            raise SweepFileError("the trial files share trial ids; pass files of different spaces or samples")
        settings = TrainSettings(**{f.name: getattr(a, f.name) for f in fields(TrainSettings)})
    except ValueError as e:  # a SweepFileError too
        return fail("sweep train", e, 2)

    def progress(rec):
        what = f"error {rec['error']:.2f}%  {rec['train_time_s']:.1f}s" if rec["status"] == "ok" else \
            f"FAILED: {rec['message'].splitlines()[-1]}"
        print(f"{rec['id']:<20} {what}", flush=True)

    if (msg := digits_size_warning(trials, settings)) is not None:
        print(f"regnet-zoo sweep train: warning: {msg}", file=sys.stderr, flush=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LargeDigitsWarning)  # printed above
            if a.engine == "ray":
                summary = run_sweep_ray(trials, a.out, settings, address=a.ray_address, num_cpus=a.ray_num_cpus,
                                        gpus_per_trial=a.gpus_per_trial, on_result=progress)
            else:
                summary = run_sweep(trials, a.out, settings, workers=a.workers, on_result=progress)
    except SweepFileError as e:
        return fail("sweep train", e, 2)
    print(f"{summary.finished} trained, {summary.failed} failed, {summary.skipped} already done "
          f"({summary.total} trials) in {summary.wall_s:.0f}s -> {summary.results_path}")
    return 1 if summary.failed else 0


def run_analyze(a: argparse.Namespace) -> int:
    from regnet_zoo.design_space import plots  # matplotlib

    try:
        groups = load_groups(a.runs)
        if not groups:
            return fail("sweep analyze", "no finished trials in " + ", ".join(a.runs))
        summary = analyze_groups(groups, reference=a.reference, top=a.top, n_boot=a.n_boot, seed=a.seed)
    except ValueError as e:  # a SweepFileError too
        return fail("sweep analyze", e, 2)
    if a.plots:
        plots.plot_analysis(groups, summary, a.plots, fmt=a.format, top=a.top)
        write_summary(Path(a.plots) / "summary.json", summary)
    if a.json:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return 0
    print(format_summary(summary))
    if a.plots:
        print(f"figures and summary.json -> {a.plots}")
    return 0


def run_fit(a: argparse.Namespace) -> int:
    try:
        if all(c.isdigit() or c in ", " for c in a.widths):
            widths = [int(v) for v in a.widths.replace(" ", "").split(",") if v]
        else:
            widths = get_entry(a.widths).cfg.block_widths
        f = fit_quantized_linear(widths)
    except ValueError as e:  # an UnknownModelError too
        return fail("sweep fit", e, 2)
    if a.json:
        print(json.dumps({**f.as_dict(), "observed": f.observed, "predicted": f.predicted}))
    else:
        print(f"w0={f.w0} wa={f.wa} wm={f.wm} d={f.depth}  e_fit={f.e_fit:.4f}\n"
              f"observed : {list(f.observed)}\npredicted: {list(f.predicted)}")
    return 0


def run_scaling(a: argparse.Namespace) -> int:
    table = scaling_table(include_efficientnet=not a.no_efficientnet)
    for fam, t in table.items():
        print(f"{fam:<14} acts ~ flops^{t['acts_exponent']:.2f}   params ~ flops^{t['params_exponent']:.2f}  "
              f"({len(t['models'])} models)")
    if a.plots:
        from regnet_zoo.design_space.plots import plot_scaling

        out = Path(a.plots)
        plot_scaling(table, out / f"scaling.{a.format}")
        atomic_write(out / "scaling.json", json.dumps(table, indent=2))
        print(f"-> {out}")
    return 0

