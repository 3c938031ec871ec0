"""The weight bundle and its use: read weight files, load state dicts into models, adapting them as timm does."""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load_file
from timm.models import adapt_input_conv
from torch import nn

from regnet_zoo.weights.errors import WeightsError, WeightsMismatchError
from regnet_zoo.weights.manifest import NON_COMMERCIAL_LICENSES

_log = logging.getLogger(__name__)

FIRST_CONV = "stem.conv.weight"
CLASSIFIER = ("head.fc.weight", "head.fc.bias")
PICKLE_SUFFIXES = (".pth", ".pyth", ".pt", ".bin", ".ckpt", ".torch")  # .torch: VISSL checkpoints
WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)


@dataclass
class Pretrained:
    """Weights ready to load: the state dict (timm layout), where it came from, its preprocessing."""

    state_dict: dict[str, torch.Tensor]
    source: str
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)


def looks_like_weight_file(name: str | os.PathLike) -> bool:
    """True when ``name`` is spelled like a weight file path (a folder part or a weight-file suffix)."""
    return isinstance(name, os.PathLike) or "/" in name or os.sep in name or name.endswith(WEIGHT_SUFFIXES)


def _pickle_refusal(e: Exception) -> str:
    """The reason in torch's weights-only error, without its advice to load unsafely."""
    text = str(e)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
        text = text.split(" Please use", 1)[0]
    else:
        text = text.split(". ", 1)[0]
    return " ".join(text.split()).rstrip(".")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a legacy pickle (``PICKLE_SUFFIXES``, read only with
    ``torch.load(weights_only=True)``); raises ``WeightsError`` naming the file when it is unreadable."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"weight file {path!r} does not exist")
    if path.endswith(".safetensors"):
        try:
            obj = load_file(path, device="cpu")
        except Exception as e:  # safetensors errors carry little context
            raise WeightsError(f"weight file {path!r} is corrupt or not a safetensors file: {e}") from e
    elif path.endswith(PICKLE_SUFFIXES):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # an object torch's weights-only unpickler refuses, or garbage
            raise WeightsError(
                f"weight file {path!r} is not a plain state dict or checkpoint (or it is corrupt): "
                f"{_pickle_refusal(e)}. regnet-zoo loads pickle files only with torch.load(weights_only=True), "
                "which accepts tensors and plain containers. Re-save the weights as .safetensors (or convert the "
                "file with a tool you trust).") from None
        except Exception as e:  # e.g. a truncated zip archive
            raise WeightsError(f"weight file {path!r} is corrupt or not a PyTorch file: {_pickle_refusal(e)}") from e
    else:
        raise WeightsError(f"weight file {path!r}: unknown format; expected .safetensors or a legacy "
                           f"PyTorch pickle ({', '.join(PICKLE_SUFFIXES)})")
    if not isinstance(obj, Mapping):
        raise WeightsError(f"weight file {path!r} holds a {type(obj).__name__}, not a state dict")
    return dict(obj)


def head_classes(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Class count of a state dict's classifier, from ``head.fc.weight`` (0: headless, e.g. SEER trunks)."""
    w = state_dict.get(CLASSIFIER[0])
    return int(w.shape[0]) if w is not None else 0


def input_channels(state_dict: Mapping[str, torch.Tensor], default: int = 3) -> int:
    """Input channels of a state dict's first conv (``stem.conv.weight``); ``default`` without one."""
    w = state_dict.get(FIRST_CONV)
    return int(w.shape[1]) if w is not None else default


def describe_model(model: nn.Module) -> str:
    """How messages name a model: its architecture name, else its class and config."""
    arch = getattr(model, "pretrained_cfg", {}).get("architecture")
    if arch:
        return f"model {arch!r}"
    cfg = getattr(model, "cfg", None)
    return f"{type(model).__name__}({cfg})" if cfg is not None else type(model).__name__


def load_into(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict`` (timm layout) into ``model``; ``source`` names where it came from.

    Adapts the first conv to the model's ``in_chans`` (``adapt_input_conv``), keeps the model's fresh head when
    the weights' class count differs (or they have none); any other misfit is a ``WeightsMismatchError``.
    """
    sd = {k: v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    own = model.state_dict()
    if FIRST_CONV in sd and FIRST_CONV in own and sd[FIRST_CONV].shape[1] != own[FIRST_CONV].shape[1]:
        in_chans = own[FIRST_CONV].shape[1]
        _log.info("adapting %s of %s from %d to %d input channels", FIRST_CONV, source,
                  sd[FIRST_CONV].shape[1], in_chans)
        sd[FIRST_CONV] = adapt_input_conv(in_chans, sd[FIRST_CONV])
    head_differs = any(k in sd and (k not in own or sd[k].shape != own[k].shape) for k in CLASSIFIER)
    if not any(k in sd for k in CLASSIFIER) and any(k in own for k in CLASSIFIER):
        head_differs = True  # trunk-only weights (e.g. self-supervised): the model keeps its fresh head
        _log.info("%s has no classifier: keeping the model's freshly initialised head", source)
    elif head_differs:
        n_pre = sd[CLASSIFIER[0]].shape[0] if CLASSIFIER[0] in sd else "?"
        _log.info("classifier of %s has %s classes, the model %s: keeping the model's freshly "
                  "initialised head", source, n_pre, getattr(model, "num_classes", "?"))
        for k in CLASSIFIER:
            sd.pop(k, None)
    problems = {
        "missing keys": [k for k in own if k not in sd and not k.endswith("num_batches_tracked")
                         and not (head_differs and k in CLASSIFIER)],
        "unexpected keys": [k for k in sd if k not in own],
        "shape mismatches": [f"{k}: weights {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                             for k in sd if k in own and sd[k].shape != own[k].shape]}
    if any(problems.values()):
        raise WeightsMismatchError(f"weights from {source} do not fit {describe_model(model)}; " + "; ".join(
            f"{what}: {', '.join(items[:8])}" + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
            for what, items in problems.items() if items))
    model.load_state_dict(sd, strict=False)


def apply_weights(model: nn.Module, weights: Pretrained) -> None:
    """Load ``weights`` into ``model`` (``load_into``), merge their ``pretrained_cfg``; warns of non-commercial use."""
    load_into(model, weights.state_dict, weights.source)
    model.pretrained_cfg = {**model.pretrained_cfg, **weights.pretrained_cfg, "num_classes": model.num_classes}
    if (license := model.pretrained_cfg.get("license")) in NON_COMMERCIAL_LICENSES:
        _log.warning("weights from %s: licence %s permits non-commercial use only", weights.source, license)
