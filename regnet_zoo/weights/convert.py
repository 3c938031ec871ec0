"""Convert RegNet state dicts of other code bases to ours (= timm's layout, RGB input), and back.

Import (``_LAYOUTS``: their module names -> ours): ``pycls`` (the paper's ``.pyth``; pycls feeds **BGR**
images, so the stem conv's input channels are flipped to RGB), ``torchvision``, ``transformers``, ``vissl``
(SEER; renamed as timm's ``regnet`` filter does, self-supervised heads dropped) and ``timm`` (identity), after
removing checkpoint wrappers and key prefixes (``module.``, ``model.``, ``_orig_mod.``). Export
(``export_layout``): torchvision's or transformers' layout, loading there with ``strict=True``; models those
libraries cannot build raise ``ExportError`` naming the rule.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

from regnet_zoo.config import AnyNetCfg
from regnet_zoo.fileio import atomic_write
from regnet_zoo.models import AnyNet, Bottleneck, Stem
from regnet_zoo.registry import MODELS
from regnet_zoo.weights import FORMATS
from regnet_zoo.weights.apply import FIRST_CONV, describe_model, head_classes, input_channels
from regnet_zoo.weights.errors import ExportError, WeightsError

_log = logging.getLogger(__name__)

EXPORT_LAYOUTS = ("torchvision", "transformers")
# a key that identifies each of FORMATS (after unwrapping and prefix removal)
_ANCHORS = {
    "pycls": "s1.b1.f.a.weight",
    "torchvision": "stem.0.weight",
    "transformers": "embedder.embedder.convolution.weight",
    "timm": "s1.b1.conv1.conv.weight",
    "vissl": "_feature_blocks.conv1.stem.0.weight",
}
_BLOCK = re.compile(r"^s(\d+)\.b(\d+)\.(.+)$")

# module names -> ours (inside a block, or top-level)
_PYCLS_BLOCK = {"proj": "downsample.conv", "bn": "downsample.bn", "f.a": "conv1.conv", "f.a_bn": "conv1.bn",
                "f.b": "conv2.conv", "f.b_bn": "conv2.bn", "f.se.f_ex.0": "se.fc1", "f.se.f_ex.2": "se.fc2",
                "f.c": "conv3.conv", "f.c_bn": "conv3.bn"}
_TV_BLOCK = {"proj.0": "downsample.conv", "proj.1": "downsample.bn", "f.a.0": "conv1.conv", "f.a.1": "conv1.bn",
             "f.b.0": "conv2.conv", "f.b.1": "conv2.bn", "f.se.fc1": "se.fc1", "f.se.fc2": "se.fc2",
             "f.c.0": "conv3.conv", "f.c.1": "conv3.bn"}
_TV_TOP = {"stem.0": "stem.conv", "stem.1": "stem.bn", "fc": "head.fc"}
_HF_COMMON = {"shortcut.convolution": "downsample.conv", "shortcut.normalization": "downsample.bn",
              "layer.0.convolution": "conv1.conv", "layer.0.normalization": "conv1.bn",
              "layer.1.convolution": "conv2.conv", "layer.1.normalization": "conv2.bn"}
_HF_Y = {**_HF_COMMON, "layer.2.attention.0": "se.fc1", "layer.2.attention.2": "se.fc2",
         "layer.3.convolution": "conv3.conv", "layer.3.normalization": "conv3.bn"}
_HF_X = {**_HF_COMMON, "layer.2.convolution": "conv3.conv", "layer.2.normalization": "conv3.bn"}
# ClassyVision's ResBottleneckBlock (proj, bn, f.{a,b,se,c,final_bn}), as timm's regnet _filter_fn renames it
_VISSL_BLOCK = {"proj": "downsample.conv", "bn": "downsample.bn", "f.a.0": "conv1.conv", "f.a.1": "conv1.bn",
                "f.b.0": "conv2.conv", "f.b.1": "conv2.bn", "f.se.excitation.0": "se.fc1",
                "f.se.excitation.2": "se.fc2", "f.c": "conv3.conv", "f.final_bn": "conv3.bn"}
_VISSL_SSL_HEADS = ("projection_head", "prototypes")  # SwAV pre-training heads: not part of the model
# format -> (its block keys: stage, block, module; our stage and block index minus its; block modules; the others)
_LAYOUTS: dict[str, tuple[re.Pattern, tuple[int, int], dict[str, str], dict[str, str]]] = {
    "pycls": (_BLOCK, (0, 0), _PYCLS_BLOCK, {m: m for m in ("stem.conv", "stem.bn", "head.fc")}),
    "torchvision": (re.compile(r"^trunk_output\.block(\d+)\.block\1-(\d+)\.(.+)$"), (0, 1), _TV_BLOCK, _TV_TOP),
    "transformers": (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.(.+)$"), (1, 1), {**_HF_X, **_HF_Y},
                     {"embedder.embedder.convolution": "stem.conv", "embedder.embedder.normalization": "stem.bn",
                      "classifier.1": "head.fc"}),
    "vissl": (re.compile(r"^_feature_blocks\.res\d+\.block(\d+)-(\d+)\.(.+)$"), (0, 1), _VISSL_BLOCK,
              {"_feature_blocks.conv1.stem.0": "stem.conv", "_feature_blocks.conv1.stem.1": "stem.bn",
               "heads.0.clf.0": "head.fc"}),  # the linear classifier of a fine-tuned (or linear-eval "mlp") head
}


def _invert(table: Mapping[str, str]) -> dict[str, str]:
    return {ours: theirs for theirs, ours in table.items()}


def unwrap_checkpoint(obj: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The model's tensors from a checkpoint dict (pycls, timm/Lightning, VISSL, plain state dict)."""
    if "classy_state_dict" not in obj and isinstance(obj.get("model"), Mapping) and "classy_state_dict" in obj["model"]:
        obj = obj["model"]  # as timm's filter looks for it
    if "classy_state_dict" in obj:
        return _unwrap_classy(obj["classy_state_dict"])
    if "model_state" in obj:  # pycls: the better of model_state / ema_state, as pycls' load_checkpoint picks
        better_ema = "ema_state" in obj and obj.get("ema_err", 100) < obj.get("test_err", 100)
        obj = obj["ema_state" if better_ema else "model_state"]
    else:  # timm / Lightning wrappers, else a plain state dict
        wrapped = [obj[k] for k in ("state_dict", "model", "model_state_dict") if isinstance(obj.get(k), Mapping)]
        obj = wrapped[0] if wrapped else obj
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise WeightsError(f"checkpoint holds no tensors (keys: {', '.join(list(obj)[:8])})")
    return _strip_prefixes(sd)


