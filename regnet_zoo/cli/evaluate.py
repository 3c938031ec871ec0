"""``regnet-zoo eval NAME[.TAG] --data DIR``: top-1 / top-5 of pretrained weights on an ImageNet-style image folder
with the weights' preprocessing (timm's eval transform), compared with the accuracies their source reports
(docs/weights.md, "Checking accuracy").

    regnet-zoo eval regnety_4.0gf --data imagenet/val
    regnet-zoo eval regnetx_1.6gf.tv2_in1k --data val/ --batch-size 128 --workers 8
    regnet-zoo eval regnety_4.0gf.ra3_in1k --data val/ --test-size
    regnet-zoo eval regnety_4.0gf --weights my.safetensors --data val/ --limit 5000
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

from regnet_zoo.cli import fail
from regnet_zoo.registry import UnknownModelError
from regnet_zoo.weights import HF_HUB_PREFIX
from regnet_zoo.weights.errors import WeightsError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="top-1/top-5 accuracy of weights on an image folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Top-1 / top-5 accuracy of pretrained weights on an image folder (ImageNet val layout) with "
                    "the weights' own preprocessing, compared with the accuracy their source reports.",
        epilog="examples:\n" + "\n".join(line for line in __doc__.splitlines()
                                          if line.startswith("    regnet-zoo eval ")))
    p.add_argument("name", metavar="NAME[.TAG]", help="registry model (optionally with a tag) or hf-hub:org/repo")
    p.add_argument("--data", required=True, help="image folder with one sub-folder per class (ImageNet val layout)")
    p.add_argument("--tag", default=None, help="weight tag (default: the model's default; see list --pretrained)")
    p.add_argument("--weights", default=None,
                   help="evaluate this weights file or save_pretrained folder instead of published weights")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=4, help="data loader processes (0: load in this process)")
    p.add_argument("--limit", type=int, default=None, help="evaluate N images spread evenly over the folder")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--test-size", action="store_true",
                   help="use the weights' test_input_size and test_crop_pct (e.g. 288 px, crop 1.0 for timm's ra3 "
                        "tags); weights without them are evaluated at their input_size and crop_pct, as timm does")
    p.add_argument("--input-size", type=int, default=None,
                   help="override the weights' input size (pixels; wins over --test-size)")
    p.add_argument("--crop-pct", type=float, default=None, help="override the weights' crop fraction")
    p.add_argument("--interpolation", default=None, choices=("bilinear", "bicubic", "nearest"),
                   help="override the weights' resize interpolation")
    p.add_argument("--results-file", default=None, help="write per-image top-5 predictions to this CSV")
    p.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=run_eval)


def eval_data_config(model, *, test_size: bool = False, input_size: int | None = None, crop_pct: float | None = None,
                     interpolation: str | None = None) -> dict[str, Any]:
    """timm's data config for evaluating ``model``: its ``pretrained_cfg`` (with ``test_size``: the test
    input size and crop where it has them, else the training ones) under the explicit overrides."""
    from timm.data import resolve_data_config

    overrides = {"img_size": input_size, "in_chans": model.in_chans, "crop_pct": crop_pct,
                 "interpolation": interpolation}  # None: not overridden
    return resolve_data_config(overrides, model=model, use_test_size=test_size)


def _load_model(a: argparse.Namespace):
    """(model, manifest entry or None) for the command line's NAME / --tag / --weights."""
    import regnet_zoo
    from regnet_zoo.registry import split_name_tag
    from regnet_zoo.weights.manifest import load_manifest

    if a.name.startswith(HF_HUB_PREFIX):
        if a.tag or a.weights:
            raise WeightsError("--tag/--weights do not apply to hf-hub: repos")
        return regnet_zoo.create(a.name, pretrained=True, cache_dir=a.cache_dir), None
    entry, tag = split_name_tag(a.name)
    if a.tag and tag and a.tag != tag:
        raise WeightsError(f"two tags given: {tag!r} in the name and --tag {a.tag!r}")
    tag = a.tag or tag
    if a.weights:
        from regnet_zoo.sources import load_source

        model = load_source(a.weights, entry.name)
        if model.cfg != entry.cfg:
            raise WeightsError(f"{a.weights} is not a {entry.name}")
        w = load_manifest().get(entry.name, tag) if tag else None
        if w is not None:  # compare with the tag's numbers, with its preprocessing
            model.pretrained_cfg = {**model.pretrained_cfg, **w.pretrained_cfg(), "num_classes": model.num_classes}
        return model, w
    w = load_manifest().get(entry.name, tag)
    return regnet_zoo.create(entry.name, pretrained=w.tag, cache_dir=a.cache_dir), w


def imagenet_targets(classes: list[str], num_classes: int, root: str) -> list[int]:
    """Class index of each folder: ImageNet-1k's for synset folders, else the folder order."""
    from timm.data import ImageNetInfo

    synsets = {s: i for i, s in enumerate(ImageNetInfo().label_names())}
    if num_classes == 1000 and all(c in synsets for c in classes):
        return [synsets[c] for c in classes]
    if len(classes) != num_classes:
        raise WeightsError(f"{root} has {len(classes)} class folders and they are not ImageNet synsets "
                           f"(n01440764, ...), but the model has {num_classes} classes")
    return list(range(len(classes)))


