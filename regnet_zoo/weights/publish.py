"""Publish models: ``save_pretrained`` / ``from_pretrained`` (a folder) and ``push_to_hub`` (a Hub repo).

A folder (and repo) holds ``model.safetensors``, a ``config.json`` that timm loads with our full config under
``"regnet_zoo"`` (``hf_config``), and a model card ``README.md``; files are written atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, HfApi, ModelCardData
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import validate_repo_id
from torch import nn

from regnet_zoo.config import AnyNetCfg, RegNetCfg
from regnet_zoo.counting import format_count, model_complexity
from regnet_zoo.fileio import atomic_write
from regnet_zoo.models import wrap_features
from regnet_zoo.weights.endpoint import http_error, hub_endpoint
from regnet_zoo.weights.errors import WeightsError
from regnet_zoo.weights.hf_config import (
    CONFIG_KEY,
    CONFIG_NAME,
    WEIGHTS_NAME,
    build_model,
    read_config,
    registry_entry_for,
    save_for_timm,
)
from regnet_zoo.weights.manifest import WeightsEntry, load_manifest
from regnet_zoo.weights.resolve import create_from_hub, read_weights

_log = logging.getLogger(__name__)

# metric name -> model-index display name (HF's eval-results format)
_METRIC_NAMES = {"top1": "Top-1 accuracy", "top5": "Top-5 accuracy"}
_CITATION = """@InProceedings{Radosavovic2020,
  title = {Designing Network Design Spaces},
  author = {Ilija Radosavovic and Raj Prateek Kosaraju and Ross Girshick and Kaiming He and Piotr Doll{\\'a}r},
  booktitle = {CVPR},
  year = {2020}
}"""


def _check_model(model: nn.Module) -> None:
    """Our classifier models (what save_pretrained / push_to_hub accept) pass; others raise ``TypeError``."""
    if not isinstance(getattr(model, "cfg", None), (RegNetCfg, AnyNetCfg)) or not hasattr(model, "stage_names"):
        raise TypeError(f"expected a regnet_zoo model (AnyNet from regnet_zoo.create), got {type(model).__name__}; "
                        "for features_only models publish the classifier model instead")


def save_pretrained(
    model: nn.Module,
    save_directory: str | os.PathLike,
    *,
    metrics: Mapping[str, float] | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    repo_id: str | None = None,
    model_card: bool = True,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and (``model_card``) ``README.md`` to ``save_directory``.

    ``model``: an ``AnyNet`` (``regnet_zoo.create(...)``); ``metrics``: accuracies to publish, e.g.
    ``{"top1": 81.3, "top5": 95.6}`` (percent); ``license``, ``datasets``, ``repo_id``: as in
    ``model_card_text``. Returns the folder.
    """
    _check_model(model)
    out = Path(save_directory)
    out.mkdir(parents=True, exist_ok=True)
    extra = {"metrics": dict(metrics)} if metrics else {}
    tag = model.pretrained_cfg.get("tag")
    if tag:
        extra["weights_tag"] = tag
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=out) as staging:
        config = save_for_timm(model, staging, extra)
        for name in (WEIGHTS_NAME, CONFIG_NAME):  # the weights first: a config.json never names missing weights
            atomic_write(out / name, lambda tmp, name=name: os.replace(Path(staging) / name, tmp))
    if model_card:
        card = model_card_text(model, metrics=metrics, license=license, datasets=datasets, repo_id=repo_id,
                               timm_loads=config[CONFIG_KEY]["timm_compatible"])
        atomic_write(out / "README.md", card)
    return out


def from_pretrained(
    path_or_repo: str | os.PathLike,
    *,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    feature_cls: str = "list",
    **kwargs: Any,
) -> nn.Module:
    """Model saved by ``save_pretrained`` (a folder) or pushed to the Hub (``"org/repo"``), with its weights.

    Arguments as in ``regnet_zoo.create``; ``num_classes``, ``in_chans``, ``global_pool`` default to the saved ones.
    """
    folder = Path(path_or_repo)
    repo = os.fspath(path_or_repo)
    if folder.is_dir():
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise WeightsError(f"{folder} has no {name}: not a folder written by save_pretrained")
        weights = read_weights(folder / WEIGHTS_NAME)
        net = build_model(read_config(folder / CONFIG_NAME), weights.state_dict, f"folder {str(folder)!r}",
                          pretrained_cfg={"file": str(folder), "source": "local-dir"}, **kwargs)
    elif folder.is_file():
        raise WeightsError(f"{repo} is a file; from_pretrained takes a folder written by save_pretrained or a Hub "
                           "repo id 'org/name' (for a weights file use regnet_zoo.create(NAME, pretrained=path))")
    elif not _is_repo_id(path_or_repo):
        raise WeightsError(f"folder {repo} does not exist (and {repo!r} is not a Hub repo id 'org/name')")
    else:
        net = create_from_hub(repo, pretrained=True, **kwargs)
    return wrap_features(net, out_indices, feature_cls) if features_only else net


def _is_repo_id(name: str | os.PathLike) -> bool:
    """True for a string huggingface_hub accepts as a repo id ``org/name[@revision]`` (not a path spelling)."""
    if not isinstance(name, str) or name.count("/") != 1 or name.startswith((".", "~")):
        return False
    try:
        validate_repo_id(name.partition("@")[0])
    except HFValidationError:
        return False
    return True


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    metrics: Mapping[str, float] | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str = "Add RegNet weights (regnet-zoo)",
    create_pr: bool = False,
):
    """Publish what ``save_pretrained`` writes (with these card fields) to the Hub repo ``repo_id``.

    One commit through ``HfApi.create_repo`` (if needed) + ``upload_folder``; the token comes from ``token``,
    ``HF_TOKEN`` or ``hf auth login``. Returns huggingface_hub's ``CommitInfo`` (``.commit_url``, ``.oid``).
    """
    _check_model(model)
    endpoint = hub_endpoint()
    api = HfApi(endpoint=endpoint, token=token)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, metrics=metrics, license=license, datasets=datasets, repo_id=repo_id)
        try:
            api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
            return api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model", revision=revision,
                                     commit_message=commit_message, create_pr=create_pr)
        except HfHubHTTPError as e:
            raise http_error(e, f"push to {repo_id}", repo_id, endpoint) from e


