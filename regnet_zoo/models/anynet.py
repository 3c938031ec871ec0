"""The AnyNet/RegNet model with timm's model API.

``AnyNet(cfg)`` builds any ``AnyNetCfg`` or ``RegNetCfg`` (X/Y or Z blocks; the optional head conv is
``final_conv``, as in timm's RegNet). The API follows timm's models:
``num_classes``, ``in_chans``, ``global_pool``, ``drop_rate``, ``drop_path_rate``, ``output_stride``,
``feature_info``, ``forward_features``, ``forward_head(pre_logits=...)``, ``forward_intermediates``,
``reset_classifier``, ``get_classifier``, ``set_grad_checkpointing``, ``group_matcher`` and
``pretrained_cfg``. ``features_only`` wrapping happens in ``regnet_zoo.create``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import ClassifierHead, ConvNormAct, calculate_drop_path_rates, get_act_layer
from torch import nn

from regnet_zoo.config import AnyNetCfg, ModelCfg
from regnet_zoo.counting import Complexity, head_complexity
from regnet_zoo.models.blocks import Bottleneck, Stage, Stem
from regnet_zoo.models.features import feature_take_indices


def default_pretrained_cfg(**overrides: Any) -> dict[str, Any]:
    """Preprocessing and layout facts of a model, in timm's ``pretrained_cfg`` format.

    The defaults are the paper code's evaluation: resize to 256, centre crop 224 (crop_pct
    0.875), bilinear, ImageNet mean/std, RGB.
    """
    cfg: dict[str, Any] = {
        "num_classes": 1000, "input_size": (3, 224, 224), "pool_size": (7, 7), "crop_pct": 0.875,
        "crop_mode": "center", "interpolation": "bilinear", "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD, "first_conv": "stem.conv", "classifier": "head.fc",
    }
    cfg.update(overrides)
    return cfg


def pretrained_cfg_for_channels(cfg: dict[str, Any], in_chans: int) -> dict[str, Any]:
    """``cfg`` with input_size, mean and std for ``in_chans`` input channels.

    Matches how timm adapts 3-channel weights (``adapt_input_conv``): one channel sums the RGB
    kernels, so it takes the channel-average mean/std; N > 3 channels repeat RGB cyclically.
    """
    cfg = dict(cfg)
    if "input_size" in cfg:
        cfg["input_size"] = (in_chans, *tuple(cfg["input_size"])[1:])
    for key in ("mean", "std"):
        v = cfg.get(key)
        if v is not None and len(v) != in_chans:
            v = tuple(v)
            cfg[key] = (sum(v) / len(v),) if in_chans == 1 else tuple(v[i % len(v)] for i in range(in_chans))
    return cfg


class AnyNet(nn.Module):
    """AnyNet (and RegNet) classifier: stem -> stages s1..sN -> [final_conv] -> pool -> linear.

    Args:
        cfg: architecture (``AnyNetCfg``, or ``RegNetCfg`` which is generated into one).
        in_chans: input image channels.
        num_classes: classifier outputs; 0 gives a pooled-feature model (no linear layer).
        global_pool: timm pool type ('avg', 'max', 'avgmax', 'catavgmax', '' for none).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth; per-block rates rise linearly from 0 to this value.
        zero_init_last: zero the last BN gamma of each block (residual branch starts at 0).
        output_stride: None (no dilation) or 8, 16, 32: stages that would reduce the resolution
            beyond it dilate instead of striding (for dense prediction).
    """

    def __init__(
        self,
        cfg: ModelCfg,
        in_chans: int = 3,
        num_classes: int = 1000,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
        output_stride: int | None = None,
    ):
        super().__init__()
        if not isinstance(in_chans, int) or in_chans < 1:
            raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
        if not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"num_classes must be an integer >= 0, got {num_classes!r}")
        if output_stride not in (None, 8, 16, 32):
            raise ValueError(f"output_stride must be None, 8, 16 or 32, got {output_stride!r}")
        if not 0.0 <= drop_path_rate < 1.0 or not 0.0 <= drop_rate < 1.0:
            raise ValueError(f"drop_rate and drop_path_rate must be in [0, 1), got {drop_rate}, {drop_path_rate}")
        self.cfg = cfg
        self.arch: AnyNetCfg = cfg.to_anynet()
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.output_stride = output_stride
        self.pretrained_cfg = pretrained_cfg_for_channels(default_pretrained_cfg(num_classes=num_classes), in_chans)

        arch = self.arch
        act_layer = get_act_layer(arch.activation)
        self.stem = Stem(in_chans, arch.stem_width, act_layer)  # pycls' stem uses the model's activation too
        self.feature_info = [dict(num_chs=arch.stem_width, reduction=2, module="stem")]
        dprs = calculate_drop_path_rates(drop_path_rate, arch.depths, stagewise=True)
        prev_w, net_stride, dilation = arch.stem_width, 2, 1
        self.stage_names: list[str] = []
        for i, (s, dpr) in enumerate(zip(arch.stages, dprs)):
            stride, first_dilation = s.stride, dilation
            if output_stride is not None and net_stride * stride > output_stride:
                dilation *= stride
                stride = 1
            else:
                net_stride *= stride
            name = f"s{i + 1}"
            self.add_module(name, Stage(
                s.depth, prev_w, s.width, stride, dilation, first_dilation, dpr,
                bot_mul=s.bot_mul, group_width=s.group_width, se_ratio=arch.se_ratio, block=arch.block,
                activation=arch.activation))
            self.stage_names.append(name)
            prev_w = s.width
            self.feature_info.append(dict(num_chs=prev_w, reduction=net_stride, module=name))
        # pycls' head conv (HEAD_W): 1x1 conv + BN + act before the pool; timm's RegNet calls it final_conv
        self.final_conv = (ConvNormAct(prev_w, arch.head_width, kernel_size=1, act_layer=act_layer)
                           if arch.head_width else nn.Identity())
        self.num_features = self.head_hidden_size = arch.head_width or prev_w
        self.head = ClassifierHead(self.num_features, num_classes, pool_type=global_pool, drop_rate=drop_rate)
        self.init_weights(zero_init_last)

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def init_weights(self, zero_init_last: bool = True) -> None:
        """The paper code's init: He-normal (fan-out) convs, BN (1, 0), linear N(0, 0.01)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    m.zero_init_last()

    # ------------------------------------------------------------------ timm API
    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^s(\d+)" if coarse else r"^s(\d+)\.b(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for name in self.stage_names:
            getattr(self, name).grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.head.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier (newly initialised) with ``num_classes`` outputs."""
        self.num_classes = num_classes
        self.head.reset(num_classes, pool_type=global_pool)
        if isinstance(self.head.fc, nn.Linear):
            nn.init.normal_(self.head.fc.weight, 0.0, 0.01)
            nn.init.zeros_(self.head.fc.bias)
        self.pretrained_cfg = {**self.pretrained_cfg, "num_classes": num_classes}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, num_features, H / 32, W / 32) (for output_stride 32)."""
        x = self.stem(x)
        for name, module in self.named_children():  # not getattr(self, name): keeps torch.jit.script working
            if name in self.stage_names:
                x = module(x)
        return self.final_conv(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool (+ dropout) + classifier; ``pre_logits`` returns the pooled (N, num_features)."""
        return self.head(x, pre_logits=True) if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) images -> (N, num_classes) logits."""
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Features of the stem and stages picked by ``indices`` (timm semantics)."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = feature_take_indices(len(self.stage_names) + 1, indices)
        intermediates = []
        x = self.stem(x)
        if 0 in take:
            intermediates.append(x)
        names = self.stage_names[:max_index] if stop_early else self.stage_names
        for i, name in enumerate(names, start=1):
            x = getattr(self, name)(x)
            if i in take:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        if len(names) == len(self.stage_names):
            x = self.final_conv(x)
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last taken index (and the head; the head conv with the head, the
        norm or any stage, as timm's RegNet)."""
        take, max_index = feature_take_indices(len(self.stage_names) + 1, indices)
        for name in self.stage_names[max_index:]:
            setattr(self, name, nn.Identity())
        prune_end = isinstance(self.final_conv, ConvNormAct) and (
            max_index < len(self.stage_names) or prune_norm or prune_head)
        if prune_end:
            self.final_conv = nn.Identity()
            self.num_features = self.head_hidden_size = self.feature_info[max_index]["num_chs"]
        if prune_head or prune_end:
            self.reset_classifier(0, "")
        return take

    # ------------------------------------------------------------------ complexity
    def complexity(self, resolution: int = 224) -> dict[str, int]:
        """Flops (multiply-adds), params, acts on a square input, summed module by module."""
        total = self.stem.complexity(resolution)
        for name in self.stage_names:
            stage = getattr(self, name)
            if not isinstance(stage, nn.Identity):  # pruned by prune_intermediate_layers
                total = total + stage.complexity(total.h)
        if isinstance(self.final_conv, ConvNormAct):
            conv = self.final_conv.conv
            total = total + head_complexity(conv.in_channels, 0, conv.out_channels, total.h)
        fc = self.get_classifier()
        if isinstance(fc, nn.Linear):  # in_features differs from num_features for e.g. 'catavgmax' pooling
            total = total + head_complexity(fc.in_features, fc.out_features)
        return Complexity.as_dict(total)
