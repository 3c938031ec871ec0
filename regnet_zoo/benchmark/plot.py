"""Figure of a benchmark ``Report``: throughput bars and activation memory / time vs analytic counts."""

from __future__ import annotations

import os

from regnet_zoo.benchmark.runner import Report


def plot_report(rep: Report, path: str | os.PathLike) -> None:
    """Write a PNG/PDF/SVG (by suffix): inference and training images/s per model; memory vs acts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    panels = [(t, rows) for t, rows in (("inference", rep.inference), ("training step", rep.training)) if rows]
    zoo_mem = [m for m in rep.memory if "acts" in m]
    n = len(panels) + (1 if zoo_mem else 0)
    if n == 0:
        raise ValueError("nothing to plot: the report has no inference, training or memory rows")
    height = max(3.0, 0.28 * max([len(rows) for _, rows in panels] + [8]))
    fig, axes = plt.subplots(1, n, figsize=(6.5 * n, height), squeeze=False)
    axes = list(axes[0])
    colors = {"zoo": "tab:blue", "timm": "tab:orange", "torchvision": "tab:green"}
    for ax, (title, rows) in zip(axes, panels):
        names = [r["name"] for r in rows]
        values = [r["images_per_s"] for r in rows]
        ax.barh(range(len(rows)), values, color=[colors.get(r["impl"], "tab:purple") for r in rows])
        ax.set_yticks(range(len(rows)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"images/s ({rep.machine.get('device')}, {rep.machine.get('amp')})")
        ax.set_title(title)
    axes[0].legend(handles=[Patch(color=c, label=k) for k, c in colors.items()] + [
        Patch(color="tab:purple", label="zoo fused / compiled")], fontsize=7, loc="lower right")
    if zoo_mem:
        ax = axes[-1]
        acts = [m["acts"] * m["batch"] / 1e6 for m in zoo_mem]
        ax.scatter(acts, [m["measured_bytes"] / 2**20 for m in zoo_mem], label="measured activation memory")
        for m, a in zip(zoo_mem, acts):
            ax.annotate(m["arch"], (a, m["measured_bytes"] / 2**20), fontsize=7)
        ax.set_xlabel("analytic activations x batch (millions)")
        ax.set_ylabel("MiB saved for backward")
        ax.set_title("training memory vs activations")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
