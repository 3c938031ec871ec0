"""Turn a ``pretrained=`` argument into a state dict (the hub side lives in ``weights.hub``).

A path may hold a state dict or checkpoint of any supported layout (ours/timm, the paper's pycls
``.pyth``, torchvision, transformers): it is detected and converted (``weights.convert``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch

from regnet_zoo.registry import ModelEntry
from regnet_zoo.weights.apply import WeightsError, read_state_dict


@dataclass
class Pretrained:
    """Weights ready to load: the state dict (timm layout), where it came from, its preprocessing."""

    state_dict: dict[str, torch.Tensor]
    source: str
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)


def is_path(pretrained: object) -> bool:
    """True for a path-like ``pretrained=`` value (as opposed to True or a tag name)."""
    if isinstance(pretrained, os.PathLike):
        return True
    return isinstance(pretrained, str) and (
        os.sep in pretrained or "/" in pretrained or os.path.splitext(pretrained)[1] != ""
        or os.path.exists(pretrained))


def read_weights(path: str | os.PathLike) -> Pretrained:
    """Weights of a local file, converted to our layout when it is another code base's."""
    from regnet_zoo.weights.convert import convert_state_dict, detect_format

    path = os.fspath(path)
    obj = read_state_dict(path)
    try:
        fmt = detect_format(obj)
    except WeightsError:  # not a known layout: load_into will list what does not fit
        return Pretrained(obj, f"file {path!r}")
    note = "" if fmt == "timm" else f" ({fmt} layout, converted{', BGR->RGB' if fmt == 'pycls' else ''})"
    return Pretrained(convert_state_dict(obj, fmt), f"file {path!r}{note}")


def resolve_pretrained(entry: ModelEntry | None, pretrained: bool | str | os.PathLike,
                       cache_dir: str | os.PathLike | None = None) -> Pretrained:
    """Weights for ``entry`` from a local file, or (True / a tag) from the Hugging Face Hub.

    Tags are the manifest's (``regnet-zoo list --pretrained``); the pseudo-tags ``"pycls"`` and
    ``"torchvision"`` fetch the original files from the paper's / torchvision's URL and convert them.
    """
    if is_path(pretrained):
        return read_weights(pretrained)
    if entry is None:
        raise WeightsError("pretrained=True needs a registered model name; for a custom config "
                           "pass pretrained='path/to/weights.safetensors'")
    from regnet_zoo.weights.hub import fetch_pretrained

    return fetch_pretrained(entry, None if pretrained is True else str(pretrained), cache_dir=cache_dir)
