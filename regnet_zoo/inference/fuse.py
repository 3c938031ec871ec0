"""Fold eval-mode BatchNorm into the preceding convolution (``torch.nn.utils.fusion.fuse_conv_bn_weights``);
timm's ``BatchNormAct2d`` (BN + ReLU in one module) is replaced by its activation.
"""

from __future__ import annotations

import copy

from timm.layers import BatchNormAct2d
from timm.layers.norm_act import FrozenBatchNormAct2d
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.ops import FrozenBatchNorm2d

BATCHNORM_TYPES = (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d, FrozenBatchNormAct2d)


class BNFusionError(RuntimeError):
    """BatchNorm layers remained after fusion (a BN not directly after a conv)."""


def batchnorm_layers(model: nn.Module) -> list[str]:
    """Qualified names of all BatchNorm layers (trainable or frozen) in ``model``."""
    return [name for name, m in model.named_modules() if isinstance(m, BATCHNORM_TYPES)]


def _after_bn(bn: nn.Module) -> nn.Module:
    """What must still run after a folded BN: the activation (and dropout) of a BN+act layer."""
    if isinstance(bn, (BatchNormAct2d, FrozenBatchNormAct2d)):
        parts = [m for m in (bn.drop, bn.act) if not isinstance(m, nn.Identity)]
        return nn.Sequential(*parts) if len(parts) > 1 else parts[0] if parts else nn.Identity()
    return nn.Identity()


def _fold(conv: nn.Conv2d, bn: nn.Module) -> tuple[nn.Conv2d, nn.Module]:
    if conv.out_channels != bn.running_mean.numel():
        raise BNFusionError(f"conv with {conv.out_channels} output channels is followed by BN of "
                            f"{bn.running_mean.numel()} channels")
    fused = copy.deepcopy(conv).eval()  # frozen BN keeps its weight and bias as buffers; plain BN may have none
    fused.weight, fused.bias = fuse_conv_bn_weights(fused.weight, fused.bias, bn.running_mean, bn.running_var, bn.eps,
                                                    getattr(bn, "weight", None), getattr(bn, "bias", None))
    return fused, _after_bn(bn)


def _fuse_children(module: nn.Module) -> None:
    # timm-style modules: conv + bn attributes run in that order (ConvNormAct, ConvBnAct, ...)
    conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
    if isinstance(conv, nn.Conv2d) and isinstance(bn, BATCHNORM_TYPES):
        module.conv, module.bn = _fold(conv, bn)
    # nn.Sequential: conv directly followed by bn (torchvision's Conv2dNormActivation, ...)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            if isinstance(module._modules[a], nn.Conv2d) and isinstance(module._modules[b], BATCHNORM_TYPES):
                module._modules[a], module._modules[b] = _fold(module._modules[a], module._modules[b])
    for child in module.children():
        _fuse_children(child)


def fuse_bn(model: nn.Module, inplace: bool = False, strict: bool = True) -> nn.Module:
    """Fold every BatchNorm into the conv before it; returns the model in eval mode, equal to ``model.eval()``
    up to float rounding.

    Covers modules holding ``conv`` + ``bn`` (timm's ``ConvNormAct``, all of our model) and ``nn.Sequential``
    conv -> BN pairs. ``inplace``: fold into ``model`` itself, not a copy; ``strict``: ``BNFusionError`` naming
    the BN layers left.
    """
    fused = model if inplace else copy.deepcopy(model)
    fused.eval()
    _fuse_children(fused)
    left = batchnorm_layers(fused)
    if strict and left:
        raise BNFusionError(f"{len(left)} BatchNorm layer(s) not directly after a conv could not be folded: "
                            f"{', '.join(left[:5])}{' ...' if len(left) > 5 else ''}")
    return fused
