"""``create``: name or config -> model, with weights and feature extraction, like timm.

Data flows one way: name -> ``registry`` -> config -> ``models.AnyNet`` -> ``weights`` -> user.
Importing this module also registers our models with timm (see ``register_timm_models``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from timm.models._builder import pretrained_cfg_for_features
from timm.models._features import FeatureDictNet, FeatureGetterNet, FeatureHookNet, FeatureListNet
from torch import nn

from regnet_zoo.config import AnyNetCfg, ModelCfg, RegNetCfg, cfg_from_dict
from regnet_zoo.models import AnyNet
from regnet_zoo.registry import ModelEntry, split_name_tag

FEATURE_CLASSES = {"list": FeatureListNet, "dict": FeatureDictNet, "hook": FeatureHookNet,
                   "getter": FeatureGetterNet}
HF_HUB_PREFIX = "hf-hub:"


def resolve_model(model: str | ModelCfg | dict[str, Any]) -> tuple[ModelEntry | None, ModelCfg, str | None]:
    """(registry entry or None, architecture, tag from ``NAME.TAG`` or None)."""
    if isinstance(model, (RegNetCfg, AnyNetCfg)):
        return None, model, None
    if isinstance(model, dict):
        return None, cfg_from_dict(model), None
    if isinstance(model, str):
        entry, tag = split_name_tag(model)
        return entry, entry.cfg, tag
    raise TypeError(f"model must be a name, RegNetCfg, AnyNetCfg or config dict, got {type(model).__name__}")


def wrap_features(model: AnyNet, out_indices: Sequence[int] | None = None,
                  feature_cls: str = "list", **feature_kwargs: Any) -> nn.Module:
    """timm's feature extractor around ``model``: returns features of stem/stages ``out_indices``."""
    n = len(model.feature_info)
    out_indices = tuple(range(n)) if out_indices is None else tuple(out_indices)
    bad = [i for i in out_indices if not -n <= i < n]
    if bad:
        raise ValueError(f"out_indices {bad} out of range: this model has {n} feature levels "
                         f"(0 = stem, 1..{n - 1} = stages)")
    if feature_cls not in FEATURE_CLASSES:
        raise ValueError(f"feature_cls must be one of {sorted(FEATURE_CLASSES)}, got {feature_cls!r}")
    pretrained_cfg = model.pretrained_cfg
    wrapped = FEATURE_CLASSES[feature_cls](model, out_indices=out_indices, **feature_kwargs)
    wrapped.pretrained_cfg = wrapped.default_cfg = pretrained_cfg_for_features(pretrained_cfg)
    return wrapped


def _head_classes(state_dict: dict[str, Any]) -> int:
    """Class count of a state dict's classifier (0 for a headless one, e.g. SEER)."""
    w = state_dict.get("head.fc.weight")
    return int(w.shape[0]) if w is not None else 0


def create(
    model: str | ModelCfg | dict[str, Any],
    pretrained: bool | str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    in_chans: int = 3,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    feature_cls: str = "list",
    cache_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a RegNet/AnyNet by name or config, optionally with pretrained weights.

    Args:
        model: a registry name or alias (``"regnety_4.0gf"``, ``"RegNetY-4.0GF"``, ``"regnety_040"``,
            ``"regnety_4.0gf.tv2_in1k"`` with a weight tag), ``"hf-hub:org/repo[@revision]"``, a
            ``RegNetCfg`` / ``AnyNetCfg``, or a config dict (``cfg.to_dict()``).
        pretrained: True (the model's default weights); a weight tag such as ``"tv2_in1k"`` (or
            ``"pycls"`` / ``"torchvision"`` for the original files); a path to a weight file of any
            supported layout; False for random init. Default: True for ``hf-hub:`` names and for
            ``NAME.TAG``, False otherwise.
        num_classes: classifier outputs; default: the weights' class count (1000 without weights).
            Weights of another class count keep a freshly initialised head (logged).
        in_chans: input channels; pretrained 3-channel stems are adapted as timm does.
        features_only: return timm's feature extractor (a list of stem/stage feature maps).
        out_indices: feature levels to return (0 = stem, 1..4 = stages s1..s4).
        feature_cls: timm feature wrapper, ``"list"``, ``"dict"``, ``"hook"`` or ``"getter"``.
        cache_dir: Hugging Face cache folder for downloaded weights.
        **kwargs: ``AnyNet`` options: ``global_pool``, ``drop_rate``, ``drop_path_rate``,
            ``zero_init_last``, ``output_stride``.
    """
    if isinstance(model, str) and model.startswith(HF_HUB_PREFIX):
        from regnet_zoo.weights.hub import create_from_hub

        return create_from_hub(model[len(HF_HUB_PREFIX):], pretrained=True if pretrained is None else pretrained,
                               num_classes=num_classes, in_chans=in_chans, features_only=features_only,
                               out_indices=out_indices, feature_cls=feature_cls, cache_dir=cache_dir, **kwargs)
    entry, cfg, tag = resolve_model(model)
    if tag is not None and pretrained in (None, True):
        pretrained = tag
    weights = None
    if pretrained:
        from regnet_zoo.weights import resolve_pretrained

        weights = resolve_pretrained(entry, pretrained, cache_dir=cache_dir)
        if num_classes is None:
            num_classes = _head_classes(weights.state_dict)
    net = AnyNet(cfg, in_chans=in_chans, num_classes=1000 if num_classes is None else num_classes, **kwargs)
    if entry is not None:
        net.pretrained_cfg = {"architecture": entry.name, **net.pretrained_cfg}
    if weights is not None:
        from regnet_zoo.weights import load_into

        load_into(net, weights.state_dict, weights.source)
        net.pretrained_cfg = {**net.pretrained_cfg, **weights.pretrained_cfg, "num_classes": net.num_classes}
    if features_only:
        return wrap_features(net, out_indices, feature_cls)
    return net


def register_timm_models() -> list[str]:
    """Register ``regnet_zoo_<timm id>`` entrypoints with timm (idempotent).

    timm reads ``org/name`` as a Hub id or path and ``name.tag`` as a weight tag, so a name like
    ``regnet_zoo/regnety_4.0gf`` cannot be a timm model name. Instead, after ``import regnet_zoo``
    ``timm.create_model("regnet_zoo_regnety_040", pretrained=True)`` builds our model (tags work:
    ``"regnet_zoo_regnety_040.tv2_in1k"``). Returns the registered names.
    """
    import sys

    from timm.models._registry import _model_entrypoints, register_model

    from regnet_zoo.registry import MODELS

    names = []
    for entry in MODELS.values():
        fn_name = f"regnet_zoo_{entry.timm_name}"
        names.append(fn_name)
        if fn_name in _model_entrypoints:
            continue

        def entrypoint(pretrained: bool = False, _entry: ModelEntry = entry, **kw: Any) -> nn.Module:
            pretrained_cfg = kw.pop("pretrained_cfg", None)
            kw.pop("pretrained_cfg_overlay", None)
            kw.pop("device", None), kw.pop("dtype", None)
            if pretrained and isinstance(pretrained_cfg, str):
                pretrained = pretrained_cfg  # timm passes "name.tag" tags this way
            return create(_entry.name, pretrained=pretrained, **kw)

        entrypoint.__name__ = entrypoint.__qualname__ = fn_name
        entrypoint.__module__ = __name__
        entrypoint.__doc__ = f"{entry.display} from regnet_zoo ({entry.description})."
        setattr(sys.modules[__name__], fn_name, entrypoint)
        register_model(entrypoint)
    return names


register_timm_models()
