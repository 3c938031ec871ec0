"""``regnet-zoo download | convert | push``: pretrained weights on the command line.

    regnet-zoo download regnety_4.0gf regnetx_1.6gf.tv2_in1k      # into the Hugging Face cache
    regnet-zoo download regnety_16gf --all-tags
    regnet-zoo download regnetx_200mf --from-origin                # the paper's own .pyth
    regnet-zoo convert --from pycls RegNetX-200MF_dds_8gpu.pyth x200.safetensors
    regnet-zoo convert --from torchvision regnet_x_800mf.pth out_dir/ --model regnetx_800mf
    regnet-zoo convert x200.safetensors hf_x200/ --to transformers      # RegNetForImageClassification
    regnet-zoo push regnety_4.0gf.pycls_in1k my-org/regnety-4gf --metrics top1=79.36 top5=94.66
    regnet-zoo push runs/best/ my-org/my-regnet
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from regnet_zoo.cli import fail
from regnet_zoo.registry import UnknownModelError
from regnet_zoo.weights import FORMATS, HF_HUB_PREFIX
from regnet_zoo.weights.errors import WeightsError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "download", help="download and verify pretrained weights (NAME[.TAG])",
        description="Download and verify pretrained weights into the cache, e.g. to use them later with "
                    "HF_HUB_OFFLINE=1. Tags: `regnet-zoo list --pretrained`.")
    p.add_argument("names", nargs="+", metavar="NAME[.TAG]",
                   help="model with an optional tag (regnety_4.0gf, regnetx_1.6gf.tv2_in1k) or hf-hub:org/repo")
    p.add_argument("--all-tags", action="store_true", help="every published tag of each model")
    p.add_argument("--from-origin", action="store_true",
                   help="the original file (pycls .pyth / torchvision .pth from their URLs) instead of the Hub's")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: the Hugging Face cache)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run_download)

    p = subparsers.add_parser(
        "convert", help="convert weights between pycls/torchvision/transformers/timm/VISSL layouts",
        description="Convert RegNet weights of pycls (the paper's .pyth; BGR -> RGB), torchvision, transformers, "
                    "timm or VISSL (SEER) to regnet-zoo's layout (= timm's), or with --to from any of them to "
                    "torchvision's or transformers' layout. Pickles are read with torch.load(weights_only=True).")
    p.add_argument("input", help="weights file (.pyth, .pth, .bin, .ckpt, .torch, .safetensors)")
    p.add_argument("output", help="a .safetensors file, or a folder (written like save_pretrained); with --to "
                                  "torchvision a .safetensors/.pth file, with --to transformers a folder")
    p.add_argument("--from", dest="fmt", choices=("auto", *FORMATS), default="auto",
                   help="layout of INPUT: pycls, torchvision, transformers, timm or vissl (default: detected)")
    p.add_argument("--to", default=None, choices=("torchvision", "transformers"),
                   help="write OUTPUT in this library's layout instead of ours (loads there with strict=True)")
    p.add_argument("--model", default=None,
                   help="registry model the weights are for (default: the one whose shapes match)")
    p.add_argument("--license", default=None,
                   help="licence id for the model card of a folder OUTPUT (default: the manifest's when INPUT keeps "
                        "the name of a published original file, else 'other' with a warning)")
    p.set_defaults(handler=run_convert)

    p = subparsers.add_parser(
        "push", help="publish a model or checkpoint to the Hugging Face Hub",
        description="Publish a model to the Hugging Face Hub: model.safetensors, a config.json timm loads, "
                    "and a model card. Token: --token, HF_TOKEN or `hf auth login`.")
    p.add_argument("source", metavar="NAME_OR_CKPT",
                   help="registry NAME[.TAG] (its pretrained weights), hf-hub:org/repo, a save_pretrained folder, "
                        "or a weights file (.safetensors, .pth, .pyth, Lightning .ckpt)")
    p.add_argument("repo_id", help="target repo, org/name (created if missing)")
    p.add_argument("--model", default=None, help="registry model of a weights file (default: matched by shapes)")
    p.add_argument("--metrics", nargs="+", type=_metric, default=[], metavar="NAME=VALUE",
                   help="results for the model card, e.g. top1=81.3 top5=95.6 (percent)")
    p.add_argument("--license", default=None, help="license id for the card (default: the weights')")
    p.add_argument("--datasets", nargs="+", default=None, help="training datasets (default: imagenet-1k)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN / the stored login)")
    p.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    p.add_argument("--message", default="Add RegNet weights (regnet-zoo)", help="commit message")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    p.set_defaults(handler=run_push)


def _metric(item: str) -> tuple[str, float]:
    """argparse type of a ``--metrics`` item: NAME=NUMBER."""
    key, eq, value = item.partition("=")
    try:
        if key and eq:
            return key, float(value)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected NAME=NUMBER (e.g. top1=81.3), got {item!r}")


# ---------------------------------------------------------------------- download
def run_download(a: argparse.Namespace) -> int:
    from regnet_zoo.registry import split_name_tag
    from regnet_zoo.weights.endpoint import split_revision
    from regnet_zoo.weights.files import file_sha256
    from regnet_zoo.weights.hf_config import CONFIG_NAME, WEIGHTS_NAME
    from regnet_zoo.weights.hub import hub_download
    from regnet_zoo.weights.manifest import load_manifest
    from regnet_zoo.weights.resolve import download_file

    rows: list[dict[str, Any]] = []
    try:
        manifest = load_manifest()
        for name in a.names:
            if name.startswith(HF_HUB_PREFIX):
                repo_id, revision = split_revision(name[len(HF_HUB_PREFIX):])
                for filename in (CONFIG_NAME, WEIGHTS_NAME):
                    path = hub_download(repo_id, filename, revision=revision, cache_dir=a.cache_dir)
                    rows.append({"name": f"{name}/{filename}", "path": path})
                continue
            entry, tag = split_name_tag(name)
            todo = manifest.for_model(entry.name) if a.all_tags else [manifest.get(entry.name, tag)]
            for w in todo:
                path = download_file(w, a.cache_dir, from_origin=a.from_origin)
                rows.append({"name": w.name, "path": path})
    except (WeightsError, UnknownModelError) as e:
        return fail("download", e)
    for r in rows:
        r["bytes"] = os.path.getsize(r["path"])
        r["sha256"] = file_sha256(r["path"])  # remembered from the verification where that was a sha256
    if a.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['name']:<34} {r['bytes'] / 1e6:8.1f} MB  sha256 {r['sha256'][:16]}…  {r['path']}")
    return 0


# ---------------------------------------------------------------------- convert
def run_convert(a: argparse.Namespace) -> int:
    from regnet_zoo.sources import identify_model, model_with_weights
    from regnet_zoo.weights.apply import Pretrained, read_state_dict
    from regnet_zoo.weights.convert import convert_state_dict, detect_format, export_layout, save_tensors
    from regnet_zoo.weights.publish import save_pretrained
    from regnet_zoo.weights.resolve import origin_file_cfg

    try:
        obj = read_state_dict(a.input)
        fmt = detect_format(obj) if a.fmt == "auto" else a.fmt
        sd = convert_state_dict(obj, fmt)
        name = identify_model(sd, a.model)
        to_folder = a.to == "transformers" or (a.to is None and not a.output.endswith(".safetensors"))
        if name is None and (to_folder or a.to):
            raise WeightsError("the weights match no registry model, so no model can be built to check them (and "
                               "no config.json written); pass --model, or write a .safetensors file in our layout")
        cfg, note = origin_file_cfg(a.input, fmt)
        net = model_with_weights(name, Pretrained(sd, f"{a.input} ({fmt}){note}", cfg)) if name else None
        if a.to:
            loader = f" (load with {export_layout(net, a.to, a.output).loader})"
        elif to_folder:
            save_pretrained(net, a.output, license=a.license)
        else:
            save_tensors(net.state_dict() if net else sd, a.output)
    except (WeightsError, UnknownModelError, ValueError) as e:  # ExportError is a WeightsError
        return fail("convert", e)
    checked = f"checked against {name}" if name else "no registry model matches: NOT checked"
    print(f"{a.input} ({fmt}{', BGR->RGB' if fmt == 'pycls' else ''}) -> {a.output} ({a.to or 'regnet-zoo'} "
          f"layout, {len(sd)} tensors; {checked}){loader if a.to else ''}")
    return 0


# ---------------------------------------------------------------------- push
def run_push(a: argparse.Namespace) -> int:
    from regnet_zoo.sources import load_source
    from regnet_zoo.weights.publish import push_to_hub

    try:
        net = load_source(a.source, a.model)
        info = push_to_hub(net, a.repo_id, metrics=dict(a.metrics) or None, license=a.license, datasets=a.datasets,
                           private=a.private or None, token=a.token, revision=a.revision,
                           commit_message=a.message, create_pr=a.create_pr)
    except (WeightsError, UnknownModelError, OSError) as e:
        return fail("push", e)
    print(f"pushed {a.source} -> {a.repo_id}: {info.pr_url or info.commit_url}")
    return 0

