"""Reproduce the paper's design-space findings on the embedded digits (see docs/design_space.md).

(a) complexity scaling: activations ~ flops^0.5 for RegNetX/Y, ~ flops^0.8-1 for EfficientNet-B0..B7;
(b) the quantized-linear fit of the 24 paper models' widths: e_fit = 0, widths regenerated exactly;
(c) a real sweep: N models of AnyNetX_A and of RegNetX in a small flops band at 32 px, each trained
    a few epochs on the digits; RegNetX's error EDF should lie left of AnyNetX_A's. The analysis is
    ``design_space.analysis.analyze_groups`` (the same as ``regnet-zoo sweep analyze``): error
    statistics, bootstrap ranges, width fits, and the comparison with the first space (mean EDF
    difference with a bootstrap interval, KS, one-sided Mann-Whitney p).

Resumable: trial files are reused (and extended when --n grows) and finished trials skipped, so
after an interruption run the same command again. Trials that fail are retried once in the same
run; if some still fail, the analysis covers the finished ones (their actual counts are recorded)
and the script exits with status 1. Full run (about an hour on 2 cores):

    python benchmarks/reproduce_sweep.py --n 64 --epochs 5 --workers 2 --out benchmarks/results/sweep

Scaled-down check: ``--n 8 --epochs 2 --out runs/sweep-check``. ``--analyze-only`` regenerates
summary.json and the figures from the results already there (no sampling, no training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from regnet_zoo.design_space import (
    TrainSettings,
    fit_quantized_linear,
    read_trials,
    run_sweep,
    sample,
    scaling_table,
    trials_from_samples,
    write_jsonl_atomic,
)
from regnet_zoo.design_space.analysis import (
    analyze_groups,
    edf_side,
    format_summary,
    load_groups,
    trial_timing,
    write_summary,
)
from regnet_zoo.design_space.records import RESULTS_NAME, read_jsonl
from regnet_zoo.design_space.sweep import pending_trials
from regnet_zoo.fileio import atomic_write
from regnet_zoo.registry import MODELS

DISPLAY = {"anynetx_a": "AnyNetX_A", "regnetx": "RegNetX"}


def paper_fits() -> dict[str, dict]:
    """(b): fit every paper model's per-block widths."""
    out = {}
    for name, e in MODELS.items():
        if e.paper:
            f = fit_quantized_linear(e.cfg.block_widths)
            out[name] = {**f.as_dict(), "regenerates": list(f.predicted) == e.cfg.block_widths,
                         "paper": {"w0": e.cfg.w0, "wa": e.cfg.wa, "wm": e.cfg.wm}}
    return out


def docs_table(report: dict) -> str:
    """The results table of docs/design_space.md, from the summary."""
    ref = report["_analysis"]["reference"]
    rows = ["| space | n | min error | median | mean | vs " + DISPLAY.get(ref, ref) + " |",
            "| --- | --- | --- | --- | --- | --- |"]
    for name in report["_analysis"]["populations"]:
        s, e = report[name], report[name]["error"]
        v = s.get("vs_" + ref)
        cmp = "" if v is None else (
            f"EDF {edf_side(v['edf_dominance'])}: mean F difference {v['edf_dominance']:+.3f} "
            f"(95% CI {v['edf_dominance_ci'][0]:+.3f} to {v['edf_dominance_ci'][1]:+.3f}), KS {v['ks']:.3f}, "
            f"Mann-Whitney p = {v['mann_whitney_p']:.3f}")
        rows.append(f"| {DISPLAY.get(name, name)} | {s['n']} | {e['min']:.2f}% | {e['median']:.2f}% | "
                    f"{e['mean']:.2f}% | {cmp} |")
    return "\n".join(rows)


