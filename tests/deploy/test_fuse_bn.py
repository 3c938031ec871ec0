"""BN folding: exact math on one conv, equal outputs on RegNets, nothing left unfolded."""

from __future__ import annotations

import pytest
import torch
from timm.layers import BatchNormAct2d
from torch import nn

import regnet_zoo
from regnet_zoo.detection import regnet_fpn_backbone
from regnet_zoo.inference import BNFusionError, batchnorm_layers, fuse_bn, to_channels_last


def test_fold_formula_by_hand():
    torch.manual_seed(0)
    conv, bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4, eps=1e-3)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1), bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-1, 1)
    fused = fuse_bn(nn.Sequential(conv, bn))
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    torch.testing.assert_close(fused[0].weight, conv.weight * scale[:, None, None, None])
    torch.testing.assert_close(fused[0].bias, (conv.bias - bn.running_mean) * scale + bn.bias)
    assert isinstance(fused[1], nn.Identity)


@pytest.mark.parametrize("name", ["regnetx_200mf", "regnety_200mf"])
def test_fused_regnet_equals_eval_model(name, bn_randomizer):
    torch.manual_seed(0)
    model = bn_randomizer(regnet_zoo.create(name)).eval()
    n_convs = sum(isinstance(m, nn.Conv2d) for m in model.modules())
    fused = fuse_bn(model)
    assert batchnorm_layers(fused) == []
    assert len(batchnorm_layers(model)) > 0  # the original is untouched
    convs = [m for m in fused.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == n_convs and all(c.bias is not None for c in convs)
    assert isinstance(fused.s1.b1.conv1.bn, nn.ReLU) and isinstance(fused.s1.b1.conv3.bn, nn.Identity)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        ref = model(x)
        assert ref.abs().max() > 0.1
        torch.testing.assert_close(fused(x), ref, rtol=0, atol=1e-5)
        cl = to_channels_last(fuse_bn(model))
        torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), ref, rtol=0, atol=1e-5)


def test_fuse_frozen_bn_detection_backbone(x200_weights):
    backbone = regnet_fpn_backbone("regnetx_200mf", pretrained=x200_weights).eval()  # FrozenBatchNormAct2d
    fused = fuse_bn(backbone)
    assert batchnorm_layers(fused) == []
    x = torch.randn(1, 3, 128, 128)
    with torch.no_grad():
        for a, b in zip(fused(x).values(), backbone(x).values()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # FPN sums: rounding grows with magnitude


def test_inplace_and_train_mode():
    model = regnet_zoo.create("regnetx_200mf").train()
    fused = fuse_bn(model, inplace=True)
    assert fused is model and not model.training
    assert not any(isinstance(m, BatchNormAct2d) for m in model.modules())


def test_unfoldable_batchnorm_is_reported():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    with pytest.raises(BNFusionError, match="0"):
        fuse_bn(model)
    partial = fuse_bn(model, strict=False)
    assert batchnorm_layers(partial) == ["0"]
