"""Reproduce the paper's design-space findings on the embedded digits (see docs/design_space.md).

(a) complexity scaling: activations ~ flops^0.5 for RegNetX/Y, ~ flops^0.8-1 for EfficientNet-B0..B7;
(b) the quantized-linear fit of the 24 paper models' widths: e_fit = 0, widths regenerated exactly;
(c) a real sweep: N models of AnyNetX_A and of RegNetX in a small flops band at 32 px, each trained
    a few epochs on the digits; RegNetX's error EDF should lie left of AnyNetX_A's.

Resumable: trial files are reused (and extended when --n grows) and finished trials skipped, so
after an interruption run the same command again. Full run (about an hour on 2 cores):

    python benchmarks/reproduce_sweep.py --n 64 --epochs 5 --workers 2 --out benchmarks/results/sweep

Scaled-down check: ``--n 8 --epochs 2 --out runs/sweep-check``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from regnet_zoo.design_space import (
    TrainSettings,
    fit_quantized_linear,
    group_by_space,
    load_results,
    read_trials,
    run_sweep,
    sample,
    scaling_table,
    summarize,
    trials_from_samples,
    write_jsonl_atomic,
)
from regnet_zoo.design_space.analysis import best_records, fit_records
from regnet_zoo.design_space.stats import edf_dominance, ks_statistic
from regnet_zoo.registry import MODELS


def paper_fits() -> dict[str, dict]:
    """(b): fit every paper model's per-block widths."""
    out = {}
    for name, e in MODELS.items():
        if e.paper:
            f = fit_quantized_linear(e.cfg.block_widths)
            out[name] = {**f.as_dict(), "regenerates": list(f.predicted) == e.cfg.block_widths,
                         "paper": {"w0": e.cfg.w0, "wa": e.cfg.wa, "wm": e.cfg.wm}}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="benchmarks/results/sweep", help="results folder (trials, results, plots)")
    p.add_argument("--spaces", nargs="+", default=["anynetx_a", "regnetx"], help="first = reference space")
    p.add_argument("--n", type=int, default=64, help="models per space")
    p.add_argument("--flops", default="4e6:6e6", help="flops band (multiply-adds at --resolution)")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.2, help="base LR per 128 images")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--format", default="png", choices=("png", "svg"))
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from regnet_zoo.design_space import plots

    # (a) and (b): complexity alone, seconds
    table = scaling_table()
    (out / "scaling.json").write_text(json.dumps(table, indent=2))
    plots.plot_scaling(table, out / f"scaling.{a.format}")
    for fam, t in table.items():
        print(f"(a) {fam:<13} acts ~ flops^{t['acts_exponent']:.2f}, params ~ flops^{t['params_exponent']:.2f}")
    fits = paper_fits()
    (out / "paper_fits.json").write_text(json.dumps(fits, indent=2))
    worst = max(f["e_fit"] for f in fits.values())
    print(f"(b) {len(fits)} paper models: max e_fit {worst:.2g}, all regenerate their widths: "
          f"{all(f['regenerates'] for f in fits.values())}")

    # (c) the sweep
    trials = []
    for space in a.spaces:
        path = out / f"trials_{space}.jsonl"
        old = read_trials(path) if path.exists() else []
        if len(old) < a.n:
            # seeded sampling is prefix-stable: the first len(old) models of a larger draw are the old ones,
            # so a folder from a smaller run is extended and its finished trials are kept
            ts = trials_from_samples(sample(space, a.n, seed=a.seed, flops=a.flops, resolution=a.resolution,
                                            num_classes=10))
            if ts[:len(old)] != old:
                print(f"{path} was sampled with other settings; use another --out or delete it", file=sys.stderr)
                return 2
            write_jsonl_atomic(path, ts)
            old = ts
        trials += old[:a.n]
    settings = TrainSettings(epochs=a.epochs, batch_size=a.batch_size, base_lr=a.lr, threads=a.threads,
                             seed=a.seed)
    t0 = time.perf_counter()

    def progress(rec):
        status = f"{rec['error']:6.2f}%  {rec['time_s']:5.1f}s" if rec["status"] == "ok" else "FAILED"
        print(f"(c) {rec['id']:<16} {status}  ({time.perf_counter() - t0:.0f}s)", flush=True)

    summary = run_sweep(trials, out, settings, workers=a.workers, on_result=progress)
    print(f"(c) {summary.finished} trained, {summary.skipped} already done, {summary.failed} failed, "
          f"{summary.wall_s:.0f}s")
    ids = {t["id"] for t in trials}
    groups = {k: v for k, v in group_by_space(r for r in load_results(out) if r["id"] in ids).items()}
    report = {name: summarize(recs) for name, recs in groups.items()}
    ref, *others = [s for s in a.spaces if s in groups]
    for name in others:
        ea, eb = [r["error"] for r in groups[name]], [r["error"] for r in groups[ref]]
        report[name]["vs_" + ref] = {"ks": ks_statistic(ea, eb), "edf_dominance": edf_dominance(ea, eb)}
    times = [r["time_s"] for recs in groups.values() for r in recs]
    report["_run"] = {"settings": settings.as_dict(), "flops": a.flops, "resolution": a.resolution,
                      "n_per_space": a.n, "median_trial_s": float(np.median(times))}
    (out / "summary.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    plots.plot_edfs(groups, out / f"edf.{a.format}")
    plots.plot_edfs(groups, out / f"edf_normalized.{a.format}", normalized=True)
    for name, recs in groups.items():
        plots.plot_param_errors(recs, report[name]["bootstrap"], out / f"errors_{name}.{a.format}", title=name)
        best = best_records(recs, 5)
        plots.plot_best_widths(best, fit_records(best), out / f"widths_{name}.{a.format}", title=f"best of {name}")
    for name in groups:
        e = report[name]["error"]
        extra = ""
        if "vs_" + ref in report[name]:
            v = report[name]["vs_" + ref]
            extra = (f"  EDF {'left' if v['edf_dominance'] > 0 else 'right'} of {ref} "
                     f"(mean F diff {v['edf_dominance']:+.3f}, KS {v['ks']:.2f})")
        print(f"(c) {name:<10} n={report[name]['n']} error min {e['min']:.2f} median {e['median']:.2f} "
              f"mean {e['mean']:.2f}{extra}")
    print(f"median trial time {report['_run']['median_trial_s']:.1f}s; results and figures in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
