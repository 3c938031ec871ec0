"""The weights manifest: which published weights exist for each model, and what they expect.

The data is the top-level ``weights_manifest/`` folder (``manifest.json`` + ``schema.json``), installed as
``regnet_zoo.weights_manifest``; ``REGNET_ZOO_MANIFEST=path/to/manifest.json`` replaces it (e.g. a mirror).
``load_manifest()`` validates it against the schema and checks what a schema cannot (registered models,
unique (model, tag), one default per model, known presets).
"""

from __future__ import annotations

import functools
import importlib.resources
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regnet_zoo.registry import MODELS, UnknownModelError, get_entry
from regnet_zoo.weights.errors import WeightsError, WeightsNotFoundError

MANIFEST_ENV = "REGNET_ZOO_MANIFEST"
DATA_PACKAGE = "regnet_zoo.weights_manifest"
# timm pretrained_cfg keys the preprocessing maps to (channel_order is ours: always RGB)
PREPROCESSING_CFG_KEYS = ("input_size", "crop_pct", "crop_mode", "interpolation", "mean", "std",
                          "test_input_size", "test_crop_pct")
# licences that forbid commercial use (SWAG: CC-BY-NC 4.0; SEER: its own non-commercial licence)
NON_COMMERCIAL_LICENSES = frozenset({"cc-by-nc-4.0", "seer-license"})


class ManifestError(WeightsError):
    """The manifest file is invalid (the message names the file, the entry and the field)."""


@dataclass(frozen=True)
class Reported:
    """An accuracy (percent, ImageNet-1k val) as a source reports it, with its evaluation settings."""

    top1: float
    top5: float
    by: str
    reference: str
    input_size: int
    crop_pct: float
    interpolation: str
    url: str | None = None


@dataclass(frozen=True)
class HubFile:
    """A weights file on the Hugging Face Hub; ``sha256`` is None when not pinned."""

    repo_id: str
    filename: str
    revision: str
    sha256: str | None


@dataclass(frozen=True)
class Origin:
    """The original publication of the weights: URL, file format and (optional) pinned sha256."""

    url: str
    format: str
    sha256: str | None


