"""Faster R-CNN / Mask R-CNN / RetinaNet on a RegNet-FPN: real train steps and eval on generated scenes."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.models.detection import faster_rcnn as tv_faster_rcnn
from torchvision.models.detection import retinanet as tv_retinanet
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

import regnet_zoo
from regnet_zoo.detection import (
    fasterrcnn_regnet_fpn,
    feature_map_names,
    feature_maps,
    maskrcnn_regnet_fpn,
    regnet_fpn_backbone,
    retinanet_regnet_fpn,
)

SIZE = 128
SMALL_RCNN = dict(min_size=SIZE, max_size=SIZE, rpn_pre_nms_top_n_train=200, rpn_post_nms_top_n_train=100,
                  rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50, rpn_batch_size_per_image=64,
                  box_batch_size_per_image=64, box_detections_per_img=20)
SMALL_RETINA = dict(min_size=SIZE, max_size=SIZE, topk_candidates=100, detections_per_img=20)


def scenes(n: int = 2, seed: int = 0) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """Noise images with 1-2 bright rectangles each; boxes (x1, y1, x2, y2), labels 1/2, binary masks."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        img = 0.2 * torch.rand(3, SIZE, SIZE, generator=g)
        boxes, labels, masks = [], [], []
        for k in range(int(torch.randint(1, 3, (1,), generator=g))):
            x1, y1 = (int(v) for v in torch.randint(4, SIZE // 2, (2,), generator=g))
            w, h = (int(v) for v in torch.randint(24, SIZE // 2 - 4, (2,), generator=g))
            mask = torch.zeros(SIZE, SIZE, dtype=torch.uint8)
            mask[y1:y1 + h, x1:x1 + w] = 1
            img[k % 3, y1:y1 + h, x1:x1 + w] = 0.9
            boxes.append([x1, y1, x1 + w, y1 + h])
            labels.append(1 + k % 2)
            masks.append(mask)
        images.append(img)
        targets.append(dict(boxes=torch.tensor(boxes, dtype=torch.float32), labels=torch.tensor(labels),
                            masks=torch.stack(masks)))
    return images, targets


def train_losses(model: torch.nn.Module, steps: int, lr: float) -> list[float]:
    torch.manual_seed(0)
    images, targets = scenes()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    model.train()
    losses = []
    for _ in range(steps):
        loss_dict = model(images, targets)
        loss = sum(loss_dict.values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 10.0)  # from-scratch BN + mask head spike without it
        opt.step()
        losses.append(float(loss.detach()))
    return losses


BUILDERS = {
    "faster": lambda: fasterrcnn_regnet_fpn("regnetx_200mf", num_classes=3, out_channels=64, **SMALL_RCNN),
    "mask": lambda: maskrcnn_regnet_fpn("regnetx_200mf", num_classes=3, out_channels=64, **SMALL_RCNN),
    "retina": lambda: retinanet_regnet_fpn("regnetx_200mf", num_classes=3, out_channels=64, **SMALL_RETINA),
}
# (learning rate, required final/first loss): RetinaNet's focal loss starts low and falls slowly
SCHEDULE = {"faster": (0.01, 0.8), "mask": (0.01, 0.8), "retina": (0.1, 0.95)}


@pytest.mark.slow
@pytest.mark.parametrize("kind", list(BUILDERS))
def test_train_steps_decrease_loss_then_eval(kind):
    torch.manual_seed(0)
    model = BUILDERS[kind]()
    lr, ratio = SCHEDULE[kind]
    losses = train_losses(model, steps=6, lr=lr)
    assert all(math.isfinite(v) for v in losses), losses
    assert losses[-1] < ratio * losses[0], losses

    model.eval()
    images, _ = scenes(n=2, seed=1)
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for det in out:
        k = det["boxes"].shape[0]
        assert det["boxes"].shape == (k, 4) and det["scores"].shape == (k,) and det["labels"].shape == (k,)
        assert k <= 20
        if k:
            assert det["boxes"].min() >= 0 and det["boxes"].max() <= SIZE
            assert set(det["labels"].tolist()) <= {1, 2}
        if kind == "mask":
            assert det["masks"].shape == (k, 1, SIZE, SIZE)


def test_default_anchors_equal_torchvision_defaults():
    # torchvision's ResNet-FPN detectors use the same levels: R-CNN strides 4..64, RetinaNet 8..128
    faster = BUILDERS["faster"]()
    assert faster.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2", "3"]
    assert faster.rpn.anchor_generator.sizes == tv_faster_rcnn._default_anchorgen().sizes  # 32 ... 512
    assert faster.rpn.anchor_generator.aspect_ratios == tv_faster_rcnn._default_anchorgen().aspect_ratios
    retina = BUILDERS["retina"]()
    assert retina.anchor_generator.sizes == tv_retinanet._default_anchorgen().sizes  # (32, 40, 50) ... on P3..P7
    assert [b.num_anchors_per_location()[0] for b in (faster.rpn.anchor_generator, retina.anchor_generator)] == [3, 9]


def test_anchor_sizes_follow_the_stride():
    mask = maskrcnn_regnet_fpn("regnetx_200mf", num_classes=3, returned_stages=(2, 3, 4), **SMALL_RCNN)
    assert mask.roi_heads.mask_roi_pool.featmap_names == ["0", "1", "2"]
    # maps at strides 8, 16, 32 + "pool" at 64: anchors 8 x stride, as torchvision's 32 px at stride 4
    assert mask.rpn.anchor_generator.sizes == ((64,), (128,), (256,), (512,))
    dilated = fasterrcnn_regnet_fpn("regnetx_200mf", num_classes=3, backbone_kwargs=dict(output_stride=16),
                                    **SMALL_RCNN)
    assert feature_maps(dilated.backbone) == [("0", 4), ("1", 8), ("2", 16), ("3", 16), ("pool", 32)]
    assert dilated.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (128,), (256,))
    retina = retinanet_regnet_fpn("regnetx_200mf", num_classes=3, returned_stages=(3, 4), **SMALL_RETINA)
    assert feature_maps(retina.backbone) == [("0", 16), ("1", 32), ("p6", 64), ("p7", 128)]
    assert retina.anchor_generator.sizes == ((64, 80, 101), (128, 161, 203), (256, 322, 406), (512, 645, 812))


def test_feature_maps_are_known_without_a_forward_pass(monkeypatch):
    backbone = regnet_fpn_backbone("regnety_200mf", returned_stages=(1, 3), out_channels=32)

    def no_forward(*args, **kwargs):
        raise AssertionError("feature_maps ran the backbone")

    monkeypatch.setattr(backbone, "forward", no_forward)
    assert feature_maps(backbone) == [("0", 4), ("1", 16), ("pool", 32)]
    assert feature_map_names(backbone) == ["0", "1", "pool"]
    monkeypatch.undo()
    with torch.no_grad():  # what the backbone really returns on a 128 x 96 image
        out = backbone.eval()(torch.zeros(1, 3, 128, 96))
    assert [(k, 128 // v.shape[-2], 96 // v.shape[-1]) for k, v in out.items()] == [
        (name, stride, stride) for name, stride in feature_maps(backbone)]


def test_custom_extra_block_is_probed():
    class Subsample(LastLevelMaxPool):  # not one of torchvision's own blocks: its levels are learned by running it
        pass

    backbone = regnet_fpn_backbone("regnetx_200mf", returned_stages=(2, 4), out_channels=32,
                                   extra_blocks=Subsample())
    before = {k: v.clone() for k, v in backbone.state_dict().items() if "running" in k}
    backbone.train()
    assert feature_maps(backbone) == [("0", 8), ("1", 32), ("pool", 64)]
    assert backbone.training and all(torch.equal(v, backbone.state_dict()[k]) for k, v in before.items())


def test_normalisation_follows_the_backbone_pretrained_cfg():
    net = regnet_zoo.create("regnetx_200mf")
    # e.g. fine-tuned on data with other statistics (RegNetClassifier.export_model writes them here)
    net.pretrained_cfg = {**net.pretrained_cfg, "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    faster = fasterrcnn_regnet_fpn(net, num_classes=3, **SMALL_RCNN)
    assert faster.transform.image_mean == [0.5, 0.5, 0.5] and faster.transform.image_std == [0.25, 0.25, 0.25]
    image = torch.rand(3, SIZE, SIZE)
    normalised = faster.transform.normalize(image)
    torch.testing.assert_close(normalised, (image - 0.5) / 0.25)
    retina = retinanet_regnet_fpn("regnetx_200mf", num_classes=3, image_std=[1.0, 1.0, 1.0], **SMALL_RETINA)
    assert retina.transform.image_mean == [0.485, 0.456, 0.406]  # the zoo model's (ImageNet) statistics
    assert retina.transform.image_std == [1.0, 1.0, 1.0]  # an explicit argument wins
    gray = regnet_zoo.create("regnetx_200mf", in_chans=1)  # its pretrained_cfg follows in_chans (as timm's)
    gray_rcnn = maskrcnn_regnet_fpn(gray, num_classes=3, **SMALL_RCNN)
    assert gray_rcnn.transform.image_mean == pytest.approx([(0.485 + 0.456 + 0.406) / 3])
    assert gray_rcnn.transform.image_std == pytest.approx([(0.229 + 0.224 + 0.225) / 3])
    gray.pretrained_cfg = {**gray.pretrained_cfg, "mean": (0.485, 0.456, 0.406)}  # e.g. edited by hand
    with pytest.raises(ValueError, match="1 input channels .* pass image_mean and image_std"):
        maskrcnn_regnet_fpn(gray, num_classes=3)
    one = maskrcnn_regnet_fpn(regnet_zoo.create("regnetx_200mf", in_chans=1), num_classes=3, image_mean=[0.5],
                              image_std=[0.2], **SMALL_RCNN)
    assert one.transform.image_mean == [0.5]


def test_a_built_model_takes_no_create_options():
    net = regnet_zoo.create("regnetx_200mf")
    with pytest.raises(TypeError, match="built model"):
        regnet_fpn_backbone(net, pretrained=True)
    with pytest.raises(TypeError, match="built model"):
        regnet_fpn_backbone(net, output_stride=16)


def test_pretrained_backbone_is_passed_through(x200_weights):
    from regnet_zoo.weights import read_state_dict

    model = fasterrcnn_regnet_fpn("regnetx_200mf", num_classes=3, pretrained_backbone=x200_weights, **SMALL_RCNN)
    state = read_state_dict(x200_weights)
    torch.testing.assert_close(model.backbone.body.s3.b1.conv1.conv.weight, state["s3.b1.conv1.conv.weight"])
    assert not model.backbone.body.s1.b1.conv1.conv.weight.requires_grad  # pretrained: stem + s1 frozen
