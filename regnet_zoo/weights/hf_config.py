"""``config.json`` of Hub repos and saved folders: timm's format plus our own key.

What ``timm.create_model("hf-hub:org/repo", pretrained=True)`` reads (a timm RegNet where timm can express the
architecture) plus ``"regnet_zoo": {"cfg": ...}``, so any architecture round-trips through
``regnet_zoo.create("hf-hub:...")``; timm's own repos read too (``architecture``: a timm name).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import PretrainedCfg, save_for_hf
from torch import nn

from regnet_zoo import __version__
from regnet_zoo.config import ModelCfg, RegNetCfg, cfg_from_dict
from regnet_zoo.models import AnyNet
from regnet_zoo.registry import MODELS, ModelEntry, UnknownModelError, get_entry
from regnet_zoo.weights.apply import Pretrained, apply_weights
from regnet_zoo.weights.errors import WeightsError

_log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_KEY = "regnet_zoo"
ANYNET_ARCH = "regnet_zoo_anynet"  # architectures timm cannot express (only regnet_zoo loads them)
PRETRAINED_CFG_FIELDS = frozenset(f.name for f in dataclasses.fields(PretrainedCfg))
# timm RegNetCfg field -> our RegNetCfg field
TIMM_REGNET_ARGS = {"depth": "depth", "w0": "w0", "wa": "wa", "wm": "wm", "group_size": "group_width",
                    "bottle_ratio": "bot_mul", "se_ratio": "se_ratio", "stem_width": "stem_width"}
_TIMM_RUNTIME_ARGS = {"in_chans", "num_classes", "global_pool", "drop_rate", "drop_path_rate", "output_stride",
                      "zero_init_last", "group_min_ratio"}


def registry_entry_for(cfg: ModelCfg) -> ModelEntry | None:
    """The registry model whose architecture is ``cfg`` (None for custom configs)."""
    return next((e for e in MODELS.values() if e.cfg == cfg), None)


def timm_args_for(cfg: ModelCfg) -> tuple[str, dict[str, Any]] | None:
    """(timm architecture, model_args) building ``cfg`` in timm, or None if timm cannot express it.

    (timm's RegNetZ has an activation before the pool where a pycls Z block without head conv has none.)
    """
    entry = registry_entry_for(cfg)
    if entry is not None and entry.timm_name:
        return entry.timm_name, {}
    if not isinstance(cfg, RegNetCfg) or cfg.q != 8 or (cfg.block == "z" and not cfg.head_width):
        return None
    args = {timm_key: getattr(cfg, ours) for timm_key, ours in TIMM_REGNET_ARGS.items()}
    args["group_min_ratio"] = 0.9 if cfg.rounding == "torchvision" else 0.0
    if cfg.activation != "relu" or cfg.head_width:
        args.update(act_layer=cfg.activation, num_features=cfg.head_width)
    if cfg.block == "z":
        args.update(linear_out=True, downsample="")  # "", not None: timm.create_model drops None arguments
    return ("regnety_002" if cfg.se_ratio else "regnetx_002"), args


def _timm_builds_same(model: nn.Module, arch: str, args: dict[str, Any]) -> bool:
    """True when timm's ``arch(**args)`` has exactly ``model``'s tensor names and shapes (built on 'meta')."""
    try:
        with torch.device("meta"):
            ref = timm.create_model(arch, pretrained=False, num_classes=model.num_classes, in_chans=model.in_chans,
                                    **args)
    except Exception as e:  # timm rejects the arguments: not expressible
        _log.debug("timm cannot build %s(%s): %s", arch, args, e)
        return False
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return ours == {k: tuple(v.shape) for k, v in ref.state_dict().items()}


def save_for_timm(model: nn.Module, directory: str | os.PathLike, extra: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """Write ``model.safetensors`` and ``config.json`` (timm's, plus ours and ``extra`` under ``"regnet_zoo"``).

    Returns the config. Not atomic: write into a staging folder.
    """
    cfg: ModelCfg = model.cfg
    found = timm_args_for(cfg)
    timm_ok = found is not None and _timm_builds_same(model, *found)
    arch, args = found if timm_ok else (ANYNET_ARCH, {})
    if not timm_ok:
        _log.warning("timm has no architecture equal to %s: the config.json is for regnet_zoo.create('hf-hub:...') "
                     "only (timm.create_model cannot build it)", cfg)
    save_for_hf(model, os.fspath(directory), model_config={"pretrained_cfg": {"architecture": arch}},
                model_args=args, safe_serialization=True)
    path = Path(directory) / CONFIG_NAME
    config = read_config(path)
    config["pretrained_cfg"] = {k: v for k, v in config["pretrained_cfg"].items()
                                if k in PRETRAINED_CFG_FIELDS and k not in ("hf_hub_id", "source", "file", "url")}
    entry = registry_entry_for(cfg)
    config[CONFIG_KEY] = {"version": __version__, "model": entry.name if entry else None, "cfg": cfg.to_dict(),
                          "timm_compatible": timm_ok, **(extra or {})}
    path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a config.json; ``WeightsError`` names the file when it is not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"cannot read model config {path}: {e}") from e


def cfg_from_config(config: dict[str, Any], where: str) -> ModelCfg:
    """The architecture a config.json (ours or timm's) describes."""
    ours = config.get(CONFIG_KEY)
    if isinstance(ours, dict) and "cfg" in ours:
        try:
            return cfg_from_dict(ours["cfg"])
        except (ValueError, TypeError, KeyError) as e:
            raise WeightsError(f"{where}: invalid '{CONFIG_KEY}.cfg' in config.json: {e}") from e
    arch = config.get("architecture")
    if not isinstance(arch, str):
        raise WeightsError(f"{where}: config.json has neither '{CONFIG_KEY}' nor an 'architecture'")
    try:
        entry = get_entry(arch)
    except UnknownModelError as e:
        raise WeightsError(f"{where}: architecture {arch!r} in config.json is not a RegNet regnet_zoo builds "
                           f"({e})") from None
    model_args = config.get("model_args") or {}
    unsupported = sorted(set(model_args) - set(TIMM_REGNET_ARGS) - _TIMM_RUNTIME_ARGS)
    if unsupported:
        raise WeightsError(f"{where}: timm RegNet options {unsupported} in config.json are not supported by "
                           "regnet_zoo (only the RegNet generator parameters are)")
    changes = {ours: model_args[k] for k, ours in TIMM_REGNET_ARGS.items() if k in model_args}
    if "group_min_ratio" in model_args:
        changes["rounding"] = "torchvision" if model_args["group_min_ratio"] else "pycls"
    return dataclasses.replace(entry.cfg, **changes)


def build_model(
    config: dict[str, Any],
    state_dict: dict[str, torch.Tensor] | None,
    source: str,
    *,
    pretrained_cfg: dict[str, Any] | None = None,
    device: torch.device | str | None = None,
    **model_kwargs: Any,
) -> nn.Module:
    """The ``AnyNet`` a config.json describes, with ``state_dict`` (timm layout) loaded if given.

    ``model_kwargs``: ``AnyNet`` arguments (None: the config's); ``pretrained_cfg``: added to the model's.
    """
    cfg = cfg_from_config(config, source)
    name = getattr(registry_entry_for(cfg), "name", None)
    model_args = config.get("model_args") or {}
    kwargs = {k: v for k, v in model_kwargs.items() if v is not None}
    kwargs.setdefault("num_classes", int(config.get("num_classes", model_args.get("num_classes", 1000))))
    kwargs.setdefault("in_chans", int(model_args.get("in_chans", 3)))
    kwargs.setdefault("global_pool", config.get("global_pool") or model_args.get("global_pool", "avg"))
    with torch.device(device) if device is not None else contextlib.nullcontext():
        net = AnyNet(cfg, **kwargs)
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in (config.get("pretrained_cfg") or {}).items()
             if k in PRETRAINED_CFG_FIELDS}
    weights_cfg = {**saved, **(pretrained_cfg or {})}
    if name is not None:  # the registry name, also in messages while loading
        weights_cfg["architecture"] = name
        net.pretrained_cfg = {**net.pretrained_cfg, "architecture": name}
    if state_dict is not None:
        apply_weights(net, Pretrained(state_dict, source, weights_cfg))
    else:  # the architecture alone: the saved preprocessing still describes how to feed it
        net.pretrained_cfg = {**net.pretrained_cfg, **weights_cfg, "num_classes": net.num_classes}
    return net
