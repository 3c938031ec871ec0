"""Pretrained weights: manifest, Hub download and verification, converters, publishing (no Lightning).

Names load on first use (``manifest`` imports no torch: ``regnet-zoo list --pretrained`` stays fast). Modules,
each importing only those before it: ``errors``, ``files`` (hashes), ``endpoint`` (Hub URL, offline mode,
reachability), ``manifest``, ``apply`` (the ``Pretrained`` bundle; read / load state dicts), ``convert`` (other
layouts, both ways), ``hf_config`` (config.json), ``hub`` (huggingface_hub), ``origin`` (original URLs),
``resolve`` (``pretrained=`` and ``hf-hub:``; the only one using hub and origin), ``publish``.
"""

from __future__ import annotations

import importlib
from typing import Any

HF_HUB_PREFIX = "hf-hub:"  # model names of Hub repos: "hf-hub:org/name[@revision]" (timm's spelling)
FORMATS = ("pycls", "torchvision", "transformers", "timm", "vissl")  # the layouts ``convert`` reads

_LAZY = {
    "load_into": "apply", "read_state_dict": "apply", "Pretrained": "apply", "apply_weights": "apply",
    "read_weights": "resolve", "resolve_pretrained": "resolve", "create_from_hub": "resolve",
    "WeightsError": "errors", "WeightsHubError": "errors", "WeightsMismatchError": "errors",
    "WeightsNotCachedError": "errors", "WeightsNotFoundError": "errors", "WeightsVerificationError": "errors",
    "load_manifest": "manifest", "pretrained_table": "manifest",
    "convert_state_dict": "convert",
    "save_pretrained": "publish", "from_pretrained": "publish", "push_to_hub": "publish",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"regnet_zoo.weights.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'regnet_zoo.weights' has no attribute {name!r}")


__all__ = ["FORMATS", "HF_HUB_PREFIX", *sorted(_LAZY)]