def _published_entry(model: str | None, tag: str | None, num_classes: int) -> WeightsEntry | None:
    """The manifest entry of published weights ``model.tag`` whose classifier the model still has, else None."""
    if model is None or not tag:
        return None
    return next((w for w in load_manifest().for_model(model) if w.tag == tag and w.num_classes == num_classes), None)


def _weights_line(pcfg: Mapping[str, Any], published: WeightsEntry | None) -> str:
    """Where the weights come from, as far as the model knows it."""
    tag = pcfg.get("tag")
    if not tag:
        return "origin not recorded (not a published tag: e.g. trained, converted or randomly initialised)"
    text = published.name if published is not None else f"derived from tag {tag} (another classifier)"
    if pcfg.get("hf_hub_id"):
        text += f" (from {pcfg['hf_hub_id']})"
    if pcfg.get("paper_name"):
        text += f"; {pcfg['paper_name']}" + (f" ({pcfg['paper_ids']})" if pcfg.get("paper_ids") else "")
    return text


def _hf_license(license: str) -> dict[str, str]:
    if license == "seer-license":
        return {"license": "other", "license_name": "seer-license",
                "license_link": "https://github.com/facebookresearch/vissl/blob/main/MODEL_ZOO_LICENSE"}
    return {"license": license}


def model_card_text(
    model: nn.Module,
    *,
    metrics: Mapping[str, float] | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    repo_id: str | None = None,
    timm_loads: bool = True,
) -> str:
    """A Hub model card (YAML metadata + markdown) describing ``model``, its complexity and ``metrics``.

    ``license``: default the weights' (``pretrained_cfg["license"]``: published tags and their original files),
    else ``other`` (with a warning). ``datasets``: training datasets, the classifier's label space last
    (default: the manifest's for the weights' tag, else unknown). ``repo_id``: for the usage snippet.
    ``timm_loads``: the config.json is one timm can build (library_name timm, timm usage snippet).
    """
    cfg = model.cfg
    arch = cfg.to_anynet()
    entry = registry_entry_for(cfg)
    pcfg = model.pretrained_cfg
    published = _published_entry(entry.name if entry else None, pcfg.get("tag"), model.num_classes)
    license = license or pcfg.get("license")
    if not license:
        _log.warning("the licence of these weights is unknown (not a published tag): the model card says "
                     "'license: other'; pass license=... (regnet-zoo push/convert --license) to state it")
        license = "other"
    if datasets is None:
        datasets = published.datasets if published is not None else []
    eval_dataset = datasets[-1] if datasets else "unknown"
    size = int(pcfg.get("input_size", (3, 224, 224))[-1])
    name = entry.display if entry else f"custom {type(cfg).__name__}"
    eval_results = [
        EvalResult(task_type="image-classification", dataset_type=eval_dataset,
                   dataset_name=eval_dataset.replace("imagenet", "ImageNet"),
                   dataset_split="validation", metric_type="accuracy" if k in _METRIC_NAMES else k,
                   metric_name=_METRIC_NAMES.get(k, k), metric_value=float(v))
        for k, v in (metrics or {}).items()]
    data = ModelCardData(library_name="timm" if timm_loads else "regnet-zoo", datasets=datasets or None,
                         tags=["image-classification", "timm", "regnet", "regnet-zoo"],
                         pipeline_tag="image-classification", model_name=repo_id or name,
                         eval_results=eval_results or None, **_hf_license(license))
    cx = model_complexity(cfg, resolution=size, in_chans=model.in_chans, num_classes=model.num_classes)
    rows = "\n".join(f"| s{i + 1} | {s.depth} | {s.width} | {s.group_width} | {s.groups} | {s.bot_mul:g} |"
                     for i, s in enumerate(arch.stages))
    repo = repo_id or "<org>/<repo>"
    lines = [
        f"# {repo_id or name}", "",
        f"{name} ({'RegNet' if entry else 'AnyNet'} from *Designing Network Design Spaces*, Radosavovic et al., "
        "CVPR 2020), published with regnet-zoo.", "",
        "## Model details", "",
        f"- **Architecture:** {name}; " + (f"generator d={cfg.depth}, w0={cfg.w0}, wa={cfg.wa}, wm={cfg.wm}, "
                                            f"g={cfg.group_width}, bot_mul={cfg.bot_mul:g}, rounding={cfg.rounding}; "
                                            if hasattr(cfg, "w0") else "")
        + f"stem width {arch.stem_width}, SE ratio {arch.se_ratio:g}",
        f"- **Classes:** {model.num_classes}; input channels {model.in_chans}",
        f"- **Complexity @ {size}x{size}:** {format_count(cx['flops'])} multiply-adds ({cx['flops']:,}), "
        f"{format_count(cx['params'])} parameters ({cx['params']:,}), {format_count(cx['acts'])} activations "
        f"({cx['acts']:,}), counted as the paper does",
        f"- **Weights:** {_weights_line(pcfg, published)}",
        f"- **Training data:** {', '.join(datasets) if datasets else 'unknown (not recorded)'}",
        f"- **License:** {license}", "",
        "| stage | depth | width | group width | groups | bot_mul |", "|---|---|---|---|---|---|", rows, "",
        "## Preprocessing", "",
        f"RGB, resize to {int(size / pcfg.get('crop_pct', 0.875))} ({pcfg.get('interpolation', 'bilinear')}), "
        f"centre crop {size}, mean {tuple(pcfg.get('mean', ()))}, std {tuple(pcfg.get('std', ()))}.", "",
    ]
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        lines += [f"| {_METRIC_NAMES.get(k, k)} | {v} |" for k, v in metrics.items()] + [""]
    lines += ["## Usage", "", "```python", "import regnet_zoo", "",
              f'model = regnet_zoo.create("hf-hub:{repo}", pretrained=True).eval()', "```", ""]
    if timm_loads:
        lines += ["or with timm alone:", "", "```python", "import timm", "",
                  f'model = timm.create_model("hf-hub:{repo}", pretrained=True).eval()', "```", ""]
    lines += ["## Citation", "", "```bibtex", _CITATION, "```", ""]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines)
