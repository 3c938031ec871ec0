"""Turn a ``pretrained=`` argument into a state dict (the hub side lives in ``weights.hub``), and load it.

A path may hold a state dict or checkpoint of any supported layout (ours/timm, the paper's pycls
``.pyth``, torchvision, transformers): it is detected and converted (``weights.convert``). A file
that keeps the name of an original published file of the manifest (``RegNetX-200MF_dds_8gpu.pyth``,
``regnet_y_16gf_swag-43afe44d.pth``) gets that entry's tag, licence and preprocessing.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from regnet_zoo.registry import ModelEntry
from regnet_zoo.weights.apply import WeightsError, load_into, read_state_dict
from regnet_zoo.weights.manifest import load_manifest, warn_if_non_commercial

_log = logging.getLogger(__name__)


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
    pretrained_cfg, origin_note = origin_file_cfg(path, fmt)
    return Pretrained(convert_state_dict(obj, fmt), f"file {path!r}{note}{origin_note}", pretrained_cfg)


def origin_file_cfg(path: str | os.PathLike, fmt: str) -> tuple[dict[str, Any], str]:
    """(pretrained_cfg, note) for a file named like an original published file of the manifest, else ({}, "").

    The entry's tag, licence, preprocessing and paper then describe the weights (format must agree).
    """
    try:
        w = load_manifest().find_origin_file(path)
    except WeightsError as e:  # a broken manifest override must not stop loading a local file
        _log.warning("cannot look %s up in the weights manifest: %s", os.fspath(path), e)
        return {}, ""
    if w is None or w.origin.format != fmt:
        return {}, ""
    _log.info("%s has the name of %s's original file: using its tag, licence and preprocessing",
              os.fspath(path), w.name)
    return w.pretrained_cfg(hub=False), f" ({w.name}'s original file)"


def apply_weights(model: nn.Module, weights: Pretrained) -> None:
    """Load ``weights`` into ``model`` (see ``load_into``) and merge their ``pretrained_cfg``.

    Logs a warning when the weights' licence is non-commercial (SWAG, SEER).
    """
    load_into(model, weights.state_dict, weights.source)
    model.pretrained_cfg = {**model.pretrained_cfg, **weights.pretrained_cfg, "num_classes": model.num_classes}
    warn_if_non_commercial(model.pretrained_cfg.get("license"), f"weights from {weights.source}")


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
