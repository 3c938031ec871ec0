"""Analysis of finished sweeps: per-space error statistics, bootstrap ranges, width fits. No torch.

``summarize`` turns the ``ok`` records of one population (one design space) into a JSON-able dict:
error statistics, the bootstrap interval of the best model's value for every design parameter,
and the quantized-linear fit (e_fit) of the best models' per-block widths.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from regnet_zoo.config import RegNetCfg, cfg_from_dict
from regnet_zoo.design_space.fit import LinearFit, fit_quantized_linear
from regnet_zoo.design_space.stats import bootstrap_best

COMPLEXITY = ("flops", "params", "acts")


def block_widths(record: dict[str, Any]) -> list[int]:
    """Per-block output widths of a record's network (after the compatibility step)."""
    net = cfg_from_dict(record["cfg"]).to_anynet()
    return [w for d, w in zip(net.depths, net.widths) for _ in range(d)]


def design_values(record: dict[str, Any]) -> dict[str, float]:
    """A record's design parameters by the paper's names plus complexity (flops etc. in raw counts).

    RegNet: d, w0, wa, wm, b, g. AnyNet: d (total blocks), d1..dS, w1..wS, and b, g when shared
    by all stages (b1..bS, g1..gS otherwise). b is the bottleneck ratio (1 / bot_mul).
    """
    cfg = cfg_from_dict(record["cfg"])
    out: dict[str, float] = {}
    if isinstance(cfg, RegNetCfg):
        out.update(d=cfg.depth, w0=cfg.w0, wa=cfg.wa, wm=cfg.wm, b=round(1 / cfg.bot_mul, 6), g=cfg.group_width)
    else:
        out["d"] = sum(cfg.depths)
        for name, values in (("d", cfg.depths), ("w", cfg.widths)):
            out.update({f"{name}{i + 1}": v for i, v in enumerate(values)})
        for name, values in (("b", [round(1 / b, 6) for b in cfg.bot_muls]), ("g", cfg.group_widths)):
            if len(set(values)) == 1:
                out[name] = values[0]
            else:
                out.update({f"{name}{i + 1}": v for i, v in enumerate(values)})
    out.update({m: record["complexity"][m] for m in COMPLEXITY if m in record.get("complexity", {})})
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
    names = [k for k in values[0] if all(k in v for v in values)]
    boot = {}
    for k in names:
        col = np.array([v[k] for v in values], dtype=np.float64)
        boot[k] = bootstrap_best(col, errs, fraction=fraction, n_boot=n_boot, seed=seed).as_dict()
    best = best_records(records, top)
    fits = fit_records(best)
    return {
        "n": int(errs.size),
        "error": {"min": float(errs.min()), "mean": float(errs.mean()), "median": float(np.median(errs)),
                  "max": float(errs.max())},
        "complexity": {m: {"min": int(min(v[m] for v in values)), "max": int(max(v[m] for v in values))}
                       for m in COMPLEXITY if m in names},
        "bootstrap": boot,
        "best": [{"id": r.get("id"), "error": float(r["error"]), "params": design_values(r), "fit": f.as_dict()}
                 for r, f in zip(best, fits)],
    }