def trial_files(out: Path, spaces: list[str], n: int, seed: int, flops: str, resolution: int,
                analyze_only: bool) -> list[dict] | None:
    """The first ``n`` trials of each space (trial files sampled or extended as needed); None on a mismatch."""
    trials = []
    for space in spaces:
        path = out / f"trials_{space}.jsonl"
        old = read_trials(path) if path.exists() else []
        if len(old) < n and not analyze_only:
            # seeded sampling is prefix-stable: the first len(old) models of a larger draw are the old ones,
            # so a folder from a smaller run is extended and its finished trials are kept
            ts = trials_from_samples(sample(space, n, seed=seed, flops=flops, resolution=resolution, num_classes=10))
            if ts[:len(old)] != old:
                print(f"{path} was sampled with other settings; use another --out or delete it", file=sys.stderr)
                return None
            write_jsonl_atomic(path, ts)
            old = ts
        trials += old[:n]
    return trials


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
    p.add_argument("--n-boot", type=int, default=10_000, help="bootstrap resamples of the analysis")
    p.add_argument("--format", default="png", choices=("png", "svg"))
    p.add_argument("--analyze-only", action="store_true",
                   help="only regenerate (a), (b) and the analysis of the results already in --out")
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    from regnet_zoo.design_space import plots

    # (a) and (b): complexity alone, seconds
    table = scaling_table()
    atomic_write(out / "scaling.json", json.dumps(table, indent=2))
    plots.plot_scaling(table, out / f"scaling.{a.format}")
    for fam, t in table.items():
        print(f"(a) {fam:<13} acts ~ flops^{t['acts_exponent']:.2f}, params ~ flops^{t['params_exponent']:.2f}")
    fits = paper_fits()
    atomic_write(out / "paper_fits.json", json.dumps(fits, indent=2))
    worst = max(f["e_fit"] for f in fits.values())
    print(f"(b) {len(fits)} paper models: max e_fit {worst:.2g}, all regenerate their widths: "
          f"{all(f['regenerates'] for f in fits.values())}")

    # (c) the sweep
    trials = trial_files(out, a.spaces, a.n, a.seed, a.flops, a.resolution, a.analyze_only)
    if trials is None:
        return 2
    settings = TrainSettings(epochs=a.epochs, batch_size=a.batch_size, base_lr=a.lr, threads=a.threads,
                             seed=a.seed)
    last_run = None
    if a.analyze_only:
        old = out / "summary.json"
        last_run = json.loads(old.read_text()).get("_run", {}).get("last_run") if old.exists() else None
        todo, _ = pending_trials(trials, out / RESULTS_NAME, settings)  # refuses results trained otherwise
    else:
        t0 = time.perf_counter()

        def progress(rec):
            status = f"{rec['error']:6.2f}%  {rec['time_s']:5.1f}s" if rec["status"] == "ok" else "FAILED"
            print(f"(c) {rec['id']:<16} {status}  ({time.perf_counter() - t0:.0f}s)", flush=True)

        s = run_sweep(trials, out, settings, workers=a.workers, on_result=progress)
        trained, skipped, failed = s.finished, s.skipped, s.failed
        if s.failed:  # one retry: a failure on a busy machine (memory, a killed worker) is often transient
            print(f"(c) retrying {s.failed} failed trials once", flush=True)
            s = run_sweep(trials, out, settings, workers=a.workers, on_result=progress)
            trained, failed = trained + s.finished, s.failed
        wall = time.perf_counter() - t0
        print(f"(c) {trained} trained, {skipped} already done, {failed} failed, {wall:.0f}s")
        last_run = {"trained": trained, "already_done": skipped, "failed": failed, "wall_s": wall,
                    "workers": a.workers, "finished_at": time.time()}
        todo, _ = pending_trials(trials, out / RESULTS_NAME, settings)

    groups = load_groups([out], ids={t["id"] for t in trials})
    groups = {space: groups[space] for space in a.spaces if space in groups}
    if not groups:
        print(f"(c) no finished trials in {out}", file=sys.stderr)
        return 1
    report = analyze_groups(groups, reference=a.spaces[0], top=5, n_boot=a.n_boot, seed=a.seed)
    results = read_jsonl(out / RESULTS_NAME)
    failed_ids = {r["id"] for r in results if r.get("status") == "failed"}
    report["_run"] = {
        "settings": settings.as_dict(), "flops": a.flops, "resolution": a.resolution, "n_requested": a.n,
        "n_ok": {space: len(groups.get(space, [])) for space in a.spaces},
        "n_missing": {space: sum(t["space"] == space for t in todo) for space in a.spaces},
        "n_failed": {space: sum(t["space"] == space and t["id"] in failed_ids for t in todo) for space in a.spaces},
        "timing": trial_timing(r for recs in groups.values() for r in recs),
        "last_run": last_run,
    }
    plots.plot_analysis(groups, report, out, fmt=a.format, top=5)
    write_summary(out / "summary.json", report)
    print(format_summary(report))
    timing = report["_run"]["timing"]
    print(f"(c) {timing['trials']} trials: median {timing['median_trial_s']:.1f}s, total {timing['total_trial_s']:.0f} "
          f"trial-seconds, busy wall time {timing['busy_wall_s']:.0f}s; results and figures in {out}")
    print("\n" + docs_table(report))
    if todo:
        print(f"(c) {len(todo)} trials have no result (see n_missing in summary.json); run again to retry them",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
