"""Feature extraction: timm's feature wrappers around an ``AnyNet`` (stem and stage outputs)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from timm.models import FeatureDictNet, FeatureHookNet, FeatureListNet
from timm.models._features import FeatureGetterNet, feature_take_indices  # noqa: F401 (no public names in timm 1.0.31)
from torch import nn

FEATURE_CLASSES = {"list": FeatureListNet, "dict": FeatureDictNet, "hook": FeatureHookNet,
                   "getter": FeatureGetterNet}


def wrap_features(model: nn.Module, out_indices: Sequence[int] | None = None,
                  feature_cls: str = "list", **feature_kwargs: Any) -> nn.Module:
    """timm's feature extractor around ``model`` (an ``AnyNet``).

    The result maps (N, C, H, W) images to the feature maps of levels ``out_indices``
    (0 = stem, 1..S = stages; default all), as a list (``"list"``, ``"getter"``) or dict
    (``"dict"``, ``"hook"``).
    """
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
    # as timm's builder does: the classifier's entries do not describe a feature backbone
    wrapped.pretrained_cfg = wrapped.default_cfg = {k: v for k, v in pretrained_cfg.items()
                                                    if k not in ("num_classes", "classifier", "global_pool")}
    return wrapped
