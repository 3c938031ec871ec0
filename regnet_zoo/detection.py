"""RegNet-FPN detection backbones and torchvision detectors (Faster/Mask R-CNN, RetinaNet) on them.

``regnet_fpn_backbone`` is torchvision's own ``BackboneWithFPN`` around a zoo model, frozen as
torchvision's ResNet-FPN recipe does; the detector builders size the anchors by each map's stride and
normalise images with the backbone's ``pretrained_cfg`` mean / std.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from regnet_zoo.config import ModelCfg
from regnet_zoo.factory import create
from regnet_zoo.models import AnyNet

RCNN_ANCHOR_SIZE_PER_STRIDE = 8  # FPN paper / torchvision: 32 px anchors on the stride-4 map
RETINANET_ANCHOR_SIZE_PER_STRIDE = 4  # RetinaNet paper / torchvision: 32 px anchors on the stride-8 map (P3)
# extra FPN levels torchvision's blocks add; each halves the size of the level before it
EXTRA_LEVEL_NAMES: dict[type[ExtraFPNBlock], tuple[str, ...]] = {LastLevelMaxPool: ("pool",),
                                                                 LastLevelP6P7: ("p6", "p7")}


def freeze_stages(model: AnyNet, trainable_stages: int) -> None:
    """Stop gradients of the stem and all but the last ``trainable_stages`` stages (0..5, as torchvision)."""
    n_stages = len(model.stage_names)
    if not 0 <= trainable_stages <= n_stages + 1:
        raise ValueError(f"trainable_stages must be in [0, {n_stages + 1}] (stages s1..s{n_stages} + stem), "
                         f"got {trainable_stages}")
    for i, name in enumerate([*reversed(model.stage_names), "stem"]):
        getattr(model, name).requires_grad_(i < trainable_stages)


def regnet_fpn_backbone(model: str | ModelCfg | dict[str, Any] | AnyNet = "regnetx_3.2gf",
                        pretrained: bool | str | os.PathLike = False, *, returned_stages: Sequence[int] = (1, 2, 3, 4),
                        trainable_stages: int | None = None, frozen_bn: bool | None = None, out_channels: int = 256,
                        extra_blocks: ExtraFPNBlock | None = None, fpn_norm_layer: type[nn.Module] | None = None,
                        cache_dir: str | os.PathLike | None = None, **create_kwargs: Any) -> BackboneWithFPN:
    """A torchvision ``BackboneWithFPN`` on a zoo model.

    Args:
        model: zoo name (``"regnety_1.6gf"``, ``"hf-hub:org/repo"``), ``RegNetCfg``/``AnyNetCfg``, config dict,
            or a built zoo classifier (``AnyNet``, e.g. fine-tuned; used as it is, not copied).
        pretrained: ImageNet weights, passed to ``regnet_zoo.create`` (True, a tag, or a file path).
        returned_stages: stages (1 = s1 at stride 4 ... 4 = s4 at stride 32) fed to the FPN, increasing.
        trainable_stages: stages that train, counted from the last, 5 = all incl. the stem
            (torchvision's ``trainable_layers``); default 3 with pretrained weights, else all.
        frozen_bn: replace BatchNorm by frozen BN (fixed statistics and affine); default: with pretrained.
        out_channels: FPN channels (``backbone.out_channels``).
        extra_blocks: extra FPN levels; default ``LastLevelMaxPool`` (adds "pool").
        fpn_norm_layer: norm layer inside the FPN (torchvision's ``norm_layer``), default none.
        cache_dir: Hugging Face cache folder for downloaded weights.
        **create_kwargs: further ``regnet_zoo.create`` options (``in_chans``, ``output_stride``, ...).

    Returns:
        ``BackboneWithFPN``: (N, C, H, W) -> OrderedDict of (N, out_channels, H / 2^(s+1), W / 2^(s+1)),
        with ``feature_info`` (channels, strides of the returned stages) and the model's ``pretrained_cfg``.
    """
    for key in ("features_only", "num_classes", "out_indices"):
        if key in create_kwargs:
            raise TypeError(f"regnet_fpn_backbone() does not take {key!r}: the backbone's outputs are chosen "
                            f"by returned_stages")
    if isinstance(model, nn.Module):
        if pretrained or cache_dir is not None or create_kwargs:
            raise TypeError("regnet_fpn_backbone() takes pretrained, cache_dir and create options only with a model "
                            "name or config, not with a built model (load its weights before)")
        net = model
    else:
        net = create(model, pretrained=pretrained, num_classes=0, cache_dir=cache_dir, **create_kwargs)
    if not isinstance(net, AnyNet):
        raise TypeError(f"expected a zoo AnyNet from {model!r}, got {type(net).__name__}")
    n_stages = len(net.stage_names)
    returned = list(returned_stages)
    if not returned or any(not 1 <= s <= n_stages for s in returned) or returned != sorted(set(returned)):
        raise ValueError(f"returned_stages must be increasing stage numbers in 1..{n_stages}, got {returned_stages}")
    if trainable_stages is None:
        trainable_stages = 3 if pretrained else n_stages + 1
    freeze_stages(net, trainable_stages)
    if frozen_bn or (frozen_bn is None and pretrained):
        net = freeze_batch_norm_2d(net)  # timm's: keeps the ReLU our BatchNormAct2d layers carry
    return_layers = {f"s{s}": str(i) for i, s in enumerate(returned)}
    in_channels = [net.feature_info[s]["num_chs"] for s in returned]
    backbone = BackboneWithFPN(net, return_layers, in_channels, out_channels,
                               extra_blocks=extra_blocks if extra_blocks is not None else LastLevelMaxPool(),
                               norm_layer=fpn_norm_layer)
    backbone.feature_info = [net.feature_info[s] for s in returned]
    backbone.pretrained_cfg = dict(net.pretrained_cfg)
    return backbone


def feature_maps(backbone: nn.Module) -> list[tuple[str, int]]:
    """(name, stride in pixels) of each map a detection backbone returns, in order.

    Known without running the model for ``regnet_fpn_backbone`` results (stage maps "0", "1", ... at their
    ``feature_info`` reductions, then the extra levels of ``LastLevelMaxPool`` / ``LastLevelP6P7``, each at
    twice the stride before it). Other backbones or extra blocks are probed once on a zero 256 x 256
    image in eval mode (BN statistics untouched).
    """
    info = getattr(backbone, "feature_info", None)
    extra = getattr(getattr(backbone, "fpn", None), "extra_blocks", None)
    if info is not None and (extra is None or type(extra) in EXTRA_LEVEL_NAMES):
        maps = [(str(i), int(f["reduction"])) for i, f in enumerate(info)]
        for name in EXTRA_LEVEL_NAMES.get(type(extra), ()):
            maps.append((name, 2 * maps[-1][1]))
        return maps
    return _probe_feature_maps(backbone)


@torch.no_grad()
def _probe_feature_maps(backbone: nn.Module, size: int = 256) -> list[tuple[str, int]]:
    stem = getattr(getattr(backbone, "body", None), "stem", None)
    in_chans = getattr(stem, "in_chans", 3)
    was_training = backbone.training
    backbone.eval()
    try:
        param = next(backbone.parameters())
        out = backbone(torch.zeros(1, in_chans, size, size, dtype=param.dtype, device=param.device))
    finally:
        backbone.train(was_training)
    return [(name, round(size / t.shape[-1])) for name, t in out.items()]


def feature_map_names(backbone: nn.Module) -> list[str]:
    """Names of the maps a detection backbone returns ("0", "1", ..., "pool"), see ``feature_maps``."""
    return [name for name, _ in feature_maps(backbone)]


def default_anchor_generator(strides: Sequence[int], size_per_stride: int = RCNN_ANCHOR_SIZE_PER_STRIDE,
                             scales_per_octave: int = 1) -> AnchorGenerator:
    """Anchors for maps of the given strides: sizes ``size_per_stride * stride * 2^(k / scales_per_octave)``
    (k < scales_per_octave) pixels, aspect ratios 0.5, 1, 2.

    ``size_per_stride=8`` gives torchvision's Faster/Mask R-CNN anchors (32 ... 512 on strides 4 ... 64),
    ``4`` with 3 scales per octave its RetinaNet anchors ((32, 40, 50) ... on strides 8 ... 128).
    """
    sizes = tuple(tuple(int(size_per_stride * stride * 2 ** (k / scales_per_octave)) for k in range(scales_per_octave))
                  for stride in strides)
    return AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))


def _normalisation(backbone: BackboneWithFPN, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The detector's image mean / std: the backbone's ``pretrained_cfg`` statistics unless given."""
    cfg = getattr(backbone, "pretrained_cfg", {})
    in_chans = backbone.body.stem.in_chans
    out = {}
    for key, cfg_key in (("image_mean", "mean"), ("image_std", "std")):
        value = cfg.get(cfg_key)
        if key in kwargs or value is None:  # explicit arguments win (None: torchvision's ImageNet defaults)
            continue
        if len(value) != in_chans:
            raise ValueError(f"the backbone takes {in_chans} input channels but its pretrained_cfg {cfg_key} has "
                             f"{len(value)} values {tuple(value)}; pass image_mean and image_std with {in_chans} "
                             "values")
        out[key] = [float(v) for v in value]
    return out


def _detector(cls: type[nn.Module], model: str | ModelCfg | dict[str, Any] | AnyNet, num_classes: int,
              pretrained_backbone: bool | str | os.PathLike, *, returned_stages: Sequence[int] | None = None,
              trainable_stages: int | None = None, frozen_bn: bool | None = None, out_channels: int = 256,
              backbone_kwargs: dict[str, Any] | None = None, **detector_kwargs: Any) -> nn.Module:
    """``cls`` (a torchvision detector) on ``regnet_fpn_backbone``: the builders' arguments plus
    ``backbone_kwargs``; anchors, RoI pooling and normalisation sized to the backbone unless given."""
    retina = cls is RetinaNet
    if returned_stages is None:
        returned_stages = (2, 3, 4) if retina else (1, 2, 3, 4)
    extra_blocks = LastLevelP6P7(out_channels, out_channels) if retina else LastLevelMaxPool()
    backbone = regnet_fpn_backbone(model, pretrained_backbone, returned_stages=returned_stages,
                                   extra_blocks=extra_blocks, trainable_stages=trainable_stages, frozen_bn=frozen_bn,
                                   out_channels=out_channels, **(backbone_kwargs or {}))
    maps = feature_maps(backbone)
    strides, stage_maps = [s for _, s in maps], [n for n, _ in maps if n.isdigit()]
    parts = _normalisation(backbone, detector_kwargs)
    if retina:
        parts["anchor_generator"] = default_anchor_generator(strides, RETINANET_ANCHOR_SIZE_PER_STRIDE,
                                                             scales_per_octave=3)
    else:
        parts["rpn_anchor_generator"] = default_anchor_generator(strides, RCNN_ANCHOR_SIZE_PER_STRIDE)
        parts["box_roi_pool"] = MultiScaleRoIAlign(stage_maps, output_size=7, sampling_ratio=2)
    if cls is MaskRCNN:
        parts["mask_roi_pool"] = MultiScaleRoIAlign(stage_maps, output_size=14, sampling_ratio=2)
    return cls(backbone, num_classes=num_classes, **{**parts, **detector_kwargs})


def fasterrcnn_regnet_fpn(model: str | ModelCfg | dict[str, Any] | AnyNet = "regnetx_3.2gf", num_classes: int = 91,
                          pretrained_backbone: bool | str | os.PathLike = False, **kwargs: Any) -> FasterRCNN:
    """torchvision ``FasterRCNN`` (``num_classes`` incl. background) on a RegNet-FPN backbone.

    Keyword arguments: ``returned_stages`` (default 1..4), ``trainable_stages``, ``frozen_bn`` and
    ``out_channels`` as ``regnet_fpn_backbone``; ``backbone_kwargs``, its further options; the rest go to
    ``FasterRCNN`` (``min_size``, ``max_size``, ``box_score_thresh``, ``image_mean``, ``image_std``, ...).
    Anchors are 8 x each map's stride.
    """
    return _detector(FasterRCNN, model, num_classes, pretrained_backbone, **kwargs)


def maskrcnn_regnet_fpn(model: str | ModelCfg | dict[str, Any] | AnyNet = "regnetx_3.2gf", num_classes: int = 91,
                        pretrained_backbone: bool | str | os.PathLike = False, **kwargs: Any) -> MaskRCNN:
    """torchvision ``MaskRCNN`` on a RegNet-FPN backbone (arguments as ``fasterrcnn_regnet_fpn``)."""
    return _detector(MaskRCNN, model, num_classes, pretrained_backbone, **kwargs)


def retinanet_regnet_fpn(model: str | ModelCfg | dict[str, Any] | AnyNet = "regnetx_3.2gf", num_classes: int = 91,
                         pretrained_backbone: bool | str | os.PathLike = False, **kwargs: Any) -> RetinaNet:
    """torchvision ``RetinaNet`` on a RegNet-FPN backbone: stages s2..s4 (default ``returned_stages``) + P6/P7
    (from P5); anchors 4 x stride with 3 scales per octave; ``pretrained_cfg`` mean / std (arguments as
    ``fasterrcnn_regnet_fpn``)."""
    return _detector(RetinaNet, model, num_classes, pretrained_backbone, **kwargs)


__all__ = ["default_anchor_generator", "fasterrcnn_regnet_fpn", "feature_map_names", "feature_maps", "freeze_stages",
           "maskrcnn_regnet_fpn", "regnet_fpn_backbone", "retinanet_regnet_fpn"]
