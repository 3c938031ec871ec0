"""Figure of a benchmark ``Report``: throughput bars and training memory vs analytic activations."""

from __future__ import annotations

import os
from pathlib import Path

from harness.report import MiB, Report
from regnet_zoo.fileio import atomic_write

COLORS = {"zoo": "tab:blue", "timm": "tab:orange", "torchvision": "tab:green", "zoo fused / compiled": "tab:purple",
          "EfficientNet (timm)": "tab:red"}


def _color(row: dict) -> str:
    if row["arch"].startswith("efficientnet"):
        return COLORS["EfficientNet (timm)"]
    return COLORS.get(row["impl"], COLORS["zoo fused / compiled"])


def _label(row: dict) -> str:
    group = row.get("group", "")
    return row["name"] + (f" [{group.split('_')[-1].upper()} pair]" if group.startswith("pair:") else "")


def plot_report(rep: Report, path: str | os.PathLike) -> Path:
    """Write a PNG/PDF/SVG (by suffix), atomically: images/s per timed case; training memory vs acts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    panels = [(t, rows) for t, rows in (("inference", rep.inference), ("training step", rep.training)) if rows]
    n = len(panels) + (1 if rep.memory else 0)
    if n == 0:
        raise ValueError("nothing to plot: the report has no inference, training or memory rows")
    height = max(3.0, 0.22 * max([len(rows) for _, rows in panels] + [8]))
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, height), squeeze=False)
    axes = list(axes[0])
    for ax, (title, rows) in zip(axes, panels):
        ax.barh(range(len(rows)), [r["images_per_s"] for r in rows], color=[_color(r) for r in rows])
        ax.set_yticks(range(len(rows)), [_label(r) for r in rows], fontsize=6)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"images/s ({rep.machine.get('device')}, {rep.machine.get('amp')}, median of interleaved calls)")
        ax.set_title(title)
    if panels:
        axes[0].legend(handles=[Patch(color=c, label=k) for k, c in COLORS.items()], fontsize=7, loc="lower right")
    if rep.memory:
        ax = axes[-1]
        for key, marker, what in (("saved_for_backward_bytes", "o", "saved for backward"),
                                  ("peak_bytes", "^", "measured peak of the step")):
            rows = [m for m in rep.memory if m[key] is not None]
            if not rows:
                continue
            ax.scatter([m["acts"] * m["batch"] / 1e6 for m in rows], [m[key] / MiB for m in rows], marker=marker,
                       c=[_color(m) for m in rows], label=what)
        for m in rep.memory:
            ax.annotate(m["arch"], (m["acts"] * m["batch"] / 1e6, m["saved_for_backward_bytes"] / MiB), fontsize=6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("analytic activations x batch (millions)")
        ax.set_ylabel("MiB")
        ax.set_title(f"training-step memory vs activations (batch {rep.memory[0]['batch']})")
        ax.legend(fontsize=7)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    finally:
        plt.close(fig)
    return path


LOWP_COLORS = {"timm": "tab:orange", "zoo": "tab:blue", "ort": "tab:green", "ov": "tab:purple", "pt2e": "tab:gray"}


def plot_lowp(report: dict, path: str | os.PathLike) -> Path:
    """PNG/PDF/SVG (by suffix) of a ``lowp_speed.py`` report, atomically: one panel per batch size,
    images/s of every model and variant (log scale), annotated with the fraction of its dtype's peak."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    path = Path(path)
    rows = report["rows"]
    if not rows:
        raise ValueError("nothing to plot: the report has no rows")
    batches = sorted({r["batch"] for r in rows})
    height = max(3.0, 0.16 * max(sum(r["batch"] == b for r in rows) for b in batches))
    fig, axes = plt.subplots(1, len(batches), figsize=(6.0 * len(batches), height), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        sel = [r for r in rows if r["batch"] == batch]
        ax.barh(range(len(sel)), [r["img_s"] for r in sel],
                color=[LOWP_COLORS.get(r["variant"].split("_")[0], "black") for r in sel])
        ax.set_yticks(range(len(sel)), [f"{r['model']} {r['variant']}" for r in sel], fontsize=5)
        for i, r in enumerate(sel):
            if r.get("fraction_of_peak"):
                ax.annotate(f"{r['fraction_of_peak']:.2f}", (r["img_s"], i), fontsize=4, va="center")
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.set_xlabel(f"images/s, batch {batch} ({report['machine'].get('threads')} threads; label: fraction of "
                      "the dtype's 1x1-conv peak)", fontsize=7)
    axes[0][0].legend(handles=[Patch(color=c, label=k) for k, c in LOWP_COLORS.items()], fontsize=6,
                      loc="lower right")
    fig.tight_layout()
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))
    finally:
        plt.close(fig)
    return path
