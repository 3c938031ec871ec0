"""Convert RegNet state dicts of other code bases to ours (= timm's layout, RGB input).

Formats:

* ``pycls``: the paper's code (``.pyth`` checkpoints with ``model_state``; keys ``s1.b1.f.a``,
  ``f.a_bn``, ``f.se.f_ex.0``, ``proj``, ``bn`` ...). pycls feeds **BGR** images, so the stem conv's
  input channels are flipped to take RGB.
* ``torchvision``: ``torchvision.models.regnet_*`` (``stem.0``, ``trunk_output.block1.block1-0.f.a.0``...).
* ``transformers``: ``RegNetForImageClassification`` / ``RegNetModel`` (``regnet.embedder...``,
  ``encoder.stages.0.layers.0.layer.1.convolution``...).
* ``timm``: timm's ``regnet*`` (and ours): identity.

Checkpoint wrappers (``model_state``/``ema_state``, ``state_dict``, ``model``) and key prefixes
(``module.``, ``model.``, ``_orig_mod.``) are removed first; ``detect_format`` tells the formats apart.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

from regnet_zoo.models import AnyNet
from regnet_zoo.registry import MODELS
from regnet_zoo.weights.apply import FIRST_CONV, head_classes, input_channels
from regnet_zoo.weights.errors import WeightsError

_log = logging.getLogger(__name__)

FORMATS = ("pycls", "torchvision", "transformers", "timm")
# a key that identifies each format (after unwrapping and prefix removal)
_ANCHORS = {
    "torchvision": "stem.0.weight",
    "transformers": "embedder.embedder.convolution.weight",
    "timm": "s1.b1.conv1.conv.weight",
    "pycls": "s1.b1.f.a.weight",
}
_BLOCK = re.compile(r"^s(\d+)\.b(\d+)\.(.+)$")

# block-internal module names -> ours
_PYCLS_BLOCK = {"proj": "downsample.conv", "bn": "downsample.bn", "f.a": "conv1.conv", "f.a_bn": "conv1.bn",
                "f.b": "conv2.conv", "f.b_bn": "conv2.bn", "f.se.f_ex.0": "se.fc1", "f.se.f_ex.2": "se.fc2",
                "f.c": "conv3.conv", "f.c_bn": "conv3.bn"}
_TV_BLOCK = {"proj.0": "downsample.conv", "proj.1": "downsample.bn", "f.a.0": "conv1.conv", "f.a.1": "conv1.bn",
             "f.b.0": "conv2.conv", "f.b.1": "conv2.bn", "f.se.fc1": "se.fc1", "f.se.fc2": "se.fc2",
             "f.c.0": "conv3.conv", "f.c.1": "conv3.bn"}
_HF_COMMON = {"shortcut.convolution": "downsample.conv", "shortcut.normalization": "downsample.bn",
              "layer.0.convolution": "conv1.conv", "layer.0.normalization": "conv1.bn",
              "layer.1.convolution": "conv2.conv", "layer.1.normalization": "conv2.bn"}
_HF_Y = {**_HF_COMMON, "layer.2.attention.0": "se.fc1", "layer.2.attention.2": "se.fc2",
         "layer.3.convolution": "conv3.conv", "layer.3.normalization": "conv3.bn"}
_HF_X = {**_HF_COMMON, "layer.2.convolution": "conv3.conv", "layer.2.normalization": "conv3.bn"}


def unwrap_checkpoint(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model's tensors from a checkpoint dict (pycls, timm/Lightning, plain state dict)."""
    if "classy_state_dict" in obj:
        raise WeightsError("ClassyVision/VISSL checkpoints are not supported; the SEER weights are published "
                           "converted as the Hub tags seer / seer_ft_in1k")
    if "model_state" in obj:  # pycls: the better of model_state / ema_state, as pycls' load_checkpoint picks
        test_err, ema_err = obj.get("test_err", 100), obj.get("ema_err", 100)
        key = "ema_state" if "ema_state" in obj and ema_err < test_err else "model_state"
        obj = obj[key]
    else:
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise WeightsError(f"checkpoint holds no tensors (keys: {', '.join(list(obj)[:8])})")
    return _strip_prefixes(sd)


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the tensors under the shortest prefix that holds a RegNet (e.g. Lightning's ``model.``)."""
    prefixes = set()
    for k in sd:
        for anchor in _ANCHORS.values():
            if k.endswith(anchor):
                prefix = k[: -len(anchor)]
                prefixes.add(prefix[: -len("regnet.")] if prefix.endswith("regnet.") else prefix)
    if not prefixes or "" in prefixes:
        return sd
    prefix = min(prefixes, key=len)
    dropped = [k for k in sd if not k.startswith(prefix)]
    if dropped:
        _log.info("ignoring %d tensors outside %r (e.g. %s)", len(dropped), prefix, dropped[0])
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def detect_format(state_dict: Mapping[str, Any]) -> str:
    """'pycls', 'torchvision', 'transformers' or 'timm' for a (possibly wrapped) RegNet state dict."""
    sd = unwrap_checkpoint(state_dict)
    keys = set(sd)
    for fmt, anchor in _ANCHORS.items():
        if anchor in keys or "regnet." + anchor in keys:
            return fmt
    raise WeightsError("not a RegNet state dict of a known layout (pycls, torchvision, transformers, timm); "
                       f"first keys: {', '.join(sorted(keys)[:6])}")


def _rename(key: str, module_map: Mapping[str, str], fmt: str) -> str:
    """Rename the module part of ``module.param`` through ``module_map``."""
    module, _, param = key.rpartition(".")
    if module not in module_map:
        raise WeightsError(f"{fmt} state dict: unexpected key {key!r} (known modules: {', '.join(module_map)})")
    return f"{module_map[module]}.{param}"


def _from_pycls(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        m = _BLOCK.match(k)
        if m:
            k = f"s{m[1]}.b{m[2]}." + _rename(m[3], _PYCLS_BLOCK, "pycls")
        elif not k.startswith(("stem.conv.", "stem.bn.", "head.fc.")):
            raise WeightsError(f"pycls state dict: unexpected key {k!r}")
        out[k] = v
    w = out.get(FIRST_CONV)
    if w is not None and w.shape[1] == 3:
        out[FIRST_CONV] = w.flip(1).contiguous()  # pycls takes BGR; ours RGB
        _log.info("pycls weights: flipped %s input channels from BGR to RGB", FIRST_CONV)
    return out


def _from_torchvision(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    block = re.compile(r"^trunk_output\.block(\d+)\.block\1-(\d+)\.(.+)$")
    for k, v in sd.items():
        m = block.match(k)
        if m:
            k = f"s{m[1]}.b{int(m[2]) + 1}." + _rename(m[3], _TV_BLOCK, "torchvision")
        else:
            k = _rename(k, {"stem.0": "stem.conv", "stem.1": "stem.bn", "fc": "head.fc"}, "torchvision")
        out[k] = v
    return out


def _from_transformers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = {k[len("regnet."):] if k.startswith("regnet.") else k: v for k, v in sd.items()}
    block = re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)$")
    y_blocks = {m.group(1, 2) for k in sd if (m := block.match(k)) and m[3].startswith("layer.2.attention")}
    out = {}
    for k, v in sd.items():
        m = block.match(k)
        if m:
            table = _HF_Y if m.group(1, 2) in y_blocks else _HF_X
            k = f"s{int(m[1]) + 1}.b{int(m[2]) + 1}." + _rename(m[3], table, "transformers")
        else:
            k = _rename(k, {"embedder.embedder.convolution": "stem.conv",
                            "embedder.embedder.normalization": "stem.bn", "classifier.1": "head.fc"},
                        "transformers")
        out[k] = v
    return out


_CONVERTERS: dict[str, Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]] = {
    "pycls": _from_pycls, "torchvision": _from_torchvision, "transformers": _from_transformers, "timm": dict,
}


def convert_state_dict(checkpoint: Mapping[str, Any], fmt: str = "auto") -> dict[str, torch.Tensor]:
    """State dict (or checkpoint) of format ``fmt`` ('auto' detects it) -> ours (timm layout, RGB)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {fmt!r}")
    sd = unwrap_checkpoint(checkpoint)
    found = detect_format(sd)
    if fmt != "auto" and found != fmt:
        raise WeightsError(f"expected a {fmt} state dict, but its keys are {found}'s "
                           f"(e.g. {_ANCHORS[found]!r}); use --from {found} / fmt='{found}'")
    return _CONVERTERS[found](sd)


def registry_matches(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Registry models whose tensors have exactly the names and shapes of ``state_dict`` (ours/timm layout).

    Class count and input channels are taken from the weights; models are built on the 'meta' device.
    """
    def shapes(sd: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}

    want = shapes(state_dict)
    if FIRST_CONV not in want:
        return []
    num_classes, in_chans = head_classes(state_dict), input_channels(state_dict)
    depths: dict[int, int] = {}
    for k in want:
        m = _BLOCK.match(k)
        if m:
            depths[int(m[1])] = max(depths.get(int(m[1]), 0), int(m[2]))
    stages = [depths[i] for i in sorted(depths)]
    out = []
    with torch.device("meta"):
        for name, entry in MODELS.items():
            if entry.cfg.to_anynet().depths != stages:  # cheap pre-filter (pure math)
                continue
            if shapes(AnyNet(entry.cfg, in_chans=in_chans, num_classes=num_classes).state_dict()) == want:
                out.append(name)
    return out
