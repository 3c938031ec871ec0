"""RegNet-FPN backbones: timm-equal features, freezing options, pretrained pass-through, errors."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import BatchNormAct2d
from timm.layers.norm_act import FrozenBatchNormAct2d
from torchvision.models.detection.backbone_utils import BackboneWithFPN

import regnet_zoo
from regnet_zoo.config import AnyNetCfg, StageCfg
from regnet_zoo.detection import feature_map_names, regnet_fpn_backbone
from regnet_zoo.weights import read_state_dict


@pytest.fixture(scope="module")
def timm_features(x200_weights):
    """timm's own features_only RegNetX-200MF (stages 1..4) with our weights."""
    ref = timm.create_model("regnetx_002", features_only=True, out_indices=(1, 2, 3, 4))
    state = read_state_dict(x200_weights)
    missing, unexpected = ref.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")},
                                              strict=False)
    assert not missing and not unexpected
    return ref.eval()


@pytest.mark.parametrize("frozen_bn", [True, False])
def test_features_equal_timm_features_only(timm_features, x200_weights, frozen_bn):
    backbone = regnet_fpn_backbone("regnetx_200mf", pretrained=x200_weights, frozen_bn=frozen_bn).eval()
    assert isinstance(backbone, BackboneWithFPN)
    x = torch.randn(2, 3, 128, 160)
    with torch.no_grad():
        ours = backbone.body(x)
        ref = timm_features(x)
    assert list(ours) == ["0", "1", "2", "3"]
    for a, b in zip(ours.values(), ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert [f["num_chs"] for f in backbone.feature_info] == timm_features.feature_info.channels()
    assert [f["reduction"] for f in backbone.feature_info] == timm_features.feature_info.reduction()


def test_pretrained_weights_reach_the_backbone(x200_weights):
    backbone = regnet_fpn_backbone("regnetx_200mf", pretrained=x200_weights)
    state = read_state_dict(x200_weights)
    body = backbone.body.state_dict()
    for key in ("stem.conv.weight", "s2.b1.conv2.conv.weight", "s4.b3.conv3.bn.running_var"):
        torch.testing.assert_close(body[key], state[key], rtol=0, atol=0)


def test_pretrained_defaults_freeze_bn_and_early_stages(x200_weights):
    backbone = regnet_fpn_backbone("regnetx_200mf", pretrained=x200_weights)  # torchvision: 3 trainable stages
    body = backbone.body
    assert not any(isinstance(m, BatchNormAct2d) for m in body.modules())
    assert sum(isinstance(m, FrozenBatchNormAct2d) for m in body.modules()) > 0
    trainable = {n.split(".")[0] for n, p in body.named_parameters() if p.requires_grad}
    frozen = {n.split(".")[0] for n, p in body.named_parameters() if not p.requires_grad}
    assert trainable == {"s2", "s3", "s4"} and frozen == {"stem", "s1"}
    before = {k: v.clone() for k, v in body.state_dict().items() if "running" in k}
    backbone.train()
    backbone(torch.randn(2, 3, 96, 96)).values()
    after = body.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # frozen statistics do not move


def test_from_scratch_trains_everything_with_batchnorm():
    backbone = regnet_fpn_backbone("regnetx_200mf")
    assert all(p.requires_grad for p in backbone.parameters())
    assert not any(isinstance(m, FrozenBatchNormAct2d) for m in backbone.modules())
    stem_bn = backbone.body.stem.bn
    before = stem_bn.running_mean.clone()
    backbone.train()(torch.randn(2, 3, 64, 64))
    assert not torch.equal(before, stem_bn.running_mean)


@pytest.mark.parametrize("trainable, expected", [(0, set()), (1, {"s4"}), (5, {"stem", "s1", "s2", "s3", "s4"})])
def test_trainable_stages(trainable, expected):
    backbone = regnet_fpn_backbone("regnetx_200mf", trainable_stages=trainable, frozen_bn=True)
    assert {n.split(".")[0] for n, p in backbone.body.named_parameters() if p.requires_grad} == expected
    assert all(p.requires_grad for p in backbone.fpn.parameters())


def test_chosen_stages_out_channels_and_strides():
    backbone = regnet_fpn_backbone("regnety_200mf", returned_stages=(2, 4), out_channels=64).eval()
    assert backbone.out_channels == 64
    widths = regnet_zoo.create("regnety_200mf").feature_info
    assert [b[0].in_channels for b in backbone.fpn.inner_blocks] == [widths[2]["num_chs"], widths[4]["num_chs"]]
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 128, 128))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "0": (1, 64, 16, 16), "1": (1, 64, 4, 4), "pool": (1, 64, 2, 2)}
    assert feature_map_names(backbone) == ["0", "1", "pool"]


def test_custom_config_backbone():
    cfg = AnyNetCfg(stages=(StageCfg(1, 16, 8, 1.0, 2), StageCfg(1, 32, 8, 1.0, 2), StageCfg(1, 48, 8, 1.0, 2)),
                    stem_width=16)
    backbone = regnet_fpn_backbone(cfg, returned_stages=(1, 2, 3), out_channels=32).eval()
    out = backbone(torch.randn(1, 3, 64, 64))
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(16, 16), (8, 8), (4, 4), (2, 2)]


@pytest.mark.parametrize("stages", [(0, 1), (2, 5), (3, 2), ()])
def test_bad_stages_are_rejected(stages):
    with pytest.raises(ValueError, match="returned_stages"):
        regnet_fpn_backbone("regnetx_200mf", returned_stages=stages)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="trainable_stages"):
        regnet_fpn_backbone("regnetx_200mf", trainable_stages=6)
    with pytest.raises(TypeError, match="features_only"):
        regnet_fpn_backbone("regnetx_200mf", features_only=True)
    with pytest.raises(regnet_zoo.UnknownModelError, match="regnetx_200mf"):
        regnet_fpn_backbone("regnetx_200m")
