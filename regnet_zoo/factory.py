"""``create``: name or config -> model, with weights and feature extraction, like timm.

Data flows one way: name -> ``registry`` -> config -> ``models.AnyNet`` -> ``weights`` -> user.
``register_timm_models()`` makes our models timm models (``timm.create_model("regnet_zoo_regnety_040")``);
nothing is registered with timm until it is called.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import timm
import torch
from timm.models import register_model
from torch import nn

from regnet_zoo.config import AnyNetCfg, ModelCfg, RegNetCfg, cfg_from_dict
from regnet_zoo.models import AnyNet, wrap_features
from regnet_zoo.models.anynet import pretrained_cfg_for_channels
from regnet_zoo.registry import MODELS, ModelEntry, split_name_tag
from regnet_zoo.weights import HF_HUB_PREFIX
from regnet_zoo.weights.apply import apply_weights, head_classes, input_channels
from regnet_zoo.weights.resolve import create_from_hub, resolve_pretrained

_log = logging.getLogger(__name__)


def _build(model: str | ModelCfg | dict[str, Any], pretrained: bool | str | os.PathLike | None, *,
           num_classes: int | None, in_chans: int | None, cache_dir: str | os.PathLike | None,
           device: torch.device | str | None, **kwargs: Any) -> AnyNet:
    """A registry model or config, with ``pretrained`` weights loaded (see ``create``)."""
    entry, tag = split_name_tag(model) if isinstance(model, str) else (None, None)
    if entry is not None:
        cfg = entry.cfg
    elif isinstance(model, (RegNetCfg, AnyNetCfg, dict)):
        cfg = cfg_from_dict(model) if isinstance(model, dict) else model
    else:
        raise TypeError(f"model must be a name, RegNetCfg, AnyNetCfg or config dict, got {type(model).__name__}")
    if tag is not None and pretrained in (None, True):
        if pretrained is None:
            _log.info("loading weights %s.%s (tag in the name); pass pretrained=False for random init",
                      entry.name, tag)
        pretrained = tag
    weights = None
    if pretrained:
        weights = resolve_pretrained(entry, pretrained, cache_dir=cache_dir)
        num_classes = head_classes(weights.state_dict) if num_classes is None else num_classes
        in_chans = input_channels(weights.state_dict) if in_chans is None else in_chans
    with torch.device(device) if device is not None else contextlib.nullcontext():
        net = AnyNet(cfg, in_chans=3 if in_chans is None else in_chans,
                     num_classes=1000 if num_classes is None else num_classes, **kwargs)
    if entry is not None:
        net.pretrained_cfg = {"architecture": entry.name, **net.pretrained_cfg}
    if weights is not None:
        apply_weights(net, weights)
    return net


def create(
    model: str | ModelCfg | dict[str, Any],
    pretrained: bool | str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    feature_cls: str = "list",
    cache_dir: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
    pretrained_cfg_overlay: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a RegNet/AnyNet by name or config, optionally with pretrained weights.

    Args:
        model: a registry name or alias (``"regnety_4.0gf"``, ``"RegNetY-4.0GF"``, ``"regnety_040"``,
            ``"regnety_4.0gf.ra3_in1k"`` with a weight tag), ``"hf-hub:org/repo[@revision]"``, a
            ``RegNetCfg`` / ``AnyNetCfg``, or a config dict (``cfg.to_dict()``).
        pretrained: True (the model's default weights); a weight tag such as ``"ra3_in1k"`` (or
            ``"pycls"`` / ``"torchvision"`` for the original files); a path to a weight file of any
            supported layout; False for random init. Default: True for ``hf-hub:`` names and for
            ``NAME.TAG`` (logged; timm would give random weights), False otherwise.
        num_classes: classifier outputs; default: the weights' class count (1000 without weights).
            Weights of another class count keep a freshly initialised head (logged).
        in_chans: input channels; default: the weights' (3 without weights). Pretrained 3-channel
            stems are adapted as timm does.
        features_only: return timm's feature extractor (a list of stem/stage feature maps).
        out_indices: feature levels to return (0 = stem, 1..4 = stages s1..s4).
        feature_cls: timm feature wrapper, ``"list"``, ``"dict"``, ``"hook"`` or ``"getter"``.
        cache_dir: Hugging Face cache folder for downloaded weights.
        device: where to build the model (e.g. ``"cuda"``, ``"meta"``); default CPU.
        dtype: parameter / buffer floating dtype (e.g. ``torch.bfloat16``); default float32.
        pretrained_cfg_overlay: entries that replace those of ``model.pretrained_cfg`` (e.g. ``mean``,
            ``std``, ``crop_pct``); as in timm, a ``"file"`` entry is the weights to load when
            ``pretrained`` is set.
        **kwargs: ``AnyNet`` options: ``global_pool``, ``drop_rate``, ``drop_path_rate``,
            ``zero_init_last``, ``output_stride``.
    """
    overlay = dict(pretrained_cfg_overlay or {})
    if pretrained and overlay.get("file"):
        pretrained = overlay["file"]
    if isinstance(model, str) and model.startswith(HF_HUB_PREFIX):
        net = create_from_hub(model[len(HF_HUB_PREFIX):], pretrained=True if pretrained is None else pretrained,
                              num_classes=num_classes, in_chans=in_chans, cache_dir=cache_dir, device=device,
                              **kwargs)
    else:
        net = _build(model, pretrained, num_classes=num_classes, in_chans=in_chans, cache_dir=cache_dir,
                     device=device, **kwargs)
    if dtype is not None:
        net.to(dtype=dtype)
    if overlay:
        net.pretrained_cfg = {**net.pretrained_cfg, **overlay}
    net.pretrained_cfg = pretrained_cfg_for_channels(net.pretrained_cfg, net.in_chans)
    if features_only:
        return wrap_features(net, out_indices, feature_cls)
    return net


