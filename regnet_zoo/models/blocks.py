"""AnyNet building blocks: stem, residual bottleneck (X/Y) and linear (Z) block, stage.

Module and parameter names equal timm's RegNet (``stem.conv``, ``s1.b1.conv1.conv``,
``s1.b1.se.fc1``, ``s1.b1.downsample.conv``, ...), so timm state dicts load with ``strict=True``.
Built from timm layers (``ConvNormAct``, ``SEModule``, ``DropPath``). Each module reports its
own complexity through the pure functions of ``regnet_zoo.counting``.
"""

from __future__ import annotations

import torch
from timm.layers import ConvNormAct, DropPath, SEModule, get_act_layer
from timm.models import checkpoint_seq
from torch import nn

from regnet_zoo.counting import Complexity, block_complexity, needs_projection, stem_complexity


@torch.fx.wrap  # an FX leaf: traced models (symbolic_trace, create_feature_extractor) keep the check
def check_input(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """``x`` if it is an (N, in_chans, H, W) batch, else ValueError."""
    if x.dim() != 4 or x.shape[1] != in_chans:
        raise ValueError(
            "RegNet expects input images of shape (N, " + str(in_chans) + ", H, W), got "
            + str(list(x.shape)) + "; for C-channel images create the model with in_chans=C"
        )
    return x


class Stem(ConvNormAct):
    """3x3 stride-2 conv, BN, activation: (N, in_chans, H, W) -> (N, width, ceil(H/2), ceil(W/2))."""

    def __init__(self, in_chans: int, width: int, act_layer: type[nn.Module] = nn.ReLU):
        super().__init__(in_chans, width, kernel_size=3, stride=2, act_layer=act_layer)
        self.in_chans = in_chans
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ConvNormAct.forward without anti-aliasing; super() is not scriptable
        return self.bn(self.conv(check_input(x, self.in_chans)))

    def complexity(self, h: int) -> Complexity:
        return stem_complexity(self.in_chans, self.width, h)


class Bottleneck(nn.Module):
    """Residual bottleneck block: 1x1 -> 3x3 group conv (stride) [-> SE] -> 1x1, plus shortcut.

    BN follows each conv, the activation the first two (and SE's squeeze). SE (Y block) squeezes
    to ``round(se_ratio * in_chs)`` channels. ``block="x"`` (RegNetX/Y): the shortcut is a 1x1 conv + BN
    when the shape changes, else identity, and the activation follows the sum. ``block="z"``
    (RegNetZ, pycls' ``ResBottleneckLinearBlock``): linear output (no activation), identity shortcut
    when the shape is unchanged and no shortcut otherwise. (N, in_chs, H, W) -> (N, out_chs, H', W'),
    H' = (H - 1) // stride + 1.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        dilation: tuple[int, int] = (1, 1),
        bot_mul: float = 1.0,
        group_width: int = 1,
        se_ratio: float = 0.0,
        drop_path_rate: float = 0.0,
        block: str = "x",
        activation: str = "relu",
    ):
        super().__init__()
        self.in_chs, self.out_chs, self.stride = in_chs, out_chs, stride
        self.bot_mul, self.group_width, self.se_ratio, self.block = bot_mul, group_width, se_ratio, block
        act_layer = get_act_layer(activation)
        w_b = int(round(out_chs * bot_mul))
        w_se = int(round(in_chs * se_ratio))
        self.conv1 = ConvNormAct(in_chs, w_b, kernel_size=1, act_layer=act_layer)
        self.conv2 = ConvNormAct(w_b, w_b, kernel_size=3, stride=stride, dilation=dilation[0],
                                 groups=w_b // group_width, act_layer=act_layer)
        self.se = SEModule(w_b, rd_channels=w_se, act_layer=act_layer) if w_se > 0 else nn.Identity()
        self.conv3 = ConvNormAct(w_b, out_chs, kernel_size=1, apply_act=False)
        shape_changes = bool(needs_projection(in_chs, out_chs, stride)) or dilation[0] != dilation[1]
        self.has_projection = shape_changes and block == "x"
        self.has_skip = not shape_changes or block == "x"
        if self.has_projection:
            self.downsample: nn.Module = ConvNormAct(in_chs, out_chs, kernel_size=1, stride=stride,
                                                     apply_act=False)
        else:
            self.downsample = nn.Identity()
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate > 0 else nn.Identity()
        self.act3 = act_layer(inplace=True) if block == "x" else nn.Identity()

    def zero_init_last(self) -> None:
        """Zero the last BN's gamma so the block starts as its shortcut (blocks without one keep it)."""
        if self.has_skip:
            nn.init.zeros_(self.conv3.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = self.downsample(x)
        x = self.conv3(self.se(self.conv2(self.conv1(x))))
        if self.has_skip:
            x = self.drop_path(x) + shortcut
        return self.act3(x)

    def complexity(self, h: int) -> Complexity:
        return block_complexity(self.in_chs, self.out_chs, h, self.stride, self.bot_mul,
                                self.group_width, self.se_ratio, self.has_projection, self.block)


class Stage(nn.Module):
    """``depth`` blocks ``b1..bd`` of equal output width; the first one strides."""

    def __init__(
        self,
        depth: int,
        in_chs: int,
        out_chs: int,
        stride: int,
        dilation: int,
        first_dilation: int,
        drop_path_rates: list[float],
        **block_kwargs,
    ):
        super().__init__()
        self.grad_checkpointing = False
        for i in range(depth):
            self.add_module(f"b{i + 1}", Bottleneck(
                in_chs if i == 0 else out_chs, out_chs, stride=stride if i == 0 else 1,
                dilation=(first_dilation if i == 0 else dilation, dilation),
                drop_path_rate=drop_path_rates[i], **block_kwargs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self.children(), x)
        for block in self.children():
            x = block(x)
        return x

    def complexity(self, h: int) -> Complexity:
        total = Complexity(h=h)
        for block in self.children():
            total = total + block.complexity(total.h)
        return total
