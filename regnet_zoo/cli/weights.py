"""``regnet-zoo download | convert | push``: pretrained weights on the command line.

    regnet-zoo download regnety_4.0gf regnetx_1.6gf.tv2_in1k      # into the Hugging Face cache
    regnet-zoo download regnety_16gf --all-tags
    regnet-zoo download regnetx_200mf --from-origin                # the paper's own .pyth
    regnet-zoo convert --from pycls RegNetX-200MF_dds_8gpu.pyth x200.safetensors
    regnet-zoo convert --from torchvision regnet_x_800mf.pth out_dir/ --model regnetx_800mf
    regnet-zoo push regnety_4.0gf.pycls_in1k my-org/regnety-4gf --metrics top1=79.36 top5=94.66
    regnet-zoo push runs/best/ my-org/my-regnet
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regnet_zoo.registry import UnknownModelError
from regnet_zoo.weights import HF_HUB_PREFIX
from regnet_zoo.weights.errors import WeightsError

if TYPE_CHECKING:
    from torch import nn

    from regnet_zoo.weights.apply import Pretrained


def _fail(command: str, err: Exception) -> int:
    print(f"regnet-zoo {command}: {err}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------- download
def _download(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="regnet-zoo download",
        description="Download and verify pretrained weights into the cache, e.g. to use them later with "
                    "HF_HUB_OFFLINE=1. Tags: `regnet-zoo list --pretrained`.")
    p.add_argument("names", nargs="+", metavar="NAME[.TAG]",
                   help="model with an optional tag (regnety_4.0gf, regnetx_1.6gf.tv2_in1k) or hf-hub:org/repo")
    p.add_argument("--all-tags", action="store_true", help="every published tag of each model")
    p.add_argument("--from-origin", action="store_true",
                   help="the original file (pycls .pyth / torchvision .pth from their URLs) instead of the Hub's")
    p.add_argument("--cache-dir", default=None, help="cache folder (default: the Hugging Face cache)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    a = p.parse_args(argv)
    from regnet_zoo.registry import split_name_tag
    from regnet_zoo.weights.endpoint import split_revision
    from regnet_zoo.weights.files import file_sha256
    from regnet_zoo.weights.hf_config import CONFIG_NAME, WEIGHTS_NAME
    from regnet_zoo.weights.hub import download_weights, hub_download
    from regnet_zoo.weights.manifest import load_manifest
    from regnet_zoo.weights.origin import download_origin

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
                path = download_origin(w, a.cache_dir) if a.from_origin else download_weights(w, a.cache_dir)
                rows.append({"name": w.name, "path": path})
    except (WeightsError, UnknownModelError) as e:
        return _fail("download", e)
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
def _identify(state_dict: dict, model: str | None) -> str | None:
    """The registry model the weights are for: ``model`` if given, else the unique shape match."""
    from regnet_zoo.registry import get_entry
    from regnet_zoo.weights.convert import registry_matches

    if model:
        return get_entry(model).name
    matches = registry_matches(state_dict)
    if len(matches) > 1:
        raise WeightsError(f"the weights fit several models ({', '.join(matches)}); choose one with --model")
    return matches[0] if matches else None


def _model_with(name: str, weights: Pretrained) -> nn.Module:
    """Registry model ``name`` with ``weights`` (a ``Pretrained``) loaded; class count and channels from them."""
    import regnet_zoo
    from regnet_zoo.weights.apply import apply_weights, head_classes, input_channels

    sd = weights.state_dict
    net = regnet_zoo.create(name, num_classes=head_classes(sd), in_chans=input_channels(sd))
    apply_weights(net, weights)
    return net


def _convert(argv: list[str]) -> int:
    from regnet_zoo.weights.convert import FORMATS

    p = argparse.ArgumentParser(
        prog="regnet-zoo convert",
        description="Convert RegNet weights of pycls (the paper's .pyth; BGR -> RGB), torchvision, transformers "
                    "or timm to regnet-zoo's layout (= timm's). Pickles are read with torch.load(weights_only=True).")
    p.add_argument("input", help="weights file (.pyth, .pth, .bin, .ckpt, .safetensors)")
    p.add_argument("output", help="a .safetensors file, or a folder (written like save_pretrained)")
    p.add_argument("--from", dest="fmt", choices=("auto", *FORMATS), default="auto",
                   help="layout of INPUT (default: detected)")
    p.add_argument("--model", default=None,
                   help="registry model the weights are for (default: the one whose shapes match)")
    p.add_argument("--license", default=None,
                   help="licence id for the model card of a folder OUTPUT (default: the manifest's when INPUT keeps "
                        "the name of a published original file, else 'other' with a warning)")
    a = p.parse_args(argv)
    from safetensors.torch import save_file

    from regnet_zoo.fileio import atomic_write
    from regnet_zoo.weights.apply import Pretrained, read_state_dict
    from regnet_zoo.weights.convert import convert_state_dict, detect_format
    from regnet_zoo.weights.publish import save_pretrained
    from regnet_zoo.weights.resolve import origin_file_cfg

    try:
        obj = read_state_dict(a.input)
        fmt = detect_format(obj) if a.fmt == "auto" else a.fmt
        sd = convert_state_dict(obj, fmt)
        name = _identify(sd, a.model)
        to_folder = not a.output.endswith(".safetensors")
        if name is None and to_folder:
            raise WeightsError("the weights match no registry model, so no folder (config.json) can be written; "
                               "write a .safetensors file or pass --model")
        cfg, note = origin_file_cfg(a.input, fmt)
        net = _model_with(name, Pretrained(sd, f"{a.input} ({fmt}){note}", cfg)) if name else None
        if to_folder:
            save_pretrained(net, a.output, license=a.license)
        else:
            Path(a.output).parent.mkdir(parents=True, exist_ok=True)
            tensors = {k: v.contiguous() for k, v in (net.state_dict() if net else sd).items()}
            atomic_write(a.output, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    except (WeightsError, UnknownModelError, ValueError) as e:
        return _fail("convert", e)
    checked = f"checked against {name}" if name else "no registry model matches: NOT checked"
    print(f"{a.input} ({fmt}{', BGR->RGB' if fmt == 'pycls' else ''}) -> {a.output} ({len(sd)} tensors; {checked})")
    return 0


# ---------------------------------------------------------------------- push
def _metrics(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        try:
            out[key] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--metrics expects NAME=NUMBER (e.g. top1=81.3), got {item!r}") from None
        if not eq or not key:
            raise argparse.ArgumentTypeError(f"--metrics expects NAME=NUMBER, got {item!r}")
    return out


def load_source(source: str, model: str | None = None, cache_dir: str | None = None):
    """A model from a registry NAME[.TAG], hf-hub:org/repo, a save_pretrained folder or a weights file."""
    import regnet_zoo
    from regnet_zoo.weights.apply import looks_like_weight_file
    from regnet_zoo.weights.resolve import read_weights

    if source.startswith(HF_HUB_PREFIX):
        return regnet_zoo.create(source, pretrained=True, cache_dir=cache_dir)
    path = Path(source)
    if path.is_dir():
        return regnet_zoo.from_pretrained(path)
    if path.is_file():
        weights = read_weights(path)
        name = _identify(weights.state_dict, model)
        if name is None:
            raise WeightsError(f"{source}: the weights match no registry model; pass --model NAME")
        return _model_with(name, weights)
    if looks_like_weight_file(source):
        raise WeightsError(f"file not found: {source}")
    from regnet_zoo.registry import split_name_tag

    entry, tag = split_name_tag(source)
    return regnet_zoo.create(entry.name, pretrained=tag or True, cache_dir=cache_dir)


def _push(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="regnet-zoo push",
        description="Publish a model to the Hugging Face Hub: model.safetensors, a config.json timm loads, "
                    "and a model card. Token: --token, HF_TOKEN or `hf auth login`.")
    p.add_argument("source", metavar="NAME_OR_CKPT",
                   help="registry NAME[.TAG] (its pretrained weights), hf-hub:org/repo, a save_pretrained folder, "
                        "or a weights file (.safetensors, .pth, .pyth, Lightning .ckpt)")
    p.add_argument("repo_id", help="target repo, org/name (created if missing)")
    p.add_argument("--model", default=None, help="registry model of a weights file (default: matched by shapes)")
    p.add_argument("--metrics", nargs="+", default=[], metavar="NAME=VALUE",
                   help="results for the model card, e.g. top1=81.3 top5=95.6 (percent)")
    p.add_argument("--license", default=None, help="license id for the card (default: the weights')")
    p.add_argument("--datasets", nargs="+", default=None, help="training datasets (default: imagenet-1k)")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--token", default=None, help="Hub token (default: HF_TOKEN / the stored login)")
    p.add_argument("--revision", default=None, help="branch to commit to (default: main)")
    p.add_argument("--message", default="Add RegNet weights (regnet-zoo)", help="commit message")
    p.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    a = p.parse_args(argv)
    try:
        metrics = _metrics(a.metrics)
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    from regnet_zoo.weights.publish import push_to_hub

    try:
        net = load_source(a.source, a.model)
        info = push_to_hub(net, a.repo_id, metrics=metrics or None, license=a.license, datasets=a.datasets,
                           private=a.private or None, token=a.token, revision=a.revision,
                           commit_message=a.message, create_pr=a.create_pr)
    except (WeightsError, UnknownModelError, OSError) as e:
        return _fail("push", e)
    print(f"pushed {a.source} -> {a.repo_id}: {info.pr_url or info.commit_url}")
    return 0


def main(command: str, argv: list[str]) -> int:
    return {"download": _download, "convert": _convert, "push": _push}[command](argv)