def timm_entrypoint_name(entry: ModelEntry) -> str:
    """``regnet_zoo_<timm id>``, or ``regnet_zoo_<canonical name>`` for models timm lacks."""
    return f"regnet_zoo_{entry.timm_name or entry.name}"


def _timm_entrypoint(entry: ModelEntry):
    """A timm model function building registry model ``entry`` through ``create``."""

    def entrypoint(pretrained: bool = False, *, pretrained_cfg: Any = None,
                   pretrained_cfg_overlay: Mapping[str, Any] | None = None, **kw: Any) -> nn.Module:
        overlay = dict(pretrained_cfg_overlay or {})
        if isinstance(pretrained_cfg, str):  # timm passes the tag of "name.tag" this way
            if pretrained:
                pretrained = pretrained_cfg
        elif pretrained_cfg is not None:  # a PretrainedCfg or dict: its entries, below the overlay's
            cfg = pretrained_cfg.to_dict() if hasattr(pretrained_cfg, "to_dict") else dict(pretrained_cfg)
            if pretrained and cfg.get("tag"):
                pretrained = cfg["tag"]
            overlay = {**{k: v for k, v in cfg.items() if v is not None}, **overlay}
        return create(entry.name, pretrained=pretrained, pretrained_cfg_overlay=overlay or None, **kw)

    entrypoint.__name__ = entrypoint.__qualname__ = timm_entrypoint_name(entry)
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"{entry.display} from regnet_zoo ({entry.description})."
    return entrypoint


def register_timm_models() -> list[str]:
    """Register ``regnet_zoo_<timm id>`` entrypoints with timm (idempotent); returns the registered names.

    Models timm lacks (``timm_name`` None) register as ``regnet_zoo_<canonical name>``.

    timm reads ``org/name`` as a Hub id or path and ``name.tag`` as a weight tag, so a name like
    ``regnet_zoo/regnety_4.0gf`` cannot be a timm model name. Call this first (neither importing
    regnet_zoo nor ``create`` registers anything)::

        regnet_zoo.register_timm_models()
        timm.create_model("regnet_zoo_regnety_040", pretrained=True)  # tags work: "regnet_zoo_regnety_040.ra3_in1k"

    timm's ``device``, ``dtype``, ``pretrained_cfg_overlay`` and ``features_only`` are honoured.
    """
    names = [timm_entrypoint_name(entry) for entry in MODELS.values()]
    for entry, fn_name in zip(MODELS.values(), names):
        if not timm.is_model(fn_name):
            setattr(sys.modules[__name__], fn_name, register_model(_timm_entrypoint(entry)))
    return names
