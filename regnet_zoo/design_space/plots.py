"""Figures of the paper's analyses (matplotlib, Agg backend; PNG, SVG or PDF by the file suffix).

Each function writes ``path`` and returns it; figures are closed after saving.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import NullFormatter, ScalarFormatter  # noqa: E402

from regnet_zoo.design_space.analysis import (  # noqa: E402
    best_records,
    block_widths,
    design_values,
    errors_of,
    fit_records,
)
from regnet_zoo.design_space.fit import LinearFit  # noqa: E402
from regnet_zoo.design_space.stats import complexity_edges, complexity_weights, edf  # noqa: E402
from regnet_zoo.fileio import atomic_write  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    try:  # readers never see a half-written figure
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=path.suffix.lstrip(".").lower() or "png"))
    finally:
        plt.close(fig)
    return path


def _label(ax, xlabel: str, ylabel: str = "", *, title: str = "", fontsize: int = 6, loc: str = "best",
           which: str = "major") -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.4, which=which)
    ax.legend(fontsize=fontsize, loc=loc)


def plot_edfs(
    groups: Mapping[str, list[dict[str, Any]]],
    path: str | os.PathLike,
    *,
    normalized: bool = False,
    complexity: str = "flops",
    bins: int = 10,
) -> Path:
    """Error EDF of each population (name -> ``ok`` records); with ``normalized`` the
    complexity-normalised EDF: weights uniform over ``bins`` log-``complexity`` bins spanning the
    pooled range of all populations, so every curve is reweighted toward the same target."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    cx = {name: [r["complexity"][complexity] for r in recs] for name, recs in groups.items()} if normalized else {}
    edges = complexity_edges(*cx.values(), bins=bins) if normalized else None
    for i, (name, recs) in enumerate(groups.items()):
        errs = errors_of(recs)
        xs, ys = edf(errs, weights=complexity_weights(cx[name], edges=edges) if normalized else None)
        ax.step(np.concatenate([[xs[0]], xs]), np.concatenate([[0.0], ys]), where="post", color=COLORS[i % 10],
                label=f"{name}  n={errs.size} min={errs.min():.1f} mean={errs.mean():.1f}")
    _label(ax, "error (%)", "cumulative prob." + (f" ({complexity}-normalised)" if normalized else ""), fontsize=7,
           loc="lower right")
    ax.set_ylim(0, 1)
    return _save(fig, path)


def plot_param_errors(
    records: list[dict[str, Any]],
    bootstrap: Mapping[str, Mapping[str, float]],
    path: str | os.PathLike,
    *,
    params: Sequence[str] | None = None,
    title: str = "",
    log_params: Sequence[str] = ("w0", "wa"),
) -> Path:
    """Scatter of error vs each design parameter, with the bootstrap band (95% interval of the
    best model's value, shaded) and its median (black line); ``bootstrap`` is ``summarize()['bootstrap']``."""
    values = [design_values(r) for r in records]
    errs = errors_of(records)
    names = [p for p in (params or list(bootstrap)) if p in bootstrap]
    cols = min(4, len(names)) or 1
    rows = int(np.ceil(len(names) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.5 * rows), squeeze=False, sharey=True)
    for ax, name in zip(axes.flat, names):
        x = np.array([v[name] for v in values], dtype=np.float64)
        b = bootstrap[name]
        ax.scatter(x, errs, s=10, alpha=0.7)
        ax.axvspan(b["low"], b["high"], alpha=0.15, color="C0", label=f"[{b['low']:.3g}, {b['high']:.3g}]")
        ax.axvline(b["best"], color="k", lw=1, label=f"best {b['best']:.3g}")
        if name in log_params and np.all(x > 0):
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ScalarFormatter())
            ax.xaxis.set_minor_formatter(NullFormatter())
        _label(ax, name, loc="upper left")
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("error (%)")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_best_widths(
    records: list[dict[str, Any]],
    fits: Sequence[LinearFit],
    path: str | os.PathLike,
    *,
    title: str = "",
) -> Path:
    """Per-block widths (log2 axis) of the given models, each with its quantized-linear fit
    (dashed) and the continuous line u_j = w0 + wa j (dotted)."""
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for i, (r, f) in enumerate(zip(records, fits)):
        c = COLORS[i % 10]
        ws = block_widths(r)
        ax.plot(ws, "o-", ms=3, color=c, label=f"{r.get('id', i)}  err={float(r['error']):.1f}  e_fit={f.e_fit:.3f}")
        ax.plot(f.predicted, "--", color=c, lw=1)
        ax.plot(f.widths_cont, ":", color=c, lw=1)
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_formatter(ScalarFormatter())
    _label(ax, "block index j", "width (channels)", title=title, loc="upper left")
    return _save(fig, path)


