"""Analysis of finished sweeps, no torch: ``summarize`` turns the ``ok`` records of one population
(one design space) into a JSON-able dict: error statistics, the bootstrap interval of the best model's
value of every design parameter, the quantized-linear fits of the best models' widths. ``analyze_groups``
(behind ``sweep analyze`` and ``benchmarks/reproduce_sweep.py``) compares several with a reference.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regnet_zoo.config import RegNetCfg, cfg_from_dict
from regnet_zoo.counting import METRICS
from regnet_zoo.design_space.fit import LinearFit, fit_quantized_linear
from regnet_zoo.design_space.records import load_results
from regnet_zoo.design_space.spaces import AnyNetSpace, DesignSpace, UnknownSpaceError, get_space
from regnet_zoo.design_space.stats import bootstrap_best, compare_populations
from regnet_zoo.fileio import atomic_write


def block_widths(record: dict[str, Any]) -> list[int]:
    """Per-block output widths of a record's network (after the compatibility step)."""
    net = cfg_from_dict(record["cfg"]).to_anynet()
    return [w for d, w in zip(net.depths, net.widths) for _ in range(d)]


def design_values(record: dict[str, Any], space: str | DesignSpace | None = None) -> dict[str, float]:
    """A record's design parameters by the paper's names plus complexity (flops etc. in raw counts).

    RegNet: d, w0, wa, wm, b, g (b: the bottleneck ratio 1 / bot_mul). AnyNet: d (total blocks), d1..dS,
    w1..wS, and b / g where the space (``space`` or the record's; an undefined name shares nothing) shares
    them across stages, b1..bS / g1..gS otherwise: every record of one space has the same keys. A config
    that breaks its space's sharing raises ``ValueError``.
    """
    cfg = cfg_from_dict(record["cfg"])
    out: dict[str, float] = {}
    if isinstance(cfg, RegNetCfg):
        out.update(d=cfg.depth, w0=cfg.w0, wa=cfg.wa, wm=cfg.wm, b=round(1 / cfg.bot_mul, 6), g=cfg.group_width)
    else:
        try:
            sp = get_space(space if space is not None else record.get("space"))
        except UnknownSpaceError:  # a user-defined space: no sharing is known
            sp = None
        shared_b, shared_g = (sp.shared_b, sp.shared_g) if isinstance(sp, AnyNetSpace) else (False, False)
        out["d"] = sum(cfg.depths)
        for name, values in (("d", cfg.depths), ("w", cfg.widths)):
            out.update({f"{name}{i + 1}": v for i, v in enumerate(values)})
        for name, values, shared in (("b", [round(1 / b, 6) for b in cfg.bot_muls], shared_b),
                                     ("g", list(cfg.group_widths), shared_g)):
            if not shared:
                out.update({f"{name}{i + 1}": v for i, v in enumerate(values)})
            elif len(set(values)) == 1:
                out[name] = values[0]
            else:
                raise ValueError(f"record {record.get('id')!r}: space {sp.name} shares {name} across stages, "
                                 f"but the config has {name} = {values}")
    out.update({m: record["complexity"][m] for m in METRICS if m in record.get("complexity", {})})
    return out