@dataclass(frozen=True)
class WeightsEntry:
    """One (model, tag) of the manifest."""

    model: str
    tag: str
    default: bool
    source: str
    license: str
    dataset: str | None
    num_classes: int
    hub: HubFile | None  # None: published only at its origin (torchvision V1), downloaded from there
    preprocessing: dict[str, Any]
    preprocessing_name: str
    reported: tuple[Reported, ...]
    origin: Origin | None = None
    pretrain_dataset: str | None = None
    notes: str = ""
    paper: tuple[str, str] | None = None  # (title, arXiv id) of the paper behind the weights, if any

    @property
    def name(self) -> str:
        """``model.tag``, the spelling ``create`` and the CLI accept."""
        return f"{self.model}.{self.tag}"

    @property
    def non_commercial(self) -> bool:
        """True when the licence forbids commercial use (SWAG, SEER)."""
        return self.license in NON_COMMERCIAL_LICENSES

    @property
    def datasets(self) -> list[str]:
        """Training datasets, pre-training first (e.g. ``["imagenet-12k", "imagenet-1k"]``)."""
        return list(dict.fromkeys(d for d in (self.pretrain_dataset, self.dataset) if d))

    def pretrained_cfg(self, hub: bool = True) -> dict[str, Any]:
        """timm ``pretrained_cfg`` keys for a model carrying these weights (``hub``: with ``hf_hub_id``)."""
        cfg: dict[str, Any] = {k: (tuple(v) if isinstance(v, list) else v)
                               for k, v in self.preprocessing.items() if k in PREPROCESSING_CFG_KEYS}
        for size in ("input_size", "test_input_size"):  # timm's pool_size: the feature map at stride 32
            if size in cfg:
                cfg[size.replace("input", "pool")] = ((cfg[size][1] + 31) // 32,) * 2
        cfg.update(tag=self.tag, license=self.license, num_classes=self.num_classes)
        if hub and self.hub is not None:
            cfg["hf_hub_id"] = self.hub.repo_id
        if self.paper is not None:
            cfg["paper_name"], cfg["paper_ids"] = self.paper
        if self.origin is not None:
            cfg["origin_url"] = self.origin.url
        return cfg


class Manifest:
    """All manifest entries, looked up by model name (or alias) and tag."""

    def __init__(self, entries: list[WeightsEntry], path: str):
        self.entries = tuple(entries)
        self.path = path
        self._by_model: dict[str, list[WeightsEntry]] = {}
        for e in self.entries:
            self._by_model.setdefault(e.model, []).append(e)

    def __len__(self) -> int:
        return len(self.entries)

    def for_model(self, model: str) -> list[WeightsEntry]:
        """Entries of ``model`` (a registry name or alias), default first; [] if none."""
        try:
            name = get_entry(model).name
        except UnknownModelError:
            return []
        return sorted(self._by_model.get(name, []), key=lambda e: not e.default)

    def tags(self, model: str) -> list[str]:
        return [e.tag for e in self.for_model(model)]

    def get(self, model: str, tag: str | None = None) -> WeightsEntry:
        """The entry for ``model`` and ``tag`` (None: the default); ``WeightsNotFoundError`` lists the tags."""
        name = get_entry(model).name
        entries = self.for_model(name)
        if tag is None:
            if not entries:
                raise WeightsNotFoundError(f"no published weights for {name}; pass pretrained='path/to/weights'")
            return entries[0]
        for e in entries:
            if e.tag == tag:
                return e
        raise WeightsNotFoundError(f"no such weights: {name}.{tag}; {describe_tags(name, entries)}"
                                   + self._sibling_hint(name, tag))

    def _sibling_hint(self, name: str, tag: str) -> str:
        """Where ``tag`` exists for the model's ``_tv`` twin (torchvision's widths) or its paper version."""
        twin = name[: -len("_tv")] if name.endswith("_tv") else f"{name}_tv"
        if twin not in MODELS or tag not in self.tags(twin):
            return ""
        why = ("torchvision's version of this model, whose widths differ (torchvision's group rounding)"
               if twin.endswith("_tv") else "the paper's version of this model, whose widths differ")
        return f". {twin} has these weights: it is {why}; use create({twin!r}, pretrained={tag!r})"

    def find_origin_file(self, filename: str | os.PathLike) -> WeightsEntry | None:
        """The entry whose original published file (``origin.url``) has this file name, else None."""
        base = os.path.basename(os.fspath(filename))
        return next((e for e in self.entries if e.origin is not None and e.origin.url.rsplit("/", 1)[-1] == base), None)


def describe_tags(model: str, entries: list[WeightsEntry]) -> str:
    """'tags of MODEL: a (default), b, c' for error messages."""
    if not entries:
        return f"{model} has no published weights"
    return f"weights of {model}: " + ", ".join(e.tag + (" (default)" if e.default else "") for e in entries)


def pretrained_table(names: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """One row per published (model, tag) of ``names`` (registry names or aliases; None: every model).

    Each model's default first. ``top1`` / ``top5``: percent on ImageNet-1k val as first reported (None for
    trunk-only or 12k-head weights) at ``eval_size`` pixels; ``hub_repo`` None: loaded from ``origin_url``.
    """
    manifest = load_manifest()
    models = list(MODELS) if names is None else [get_entry(n).name for n in names]
    rows = []
    for model in models:
        for e in manifest.for_model(model):
            rep = e.reported[0] if e.reported else None
            rows.append({
                "model": e.model, "tag": e.tag, "name": e.name, "default": e.default, "source": e.source,
                "license": e.license, "non_commercial": e.non_commercial, "dataset": e.dataset,
                "pretrain_dataset": e.pretrain_dataset, "num_classes": e.num_classes,
                "top1": rep.top1 if rep else None, "top5": rep.top5 if rep else None,
                "reported_by": rep.by if rep else None, "eval_size": rep.input_size if rep else None,
                "input_size": e.preprocessing["input_size"][-1], "crop_pct": e.preprocessing["crop_pct"],
                "interpolation": e.preprocessing["interpolation"], "hub_repo": e.hub.repo_id if e.hub else None,
                "origin_url": e.origin.url if e.origin else None, "paper": e.paper[1] if e.paper else None})
    return rows


def _shipped(name: str) -> Path:
    """A file of the shipped manifest folder: the installed data package, or the source tree (a checkout)."""
    try:
        return Path(str(importlib.resources.files(DATA_PACKAGE).joinpath(name)))
    except ModuleNotFoundError:  # a source checkout that is not installed (e.g. torch.hub's copy)
        source_tree = Path(__file__).resolve().parents[2] / "weights_manifest" / name
        if source_tree.is_file():
            return source_tree
        raise ManifestError(f"the weights manifest is not installed ({DATA_PACKAGE} missing); reinstall "
                            "regnet-zoo or set REGNET_ZOO_MANIFEST=path/to/manifest.json") from None


def manifest_path() -> Path:
    """Path of the manifest in use: ``$REGNET_ZOO_MANIFEST``, else the shipped one."""
    return Path(os.environ.get(MANIFEST_ENV) or _shipped("manifest.json"))


def schema() -> dict[str, Any]:
    """The manifest's JSON Schema (shipped next to the shipped manifest)."""
    return json.loads(_shipped("schema.json").read_text(encoding="utf-8"))


def validate_manifest(data: Any, where: str = "manifest") -> None:
    """Raise ``ManifestError`` listing every schema violation and cross-reference error of ``data``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    problems = [f"{where}: {'/'.join(str(p) for p in err.absolute_path) or '(top level)'}: {err.message}"
                for err in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]
    if problems:
        raise ManifestError("invalid weights manifest:\n  " + "\n  ".join(problems[:20])
                            + (f"\n  ... ({len(problems)} problems)" if len(problems) > 20 else ""))
    seen: set[tuple[str, str]] = set()
    defaults: dict[str, int] = {}
    for i, w in enumerate(data["weights"]):
        at = f"{where}: weights/{i} ({w['model']}.{w['tag']})"
        if w["model"] not in MODELS:
            problems.append(f"{at}: model {w['model']!r} is not a canonical registry name")
        if (w["model"], w["tag"]) in seen:
            problems.append(f"{at}: duplicate (model, tag)")
        seen.add((w["model"], w["tag"]))
        defaults[w["model"]] = defaults.get(w["model"], 0) + int(w["default"])
        if w["preprocessing"] not in data["preprocessing"]:
            problems.append(f"{at}: unknown preprocessing preset {w['preprocessing']!r}; presets: "
                            f"{sorted(data['preprocessing'])}")
        if "paper" in w and w["paper"] not in data.get("papers", {}):
            problems.append(f"{at}: unknown paper {w['paper']!r}; papers: {sorted(data.get('papers', {}))}")
        if (w["num_classes"] == 0) != (w["dataset"] is None):
            problems.append(f"{at}: dataset must be null exactly when num_classes is 0")
    problems += [f"{where}: {m} has {n} default entries (needs exactly 1)" for m, n in defaults.items() if n != 1]
    if problems:
        raise ManifestError("invalid weights manifest:\n  " + "\n  ".join(problems))


def parse_manifest(data: dict[str, Any], path: str = "manifest") -> Manifest:
    """Validate ``data`` (the JSON document) and build typed entries."""
    validate_manifest(data, path)
    papers = data.get("papers", {})
    entries = [WeightsEntry(**{
        **w, "hub": HubFile(**w["hub"]) if "hub" in w else None,
        "origin": Origin(**w["origin"]) if "origin" in w else None,
        "preprocessing": dict(data["preprocessing"][w["preprocessing"]]), "preprocessing_name": w["preprocessing"],
        "reported": tuple(Reported(**r) for r in w["reported"]),
        "paper": (papers[w["paper"]]["name"], papers[w["paper"]]["ids"]) if "paper" in w else None,
    }) for w in data["weights"]]
    return Manifest(entries, path)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int) -> Manifest:
    return parse_manifest(json.loads(Path(path).read_text(encoding="utf-8")), path)


def load_manifest() -> Manifest:
    """The validated manifest (cached per file and modification time)."""
    path = manifest_path()
    try:
        return _load(str(path), path.stat().st_mtime_ns)
    except (OSError, json.JSONDecodeError) as e:
        raise ManifestError(f"cannot read the weights manifest {path}: {e}") from e
