"""``regnet-zoo list`` and ``regnet-zoo info NAME``: the registry on the command line (no torch)."""

from __future__ import annotations

import argparse
import json
import sys

from regnet_zoo.cli import fail, positive_int
from regnet_zoo.counting import as_table, format_count, model_complexity
from regnet_zoo.registry import UnknownModelError, get_entry, list_models


def register(subparsers) -> None:
    p = subparsers.add_parser("list", help="table of models: name, flops, params, acts",
                              description="Models with exact complexity.")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style filter, e.g. 'regnetx*'")
    p.add_argument("--resolution", type=positive_int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--paper", action="store_true", help="only the 24 models of the paper")
    p.add_argument("--pretrained", action="store_true", help="list the published weight tags per model")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run_list)
    p = subparsers.add_parser("info", help="block, activation, head and per-stage depth, width, groups, SE of a model",
                              description="Architecture of one model.")
    p.add_argument("name", help="model name or alias, e.g. RegNetY-4.0GF")
    p.add_argument("--resolution", type=positive_int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run_info)


def run_list(a: argparse.Namespace) -> int:
    names = list_models(a.pattern, paper_only=a.paper)
    if not names:
        print(f"no model matches {a.pattern!r}", file=sys.stderr)
        return 1
    if a.pretrained:
        return _list_pretrained(names, a.json)
    rows = {n: model_complexity(get_entry(n).cfg, resolution=a.resolution) for n in names}
    print(json.dumps(rows, indent=2) if a.json else as_table(rows))
    return 0


def _list_pretrained(names: list[str], as_json: bool) -> int:
    """One row per (model, tag): licence, reported accuracy, preprocessing, Hub repo."""
    from regnet_zoo.weights.manifest import pretrained_table

    rows = pretrained_table(names)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0

    def acc(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    head = (f"{'weights':<34} {'source':<12} {'license':<16} {'top1':>6} {'top5':>6} {'size':>4} {'crop':>6} "
            f"{'interp':<8} hub repo (or original URL)")
    print(head + "\n" + "-" * len(head))
    for r in rows:
        name = r["name"] + (" *" if r["default"] else "")
        lic = r["license"] + (" (NC)" if r["non_commercial"] else "")
        print(f"{name:<34} {r['source']:<12} {lic:<16} {acc(r['top1']):>6} {acc(r['top5']):>6} "
              f"{r['input_size']:>4} {r['crop_pct']:>6.3f} {r['interpolation']:<8} "
              f"{r['hub_repo'] or 'origin: ' + r['origin_url']}")
    print("* = default tag (pretrained=True); NC = non-commercial licence; top-1/5 as reported by the source")
    return 0


def run_info(a: argparse.Namespace) -> int:
    try:
        e = get_entry(a.name)
    except UnknownModelError as err:
        return fail("info", err, 2)
    arch = e.cfg.to_anynet()
    cx = model_complexity(e.cfg, resolution=a.resolution, per_stage=True)
    stages = [dict(stage=f"s{i + 1}", depth=s.depth, width=s.width, group_width=s.group_width,
                   groups=s.groups, bot_mul=s.bot_mul, stride=s.stride,
                   se_width_first_block=int(round(se_in * arch.se_ratio)))
              for i, (s, se_in) in enumerate(zip(arch.stages, [arch.stem_width] + arch.widths[:-1]))]
    if a.json:
        print(json.dumps(dict(name=e.name, display=e.display, aliases=e.aliases, cfg=e.cfg.to_dict(),
                              stages=stages, complexity=cx), indent=2))
        return 0
    c = e.cfg
    print(f"{e.display}  ({e.name}; aliases: {', '.join(e.aliases[1:])})")
    print(f"  {e.description}")
    print(f"  generator: d={c.depth} w0={c.w0} wa={c.wa} wm={c.wm} g={c.group_width} bot_mul={c.bot_mul} "
          f"(the paper's b = 1/bot_mul) se_ratio={c.se_ratio} rounding={c.rounding}")
    print(f"  SE: {'yes, width = ' + str(c.se_ratio) + ' x block input width' if c.se_ratio else 'no'}")
    block = {"x": "residual bottleneck (X/Y)", "z": "inverted bottleneck, linear output (Z)"}[c.block]
    head = f"1x1 conv to {c.head_width}, then pool + linear" if c.head_width else "pool + linear"
    print(f"  block: {c.block} = {block}; activation: {c.activation}; stem width {c.stem_width}; head: {head}")
    print(f"  {'stage':<6} {'depth':>5} {'width':>6} {'group w':>8} {'groups':>7} {'bot_mul':>8} "
          f"{'flops':>9} {'params':>9} {'acts':>9}")
    for s, sc in zip(stages, cx["stages"][1:-1]):
        print(f"  {s['stage']:<6} {s['depth']:>5} {s['width']:>6} {s['group_width']:>8} {s['groups']:>7} "
              f"{s['bot_mul']:>8} {format_count(sc['flops']):>9} {format_count(sc['params']):>9} "
              f"{format_count(sc['acts']):>9}")
    print(f"  total @{a.resolution}: flops {cx['flops']:,} ({format_count(cx['flops'])}), "
          f"params {cx['params']:,}, acts {cx['acts']:,}")
    return 0