def evaluate(model, data: str, data_config: dict[str, Any], *, batch_size: int = 64, workers: int = 4,
             limit: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Top-1/top-5 accuracy (percent) of ``model`` on the image folder ``data`` with timm's eval transform."""
    import torch
    from timm.data import create_transform
    from torchmetrics.classification import MulticlassAccuracy
    from torchvision.datasets import ImageFolder

    dataset = ImageFolder(data, transform=create_transform(**data_config, is_training=False))
    if len(dataset) == 0:
        raise WeightsError(f"{data} holds no images")
    targets = imagenet_targets(dataset.classes, model.num_classes, data)
    dataset.target_transform = targets.__getitem__
    indices = list(range(len(dataset)))
    if limit is not None and limit < len(dataset):
        indices = torch.linspace(0, len(dataset) - 1, limit, dtype=torch.float64).round().unique().long().tolist()
    subset = torch.utils.data.Subset(dataset, indices)
    loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, num_workers=workers, shuffle=False,
                                         pin_memory=device.startswith("cuda"))
    k = min(5, model.num_classes)
    top1 = MulticlassAccuracy(num_classes=model.num_classes, top_k=1, average="micro").to(device)
    top5 = MulticlassAccuracy(num_classes=model.num_classes, top_k=k, average="micro").to(device)
    model = model.to(device).eval()
    predictions = []
    with torch.inference_mode():
        for x, y in loader:
            logits = model(x.to(device, non_blocking=True))
            y = y.to(device)
            top1.update(logits, y)
            top5.update(logits, y)
            predictions += [(int(t), p) for t, p in zip(y.tolist(), logits.topk(k, dim=1).indices.tolist())]
    paths = [dataset.samples[i][0] for i in indices]
    return {"images": len(indices), "classes": len(dataset.classes), "top1": 100 * top1.compute().item(),
            "top5": 100 * top5.compute().item(), "predictions": [(p, t, pr) for p, (t, pr) in zip(paths, predictions)]}


def run_eval(a: argparse.Namespace) -> int:
    import torch

    if not Path(a.data).is_dir():  # before loading weights (maybe a download of gigabytes)
        return fail("eval", f"data folder not found: {a.data} (expected one sub-folder per class)")
    try:
        model, w = _load_model(a)
        data_config = eval_data_config(model, test_size=a.test_size, input_size=a.input_size, crop_pct=a.crop_pct,
                                       interpolation=a.interpolation)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
        result = evaluate(model, a.data, data_config, batch_size=a.batch_size, workers=a.workers, limit=a.limit,
                          device=device)
    except (WeightsError, UnknownModelError, FileNotFoundError) as e:
        return fail("eval", e)
    if a.results_file:
        from regnet_zoo.fileio import atomic_write

        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["path", "target", "top5"])
        writer.writerows((p, t, " ".join(map(str, pr))) for p, t, pr in result["predictions"])
        atomic_write(a.results_file, buf.getvalue())
    reported = [{**dataclasses.asdict(r), "diff_top1": result["top1"] - r.top1, "diff_top5": result["top5"] - r.top5}
                for r in (w.reported if w else ())]
    out = {"model": w.name if w else a.name, "data": str(Path(a.data)), "images": result["images"],
           "classes": result["classes"], "top1": result["top1"], "top5": result["top5"],
           "preprocessing": {k: data_config[k] for k in ("input_size", "crop_pct", "interpolation", "mean", "std")},
           "test_size": a.test_size and model.pretrained_cfg.get("test_input_size") is not None,
           "reported": reported}
    if a.json:
        print(json.dumps(out, indent=2, default=list))
        return 0
    d = data_config
    print(f"{out['model']} on {out['data']}: {out['images']} images, {out['classes']} classes")
    print(f"  preprocessing: {d['input_size'][-1]}px, crop_pct {d['crop_pct']}, {d['interpolation']}, "
          f"mean {tuple(round(v, 3) for v in d['mean'])}, std {tuple(round(v, 3) for v in d['std'])}")
    if a.test_size and not out["test_size"]:
        print("  note: the weights define no test_input_size; --test-size evaluated at their input_size")
    print(f"  top-1 {out['top1']:.3f} %   top-5 {out['top5']:.3f} %")
    for r in reported:
        print(f"  reported by {r['by']}: top-1 {r['top1']:.3f} / top-5 {r['top5']:.3f} "
              f"({r['input_size']}px, crop_pct {r['crop_pct']}, {r['interpolation']}; {r['reference']}) "
              f"-> difference {r['diff_top1']:+.3f} / {r['diff_top5']:+.3f}")
    if reported and out["images"] != 50000:
        print("  note: the reported numbers are on the 50,000 ImageNet-1k validation images; this run used "
              f"{out['images']}.")
    return 0
