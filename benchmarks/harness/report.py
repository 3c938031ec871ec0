"""What a benchmark run measured (``Report``; ``asdict`` gives the JSON) and its printed summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MiB = 2**20


@dataclass
class Report:
    """Everything one run measured.

    ``inference`` / ``training``: one row per timed case (images/s, FLOP/s, fraction of peak, ``group``);
    ``ratios``: same-architecture ratios (zoo vs timm / torchvision, optimised vs timm eager);
    ``pairs``: flops-matched RegNet / EfficientNet ratios (paper Table 4); ``headline``: the
    RegNetX-8.0GF / EfficientNet-B5 subset of ``pairs``; ``memory``: per model, bytes saved for backward
    and the measured peak of a training step next to the analytic activation count.
    """

    config: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=dict)
    inference: list[dict[str, Any]] = field(default_factory=list)
    training: list[dict[str, Any]] = field(default_factory=list)
    memory: list[dict[str, Any]] = field(default_factory=list)
    ratios: list[dict[str, Any]] = field(default_factory=list)
    pairs: list[dict[str, Any]] = field(default_factory=list)
    headline: list[dict[str, Any]] = field(default_factory=list)
    correlation: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _short(what: str) -> str:
    """Column header of a ratio: "zoo eager / torchvision eager (nhwc)" -> "zoo/tv nhwc"."""
    s = what.replace(" eager", "").replace("torchvision", "tv").replace("zoo-fused-compiled", "compiled")
    return s.replace("zoo-fused", "fused").replace(" / ", "/").replace("(", "").replace(")", "")


def _table(header: list[str], rows: list[list[str]], first_width: int) -> list[str]:
    widths = [first_width] + [max(len(h), *(len(r[i]) for r in rows), 5) for i, h in enumerate(header) if i]
    def fmt(cells: list[str]) -> str:
        return "  " + " ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return [fmt(header)] + [fmt(r) for r in rows]


def _frac(row: dict[str, Any] | None) -> str:
    return f"{row['fraction_of_peak']:.2f}" if row and row.get("fraction_of_peak") is not None else "-"


def _arch_tables(rep: Report) -> list[str]:
    lines = []
    for mode, title, rows, batch in (("infer", "inference", rep.inference, rep.config.get("batch")),
                                     ("train", "training step", rep.training, rep.config.get("train_batch"))):
        ratios = [r for r in rep.ratios if r["mode"] == mode]
        archs = list(dict.fromkeys(r["arch"] for r in ratios))
        if not archs:
            continue
        whats = list(dict.fromkeys(r["what"] for r in ratios))
        by_row = {r["name"]: r for r in rows if r["group"].startswith("arch:")}
        header = ["model", "zoo img/s", *(_short(w) for w in whats), "peak zoo", "peak best"]
        table = []
        for arch in archs:
            zoo = by_row.get(f"{arch}/zoo@nchw") or next(r for n, r in by_row.items() if n.startswith(f"{arch}/zoo@"))
            ours = [r for r in by_row.values() if r["arch"] == arch and r["impl"].startswith("zoo")]
            best = max(ours, key=lambda r: r["images_per_s"])
            got = {r["what"]: r["ratio"] for r in ratios if r["arch"] == arch}
            table.append([arch, f"{zoo['images_per_s']:.4g}", *(f"{got[w]:.2f}" if w in got else "-" for w in whats),
                          _frac(zoo), _frac(best)])
        lines += ["", f"same architecture, {title} (batch {batch}, 224 px): zoo eager images/s, ratios of images/s, "
                  "fraction of the peak FLOP/s (zoo eager; our fastest variant)"]
        lines += _table(header, table, max(len("model"), *(len(a) for a in archs)))
    return lines


def _pair_table(rep: Report) -> list[str]:
    if not rep.pairs:
        return []
    cols = list(dict.fromkeys((p["mode"], p["what"]) for p in rep.pairs))
    keys = list(dict.fromkeys((p["regnet"], p["efficientnet"]) for p in rep.pairs))
    got = {(p["regnet"], p["efficientnet"], p["mode"], p["what"]): p["ratio"] for p in rep.pairs}
    names, table = [], []
    for regnet, eff in keys:
        p = next(p for p in rep.pairs if p["regnet"] == regnet and p["efficientnet"] == eff)
        names.append(f"{regnet} @{p['regnet_resolution']} / {eff} @{p['efficientnet_resolution']}")
        table.append([names[-1], *(f"{got[(regnet, eff, m, w)]:.2f}" if (regnet, eff, m, w) in got else "-"
                                   for m, w in cols)])
    header = ["RegNet / EfficientNet", *(f"{m} {w.split(' nhwc / ')[0].removeprefix('eager ').removeprefix('zoo-')}"
                                        for m, w in cols)]
    return ["", "flops-matched pairs (paper Table 4): images/s of the RegNet / of the EfficientNet, timed side by "
            "side; both eager in nchw / nhwc, or our BN-fused channels_last RegNet vs the EfficientNet's faster eager "
            "layout:"] + _table(
        header, table, max(len(header[0]), *(len(n) for n in names)))


def _memory_table(rep: Report) -> list[str]:
    if not rep.memory:
        return []
    m0 = rep.memory[0]
    elem = "2 B (bf16)" if rep.machine.get("amp") not in (None, "fp32") else "4 B"
    header = ["model", "res", "GFLOPs", "acts (M)", "analytic", "saved for bwd", "peak (measured)", "saved/analytic",
              "peak/analytic"]
    table = [[m["name"], str(m["resolution"]), f"{m['flops'] / 1e9:.2f}", f"{m['acts'] / 1e6:.1f}",
              f"{m['analytic_bytes'] / MiB:.0f}", f"{m['saved_for_backward_bytes'] / MiB:.0f}",
              f"{m['peak_bytes'] / MiB:.0f}" if m["peak_bytes"] is not None else "-",
              f"{m['saved_per_analytic']:.2f}",
              f"{m['peak_per_analytic']:.2f}" if m["peak_per_analytic"] is not None else "-"] for m in rep.memory]
    lines = ["", f"training-step memory, batch {m0['batch']} (MiB; GFLOPs = multiply-adds per image; analytic = acts "
             f"x batch x {elem}):", f"  saved for bwd = {m0['saved_method']}"]
    if m0["peak_method"]:
        lines.append(f"  peak = {m0['peak_method']}")
    lines += _table(header, table, max(len(m["name"]) for m in rep.memory))
    c = rep.correlation
    if c:
        lines.append(f"  over {c['n_models']} zoo models, Pearson r with log acts vs with log flops: train time/image "
                     f"{c['r_time_acts']:.3f} vs {c['r_time_flops']:.3f}; saved for bwd {c['r_saved_acts']:.3f} vs "
                     f"{c['r_saved_flops']:.3f}" + (f"; peak {c['r_peak_acts']:.3f} vs {c['r_peak_flops']:.3f}"
                                                    if "r_peak_acts" in c else ""))
    return lines


def _row_tables(rep: Report) -> list[str]:
    lines = []
    for title, rows in (("inference", rep.inference), ("training step", rep.training)):
        if not rows:
            continue
        lines += ["", f"{title}: images/s (median call; fastest call; spread = (max-min)/median), "
                  "GFLOP/s and fraction of peak (median)",
                  f"  {'model':<44} {'res':>4} {'img/s':>9} {'fastest':>9} {'spread':>7} {'GFLOP/s':>8} {'peak':>6}"]
        for r in rows:
            lines.append(f"  {r['name']:<44} {r['resolution']:>4} {r['images_per_s']:>9.2f} "
                         f"{r['best_images_per_s']:>9.2f} {r['spread']:>7.2f} {r['flops_per_s'] / 1e9:>8.1f} "
                         f"{_frac(r):>6}")
    if rep.ratios or rep.pairs:
        lines += ["", "all ratios (median calls; fastest calls):"]
        lines += [f"  [{r['mode']}] {r['a']} / {r['b']}: {r['ratio']:.3f} ({r['ratio_best']:.3f})"
                  for r in rep.ratios + rep.pairs]
    return lines


def summary(rep: Report, details: bool = False) -> str:
    """Concise text: ratio tables per model and pair, headline, fraction of peak, memory table.

    ``details`` adds every timed row (images/s, spread, GFLOP/s) and every ratio with its fastest-call value.
    """
    m = rep.machine
    lines = [f"device {m.get('device')} ({m.get('gpu') or 'CPU'}), {m.get('threads')} threads, {m.get('amp')}, "
             f"torch {m.get('torch')}"]
    if m.get("peak_flops_per_s"):
        lines.append(f"measured peak: {m['peak_flops_per_s'] / 1e9:.1f} GFLOP/s ({m['peak_method']}: "
                     f"{tuple(m['peak_shape'])}); a multiply-add = 2 FLOPs, a training step = 3 x forward")
    lines.append("ratios: images/s of the first / of the second, medians of calls timed side by side (> 1: the first "
                 "is faster); fastest-call ratios in the JSON and with --details")
    if details:
        lines += _row_tables(rep)
    lines += _arch_tables(rep) + _pair_table(rep)
    if rep.headline:
        lines.append("")
    for h in rep.headline:
        lines.append(f"HEADLINE [{h['mode']}] {h['a']} vs {h['b']}: {h['ratio']:.2f}x (fastest calls "
                     f"{h['ratio_best']:.2f}x; {h['a_images_per_s']:.2f} vs {h['b_images_per_s']:.2f} img/s; "
                     "paper: ~5x on GPU)")
    lines += _memory_table(rep)
    lines.append(f"total {rep.seconds:.0f} s")
    return "\n".join(lines)