def plot_scaling(table: Mapping[str, Mapping[str, Any]], path: str | os.PathLike) -> Path:
    """Activations and params vs flops (log-log) per family with fitted power laws;
    ``table`` is ``scaling.scaling_table()``."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for i, (fam, t) in enumerate(table.items()):
        c = COLORS[i % 10]
        f = np.array([m["flops"] for m in t["models"]], dtype=np.float64)
        xs = np.geomspace(f.min(), f.max(), 50)
        for ax, metric in zip(axes, ("acts", "params")):
            y = np.array([m[metric] for m in t["models"]], dtype=np.float64)
            k, coef = t[f"{metric}_exponent"], t[f"{metric}_coef"]
            ax.loglog(f / 1e9, y / 1e6, "o", color=c, ms=4, label=f"{fam}: {metric} ~ flops^{k:.2f}")
            ax.loglog(xs / 1e9, coef * xs ** k / 1e6, "-", color=c, lw=1)
    for ax, metric in zip(axes, ("activations (M)", "params (M)")):
        _label(ax, "flops (B, multiply-adds)", metric, fontsize=7, which="both")
    return _save(fig, path)


def plot_strategies(curves: Mapping[str, Mapping[str, Any]], path: str | os.PathLike, *, title: str = "") -> Path:
    """Activations vs flops (log-log) per scaling strategy, one line over the scale factors, labelled with
    the fitted and the paper's exponents; ``curves`` is ``scaling.strategy_curves()``."""
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    for i, (name, c) in enumerate(curves.items()):
        f = np.array([m["flops"] for m in c["models"]], dtype=np.float64)
        a = np.array([m["acts"] for m in c["models"]], dtype=np.float64)
        ax.loglog(f / 1e9, a / 1e6, "o-", color=COLORS[i % 10], ms=3, lw=1,
                  label=f"{name}: acts ~ flops^{c['acts_exponent']:.2f} (paper {c['expected_acts_exponent']:.2f})")
    _label(ax, "flops (B, multiply-adds)", "activations (M)", title=title, which="both")
    return _save(fig, path)


def plot_analysis(
    groups: Mapping[str, list[dict[str, Any]]],
    summary: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    fmt: str = "png",
    top: int = 5,
) -> list[Path]:
    """The figures of an analysis (``summary = analysis.analyze_groups(groups)``) in ``out_dir``:
    ``edf``, ``edf_normalized``, and per population ``errors_<name>`` (error vs each parameter with
    its bootstrap band) and ``widths_<name>`` (the ``top`` best models' widths and fits); ``<name>``
    with ``@`` and ``/`` replaced by ``_``. Returns the paths written."""
    out = Path(out_dir)
    paths = [plot_edfs(groups, out / f"edf.{fmt}"), plot_edfs(groups, out / f"edf_normalized.{fmt}", normalized=True)]
    for name, recs in groups.items():
        safe = name.replace("@", "_").replace("/", "_")
        paths.append(plot_param_errors(recs, summary[name]["bootstrap"], out / f"errors_{safe}.{fmt}", title=name))
        best = best_records(recs, top)
        paths.append(plot_best_widths(best, fit_records(best), out / f"widths_{safe}.{fmt}", title=f"best of {name}"))
    return paths