def group_by_space(records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by their ``space`` field, in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(str(r.get("space", "unknown")), []).append(r)
    return groups


def errors_of(records: list[dict[str, Any]]) -> np.ndarray:
    """(n,) top-1 errors (%) of ``ok`` records."""
    return np.array([float(r["error"]) for r in records if r.get("status", "ok") == "ok"])


def best_records(records: list[dict[str, Any]], top: int) -> list[dict[str, Any]]:
    """The ``top`` lowest-error records, best first."""
    return sorted(records, key=lambda r: float(r["error"]))[:top]


def fit_records(records: list[dict[str, Any]]) -> list[LinearFit]:
    """Quantized-linear fit of each record's per-block widths."""
    return [fit_quantized_linear(block_widths(r)) for r in records]


def summarize(
    records: list[dict[str, Any]],
    *,
    top: int = 5,
    n_boot: int = 10_000,
    fraction: float = 0.25,
    seed: int = 0,
) -> dict[str, Any]:
    """Statistics of one population of finished trials (see module docstring)."""
    if not records:
        raise ValueError("no finished trials to analyse")
    errs = errors_of(records)
    values = [design_values(r) for r in records]
    names = [k for k in values[0] if all(k in v for v in values)]  # the same keys unless spaces are mixed
    boot = {k: bootstrap_best(np.array([v[k] for v in values], dtype=np.float64), errs, fraction=fraction,
                              n_boot=n_boot, seed=seed).as_dict() for k in names}
    best = best_records(records, top)
    return {
        "n": int(errs.size),
        "error": {"min": float(errs.min()), "mean": float(errs.mean()), "median": float(np.median(errs)),
                  "max": float(errs.max())},
        "complexity": {m: {"min": int(min(v[m] for v in values)), "max": int(max(v[m] for v in values))}
                       for m in METRICS if m in names},
        "bootstrap": boot,
        "best": [{"id": r.get("id"), "error": float(r["error"]), "params": design_values(r), "fit": f.as_dict()}
                 for r, f in zip(best, fit_records(best))],
    }


def load_groups(runs: Sequence[str | os.PathLike], ids: Iterable[str] | None = None) -> dict[str, list[dict[str, Any]]]:
    """``ok`` results of run folders (or results files) grouped by space, in first-seen order.

    A space met again in a later run is keyed ``space@<run folder name>``; with ``ids`` only those
    trials are kept. Empty groups are dropped.
    """
    keep = None if ids is None else set(ids)
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        recs = [r for r in load_results(run) if keep is None or r.get("id") in keep]
        for space, rs in group_by_space(recs).items():
            groups[space if space not in groups else f"{space}@{Path(run).name}"] = rs
    return {k: v for k, v in groups.items() if v}


def analyze_groups(
    groups: dict[str, list[dict[str, Any]]],
    *,
    reference: str | None = None,
    top: int = 5,
    n_boot: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """``summarize`` of every population, each compared with ``reference`` (default: the first).

    Returns ``{name: summary, ..., "_analysis": {...}}``; every population but the reference gets
    ``summary["vs_<reference>"] = stats.compare_populations(its errors, the reference's)``
    (mean EDF difference with a bootstrap interval, KS, one-sided Mann-Whitney p).
    """
    if not groups:
        raise ValueError("no finished trials to analyse")
    ref = reference if reference is not None else next(iter(groups))
    if ref not in groups:
        raise ValueError(f"reference {ref!r} is not one of the populations {list(groups)}")
    out: dict[str, Any] = {name: summarize(recs, top=top, n_boot=n_boot, seed=seed) for name, recs in groups.items()}
    for name, recs in groups.items():
        if name != ref:
            out[name]["vs_" + ref] = compare_populations(errors_of(recs), errors_of(groups[ref]), n_boot=n_boot,
                                                         seed=seed)
    out["_analysis"] = {"reference": ref, "top": top, "n_boot": n_boot, "seed": seed, "populations": list(groups)}
    return out


def edf_side(dominance: float) -> str:
    """Where a population's EDF lies relative to the reference's, from ``edf_dominance``."""
    return "left" if dominance > 0 else "right" if dominance < 0 else "level with"


def format_summary(summary: dict[str, Any]) -> str:
    """Text report of ``analyze_groups``' result: errors, best-model ranges, comparison with the reference."""
    ref = summary["_analysis"]["reference"]
    lines = [f"{'population':<24} {'n':>4} {'min':>6} {'mean':>6} {'median':>7}  best-model ranges (95%)"]
    for name in summary["_analysis"]["populations"]:
        s, e = summary[name], summary[name]["error"]
        ranges = ", ".join(f"{k}=[{b['low']:.3g},{b['high']:.3g}]" for k, b in s["bootstrap"].items()
                           if k not in METRICS)
        lines.append(f"{name:<24} {s['n']:>4} {e['min']:>6.2f} {e['mean']:>6.2f} {e['median']:>7.2f}  {ranges}")
        if "vs_" + ref in s:
            v = s["vs_" + ref]
            side = edf_side(v["edf_dominance"]) + (" of" if v["edf_dominance"] else "")
            lo, hi = v["edf_dominance_ci"]
            lines.append(f"{'':<24} EDF {side} {ref}: mean F difference {v['edf_dominance']:+.3f} "
                         f"({100 * (1 - v['ci_alpha']):.0f}% CI {lo:+.3f}..{hi:+.3f}), KS {v['ks']:.3f}, "
                         f"one-sided Mann-Whitney p = {v['mann_whitney_p']:.3g}")
    return "\n".join(lines)


def trial_timing(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Time spent on finished trials: their count, median and total ``time_s`` (seconds), and
    ``busy_wall_s``: the length of the union of their [finished_at - time_s, finished_at] intervals
    (wall time during which at least one trial ran; gaps between runs do not count)."""
    rs = [r for r in records if "time_s" in r and "finished_at" in r]
    if not rs:
        return {"trials": 0, "median_trial_s": 0.0, "total_trial_s": 0.0, "busy_wall_s": 0.0}
    busy, end = 0.0, -np.inf
    for lo, hi in sorted((float(r["finished_at"]) - float(r["time_s"]), float(r["finished_at"])) for r in rs):
        busy += max(0.0, hi - max(lo, end))  # the part of [lo, hi] after every earlier interval
        end = max(end, hi)
    times = np.array([float(r["time_s"]) for r in rs])
    return {"trials": len(rs), "median_trial_s": float(np.median(times)), "total_trial_s": float(times.sum()),
            "busy_wall_s": busy}


def write_summary(path: str | os.PathLike, summary: dict[str, Any]) -> Path:
    """``summary`` as indented, key-sorted JSON, written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps(summary, indent=2, sort_keys=True) + "\n")