def _unwrap_classy(classy: Any) -> dict[str, torch.Tensor]:
    """VISSL / ClassyVision ``classy_state_dict``: the trunk's tensors, and the heads' under ``heads.``."""
    try:
        model = classy["base_model"]["model"]
        trunk, heads = model["trunk"], model.get("heads") or {}
    except (KeyError, TypeError) as e:
        raise WeightsError("VISSL/ClassyVision checkpoint without classy_state_dict['base_model']['model']"
                           f"['trunk'] (missing {e}); is it a checkpoint of a VISSL RegNet trunk?") from None
    sd = {k: v for k, v in trunk.items() if isinstance(v, torch.Tensor)}
    sd.update({f"heads.{k}": v for k, v in heads.items() if isinstance(v, torch.Tensor)})
    if not sd:
        raise WeightsError("VISSL/ClassyVision checkpoint: its trunk holds no tensors")
    return sd


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep the tensors under the shortest prefix that holds a RegNet (e.g. Lightning's ``model.``)."""
    prefixes = {k[: -len(anchor)].removesuffix("regnet.") for k in sd for anchor in _ANCHORS.values()
                if k.endswith(anchor)}
    if not prefixes or "" in prefixes:
        return sd
    prefix = min(prefixes, key=len)
    dropped = [k for k in sd if not k.startswith(prefix)]
    if dropped:
        _log.info("ignoring %d tensors outside %r (e.g. %s)", len(dropped), prefix, dropped[0])
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


def detect_format(state_dict: Mapping[str, Any]) -> str:
    """The format (``FORMATS``) of a (possibly wrapped) RegNet state dict."""
    sd = unwrap_checkpoint(state_dict)
    keys = set(sd)
    for fmt, anchor in _ANCHORS.items():
        if anchor in keys or "regnet." + anchor in keys:
            return fmt
    raise WeightsError(f"not a RegNet state dict of a known layout ({', '.join(FORMATS)}); "
                       f"first keys: {', '.join(sorted(keys)[:6])}")


def _rename(key: str, module_map: Mapping[str, str], fmt: str) -> str:
    """Rename the module part of ``module.param`` through ``module_map``."""
    module, _, param = key.rpartition(".")
    if module not in module_map:
        raise WeightsError(f"{fmt} state dict: unexpected key {key!r} (known modules: {', '.join(module_map)})")
    return f"{module_map[module]}.{param}"


def _rename_keys(sd: Mapping[str, torch.Tensor], fmt: str, block: re.Pattern, block_key: Callable[[re.Match], str],
                 top: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """Keys matching ``block`` renamed by ``block_key(match)``, the others' modules through ``top``."""
    out = {}
    for k, v in sd.items():
        m = block.match(k)
        out[block_key(m) if m else _rename(k, top, fmt)] = v
    return out


def convert_state_dict(checkpoint: Mapping[str, Any], fmt: str = "auto") -> dict[str, torch.Tensor]:
    """State dict (or checkpoint) of format ``fmt`` ('auto' detects it) -> ours (timm layout, RGB)."""
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {fmt!r}")
    sd = unwrap_checkpoint(checkpoint)
    found = detect_format(sd)
    if fmt != "auto" and found != fmt:
        raise WeightsError(f"expected a {fmt} state dict, but its keys are {found}'s "
                           f"(e.g. {_ANCHORS[found]!r}); use --from {found} / fmt='{found}'")
    if found == "timm":
        return sd
    if found == "vissl":
        dropped = [k for k in sd if k.startswith("heads.") and any(h in k for h in _VISSL_SSL_HEADS)]
        if dropped:
            _log.info("vissl checkpoint: dropped %d self-supervised head tensors (e.g. %s)", len(dropped), dropped[0])
        sd = {k: v for k, v in sd.items() if k not in dropped}
    block, (ds, db), modules, top = _LAYOUTS[found]
    out = _rename_keys({k.removeprefix("regnet."): v for k, v in sd.items()}, found, block,  # transformers' model
                       lambda m: f"s{int(m[1]) + ds}.b{int(m[2]) + db}." + _rename(m[3], modules, found), top)
    w = out.get(FIRST_CONV)
    if found == "pycls" and w is not None and w.shape[1] == 3:
        out[FIRST_CONV] = w.flip(1).contiguous()  # pycls takes BGR; ours RGB
        _log.info("pycls weights: flipped %s input channels from BGR to RGB", FIRST_CONV)
    return out


def _shapes(sd: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in sd.items() if not k.endswith("num_batches_tracked")}


def registry_matches(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Registry models whose tensors have exactly the names and shapes of ``state_dict`` (ours/timm layout).

    Class count and input channels are taken from the weights; models are built on the 'meta' device.
    """
    want = _shapes(state_dict)
    if FIRST_CONV not in want:
        return []
    num_classes, in_chans = head_classes(state_dict), input_channels(state_dict)
    blocks = {m.group(1, 2) for k in want if (m := _BLOCK.match(k))}
    per_stage = Counter(int(s) for s, _ in blocks)
    stages = [per_stage[i] for i in sorted(per_stage)]
    out = []
    with torch.device("meta"):
        for name, entry in MODELS.items():
            if entry.cfg.to_anynet().depths != stages:  # cheap pre-filter (pure math)
                continue
            if _shapes(AnyNet(entry.cfg, in_chans=in_chans, num_classes=num_classes).state_dict()) == want:
                out.append(name)
    return out


# ---------------------------------------------------------------------------------------------- export
_TV_OUT, _TV_TOP_OUT, _HF_X_OUT, _HF_Y_OUT = _invert(_TV_BLOCK), _invert(_TV_TOP), _invert(_HF_X), _invert(_HF_Y)
_ACTIVATION_MODULES = ("torch.nn.modules.activation", "timm.layers.activations")  # where activation classes live
_HF_TOP = {"stem.conv": "regnet.embedder.embedder.convolution", "stem.bn": "regnet.embedder.embedder.normalization",
           "head.fc": "classifier.1"}


def to_torchvision(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our (timm-layout) state dict -> ``torchvision.models.regnet_*`` names (``stem.0``, ``trunk_output...``)."""
    return _rename_keys(state_dict, "regnet-zoo", _BLOCK, lambda m: f"trunk_output.block{m[1]}.block{m[1]}-"
                        f"{int(m[2]) - 1}." + _rename(m[3], _TV_OUT, "regnet-zoo"), _TV_TOP_OUT)


def to_transformers(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our state dict -> ``RegNetForImageClassification`` names (``regnet.embedder...``, ``classifier.1``)."""
    y_blocks = {m.group(1, 2) for k in state_dict if (m := _BLOCK.match(k)) and m[3].startswith("se.")}

    def block_key(m: re.Match) -> str:
        table = _HF_Y_OUT if m.group(1, 2) in y_blocks else _HF_X_OUT
        return f"regnet.encoder.stages.{int(m[1]) - 1}.layers.{int(m[2]) - 1}." + _rename(m[3], table, "regnet-zoo")

    return _rename_keys(state_dict, "regnet-zoo", _BLOCK, block_key, _HF_TOP)


@dataclass(frozen=True)
class Export:
    """What ``export_layout`` wrote: the layout, the files, and how the target library loads them."""

    layout: str
    paths: tuple[Path, ...]
    loader: str


def _model_for(model_or_state_dict: nn.Module | Mapping[str, Any]) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    """(model, its state dict): a model as given, or the registry model (on 'meta') a state dict fits."""
    if isinstance(model_or_state_dict, nn.Module):
        if not isinstance(model_or_state_dict, AnyNet):
            raise ExportError(f"cannot export a {type(model_or_state_dict).__name__}: pass the classifier model "
                              "(regnet_zoo.create(...), not features_only) or its state dict")
        return model_or_state_dict, model_or_state_dict.state_dict()
    sd = convert_state_dict(model_or_state_dict)
    names = registry_matches(sd)
    if not names:
        raise ExportError("the weights match no registry model, so their architecture is unknown; export the model "
                          "itself: export_layout(regnet_zoo.create(cfg, pretrained=path), ...)")
    with torch.device("meta"):
        model = AnyNet(MODELS[names[0]].cfg, in_chans=input_channels(sd), num_classes=head_classes(sd))
    for k, v in model.state_dict().items():  # e.g. pycls checkpoints carry no BN step counters
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = torch.zeros((), dtype=v.dtype)
    return model, sd


def _check_plain_regnet(model: AnyNet, layout: str) -> AnyNetCfg:
    """The model's AnyNetCfg if ``layout``'s RegNet can compute it (X/Y blocks, ReLU, avg pool, stride 32)."""
    arch = model.arch
    where = {"torchvision": "torchvision's RegNet", "transformers": "transformers' RegNet"}[layout]
    blocks = [b for s in model.stage_names for b in getattr(model, s).children()]
    rules = [
        (type(arch) is AnyNetCfg and type(model.stem) is Stem and all(type(b) is Bottleneck for b in blocks),
         f"{where} has only the X/Y residual bottleneck block and the 3x3 simple stem"),
        (all(s.bot_mul == 1 for s in arch.stages), f"{where} has bottleneck multiplier 1 in every stage"),
        (all(s.stride == 2 for s in arch.stages), f"{where} strides by 2 in every stage"),
        (model.output_stride in (None, 32), f"{where} has no dilation (output_stride 32)"),
        (model.head.global_pool.pool_type == "avg", f"{where} pools by global average"),
        (all(type(m).__name__ in ("ReLU", "Sigmoid") for m in model.modules()
             if type(m).__module__.startswith(_ACTIVATION_MODULES)), f"{where} uses ReLU (and the sigmoid gate of SE)"),
    ]
    broken = [rule for ok, rule in rules if not ok]
    if broken:
        raise ExportError(f"cannot export {describe_model(model)} to {layout}: " + "; ".join(broken))
    return arch


def torchvision_builder(model: AnyNet) -> str:
    """The ``torchvision.models.regnet_*`` builder of ``model``'s architecture (the registry's ``torchvision_name``)."""
    _check_plain_regnet(model, "torchvision")
    if model.num_classes == 0 or model.in_chans != 3:
        raise ExportError("cannot export to torchvision: its regnet_* models take 3 input channels and end in a "
                          f"classifier (fc); this model has in_chans={model.in_chans}, num_classes={model.num_classes}")
    for entry in MODELS.values():
        if entry.torchvision_name and entry.cfg.to_anynet() == model.arch:
            return entry.torchvision_name
    have = ", ".join(e.name for e in MODELS.values() if e.torchvision_name)
    raise ExportError(f"cannot export {describe_model(model)} to torchvision: torchvision has no regnet_* model with "
                      f"its stages, widths and group widths (it has those of {have})")


def transformers_config(model: AnyNet) -> Any:
    """The ``transformers.RegNetConfig`` of ``model``: one group width, SE 1/4 of the block input (Y) or none (X)."""
    from transformers import RegNetConfig

    arch = _check_plain_regnet(model, "transformers")
    if arch.se_ratio not in (0, 0.25):
        raise ExportError(f"cannot export to transformers: its Y block squeezes to round(w_in / 4) (se_ratio 0.25), "
                          f"this model has se_ratio {arch.se_ratio}")
    labels = model.pretrained_cfg.get("label_names")
    kwargs = {"id2label": dict(enumerate(labels))} if labels and len(labels) == model.num_classes else {}
    return RegNetConfig(num_channels=model.in_chans, embedding_size=arch.stem_width, hidden_sizes=arch.widths,
                        depths=arch.depths, groups_width=max(arch.group_widths),
                        layer_type="y" if arch.se_ratio else "x", hidden_act="relu", downsample_in_first_stage=True,
                        num_labels=model.num_classes, architectures=["RegNetForImageClassification"], **kwargs)


def save_tensors(sd: Mapping[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Write a state dict atomically: safetensors for a ``.safetensors`` path, else ``torch.save``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in sd.items()}
    if path.suffix == ".safetensors":
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    else:
        atomic_write(path, lambda tmp: torch.save(tensors, tmp))


def export_layout(model_or_state_dict: nn.Module | Mapping[str, Any], to: str, out: str | os.PathLike) -> Export:
    """Write our model (or a state dict of any supported layout) in torchvision's or transformers' layout.

    ``to="torchvision"``: ``out`` is a ``.safetensors`` / ``.pth`` / ``.pt`` file (``Export.loader`` says how to
    load it); ``to="transformers"``: a folder with ``config.json`` and ``model.safetensors``. Files are written
    atomically. ``ExportError``: the target cannot build the model (the message names the rule).
    """
    if to not in EXPORT_LAYOUTS:
        raise ValueError(f"to must be one of {EXPORT_LAYOUTS}, got {to!r}")
    out = Path(out)
    if to == "torchvision" and out.suffix not in (".safetensors", ".pth", ".pt"):
        raise ValueError(f"torchvision export writes one state-dict file: {str(out)!r} must end in .safetensors, "
                         ".pth or .pt")
    if to == "transformers" and (out.is_file() or out.suffix in (".safetensors", ".pth", ".pt", ".bin")):
        raise ValueError(f"transformers export writes a folder (config.json + model.safetensors), got {str(out)!r}")
    model, sd = _model_for(model_or_state_dict)
    if to == "torchvision":
        builder = torchvision_builder(model)
        save_tensors(to_torchvision(sd), out)
        return Export(to, (out,), f"torchvision.models.{builder}(num_classes={model.num_classes})"
                                  ".load_state_dict(state_dict)")
    from transformers import RegNetForImageClassification

    config, hf_sd = transformers_config(model), to_transformers(sd)
    with torch.device("meta"):
        theirs = {k: tuple(v.shape) for k, v in RegNetForImageClassification(config).state_dict().items()}
    ours = {k: tuple(v.shape) for k, v in hf_sd.items()}
    diff = [f"missing {k}" for k in theirs if k not in ours] + [f"unexpected {k}" for k in ours if k not in theirs]
    diff += [f"{k}: {ours[k]} vs {theirs[k]}" for k in ours if k in theirs and ours[k] != theirs[k]]
    if diff:
        rule = ("transformers' RegNetConfig has one groups_width for all stages (groups = width // groups_width)"
                if any("convolution.weight" in d for d in diff) else "transformers' RegNet layout differs")
        raise ExportError(f"cannot export {describe_model(model)} to transformers: {rule}; differences: "
                          + ", ".join(diff[:4]))
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(hf_sd, out / "model.safetensors")
    atomic_write(out / "config.json", config.to_json_string())
    return Export(to, (out / "config.json", out / "model.safetensors"),
                  f"transformers.RegNetForImageClassification.from_pretrained({str(out)!r})")
