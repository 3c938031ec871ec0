"""A model from whatever a user points at: NAME[.TAG], hf-hub:org/repo, a save_pretrained folder, a file.

Above ``factory`` and ``weights``, below the command line (``push``, ``eval --weights``, ``convert``).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from regnet_zoo.factory import create
from regnet_zoo.registry import get_entry, split_name_tag
from regnet_zoo.weights import HF_HUB_PREFIX, Pretrained, WeightsError, from_pretrained, read_weights
from regnet_zoo.weights.apply import apply_weights, head_classes, input_channels, looks_like_weight_file
from regnet_zoo.weights.convert import registry_matches


def identify_model(state_dict: dict, model: str | None = None) -> str | None:
    """The registry model the weights are for: ``model`` if given, else the unique shape match (None: no match)."""
    if model:
        return get_entry(model).name
    matches = registry_matches(state_dict)
    if len(matches) > 1:
        raise WeightsError(f"the weights fit several models ({', '.join(matches)}); choose one with --model")
    return matches[0] if matches else None


def model_with_weights(name: str, weights: Pretrained) -> nn.Module:
    """Registry model ``name`` with ``weights`` loaded; its class count and input channels follow them."""
    sd = weights.state_dict
    net = create(name, num_classes=head_classes(sd), in_chans=input_channels(sd))
    apply_weights(net, weights)
    return net


def load_source(source: str | os.PathLike, model: str | None = None, cache_dir: str | None = None) -> nn.Module:
    """The model ``source`` names: a registry NAME[.TAG] (its pretrained weights), ``hf-hub:org/repo``, a
    ``save_pretrained`` folder or a weights file (.safetensors, .pth, .pyth, Lightning .ckpt; ``model``
    names its registry model, default: matched by shapes). Errors are ``WeightsError`` / ``UnknownModelError``.
    """
    source = str(source)
    if source.startswith(HF_HUB_PREFIX):
        return create(source, pretrained=True, cache_dir=cache_dir)
    path = Path(source)
    if path.is_dir():
        return from_pretrained(path)
    if path.is_file():
        weights = read_weights(path)
        name = identify_model(weights.state_dict, model)
        if name is None:
            raise WeightsError(f"{source}: the weights match no registry model; pass --model NAME")
        return model_with_weights(name, weights)
    if looks_like_weight_file(source):
        raise WeightsError(f"file not found: {source}")
    entry, tag = split_name_tag(source)
    return create(entry.name, pretrained=tag or True, cache_dir=cache_dir)
