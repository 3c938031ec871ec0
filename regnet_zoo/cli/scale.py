"""``regnet-zoo scale NAME --flops 4x --strategy dW``: scaled configs and their exact complexity (no torch).

Several strategies (``--strategy dW dWr w``) or ``--strategy all`` print one row each, for comparing
how their activations grow; ``--plot PATH`` draws activations vs flops per strategy over the factors
1, 2, 4, ... up to ``--flops`` (needs matplotlib: ``pip install 'regnet-zoo[plots]'``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys

from regnet_zoo.cli import fail
from regnet_zoo.counting import format_count, model_complexity
from regnet_zoo.registry import UnknownModelError, get_entry
from regnet_zoo.scaler import DEFAULT_ALPHA, STRATEGIES, ScalingError, scale

_FACTOR = re.compile(r"^\s*x?\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*x?\s*$", re.IGNORECASE)


def parse_factor(text: str) -> float:
    """'4x', '4', 'x4', '2.5x' -> the flops factor (> 0)."""
    m = _FACTOR.match(text)
    value = float(m.group(1)) if m else math.nan
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"--flops must be a factor > 0 such as 4x or 2.5, got {text!r}")
    return value


def register(subparsers) -> None:
    """Add the ``scale`` sub-command to an ``argparse`` sub-parsers object."""
    p = subparsers.add_parser("scale", help="scale a model's flops by a factor (Dollár et al. 2021 strategies)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="model name or alias, e.g. RegNetY-4.0GF or regnetz_500mf")
    p.add_argument("--flops", type=parse_factor, required=True, metavar="FACTOR", help="flops factor, e.g. 4x")
    p.add_argument("--strategy", nargs="+", default=["dW"], metavar="S",
                   help=f"one or more of {', '.join(STRATEGIES)}, or 'all' (default dW)")
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="width share of dW / dWr (default 0.8)")
    p.add_argument("--resolution", type=int, default=224, help="the base model's input size (default 224)")
    p.add_argument("--no-scale-groups", dest="scale_groups", action="store_false",
                   help="keep group widths (pycls' strategies without 'g'); default: scale them with the widths")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plot", metavar="PATH", help="write activations vs flops per strategy (PNG/SVG/PDF)")
    p.set_defaults(handler=run_scale)


def _fmt_list(values) -> str:
    return "[" + ",".join(f"{v:g}" for v in values) + "]"


def run_scale(args: argparse.Namespace) -> int:
    """Print the scaled configs (and optionally plot); 2 on a bad name, strategy or option."""
    names = list(STRATEGIES) if args.strategy == ["all"] else args.strategy
    try:
        entry = get_entry(args.name)
        if args.resolution < 1:
            raise ScalingError(f"--resolution must be a positive number of pixels, got {args.resolution}")
        scaled = [scale(entry.cfg, args.flops, s, args.alpha, resolution=args.resolution,
                        scale_groups=args.scale_groups) for s in names]
    except (UnknownModelError, ScalingError) as e:
        return fail("scale", e, 2)
    base = model_complexity(entry.cfg, resolution=args.resolution)
    rows = []
    for sm in scaled:
        cx = sm.complexity()
        rows.append({**sm.to_dict(), "complexity": cx, "acts_exponent": sm.strategy.acts_exponent,
                     "flops_ratio": cx["flops"] / base["flops"], "acts_ratio": cx["acts"] / base["acts"]})
    if args.json:
        print(json.dumps({"model": entry.name, "factor": args.flops, "alpha": args.alpha,
                          "base": {"resolution": args.resolution, "cfg": entry.cfg.to_anynet().to_dict(),
                                   "complexity": base}, "scaled": rows}, indent=2))
    else:
        a = entry.cfg.to_anynet()
        print(f"{entry.display} x{args.flops:g} flops; base @{args.resolution}px: depths {_fmt_list(a.depths)} "
              f"widths {_fmt_list(a.widths)} groups {_fmt_list(a.group_widths)}; flops {format_count(base['flops'])} "
              f"params {format_count(base['params'])} acts {format_count(base['acts'])}")
        head = (f"{'strategy':<8} {'e_d':>5} {'e_w':>5} {'e_r':>5} {'res':>4} {'depths':<16} {'widths':<24} "
                f"{'group widths':<20} {'flops':>8} {'params':>8} {'acts':>8} {'flops x':>7} {'acts x':>6} "
                f"{'s^k':>6}")
        print(head + "\n" + "-" * len(head))
        for sm, r in zip(scaled, rows):
            s, c, cx = sm.strategy, sm.cfg, r["complexity"]
            print(f"{s.name:<8} {s.e_d:>5.2f} {s.e_w:>5.2f} {s.e_r:>5.2f} {sm.resolution:>4} {_fmt_list(c.depths):<16} "
                  f"{_fmt_list(c.widths):<24} {_fmt_list(c.group_widths):<20} {format_count(cx['flops']):>8} "
                  f"{format_count(cx['params']):>8} {format_count(cx['acts']):>8} {r['flops_ratio']:>7.2f} "
                  f"{r['acts_ratio']:>6.2f} {args.flops ** s.acts_exponent:>6.2f}")
        print("flops x / acts x: achieved ratios to the base; s^k: the paper's activation growth, "
              "k = e_d + e_w/2 + e_r")
    if args.plot:
        from regnet_zoo.design_space.plots import plot_strategies
        from regnet_zoo.design_space.scaling import strategy_curves

        powers = range(1, math.ceil(math.log2(args.flops))) if args.flops > 1 else ()
        factors = sorted({1.0, args.flops} | {2.0 ** i for i in powers})
        curves = strategy_curves(entry.cfg, factors, [s.strategy.name for s in scaled], args.alpha,
                                 resolution=args.resolution, scale_groups=args.scale_groups)
        path = plot_strategies(curves, args.plot, title=f"{entry.display} scaled by strategy")
        print(f"wrote {path}", file=sys.stderr)
    return 0

