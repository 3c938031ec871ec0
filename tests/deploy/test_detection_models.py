"""Faster R-CNN / Mask R-CNN / RetinaNet on a RegNet-FPN: real train steps and eval on generated scenes."""

from __future__ import annotations

import math

import pytest
import torch

from regnet_zoo.detection import fasterrcnn_regnet_fpn, maskrcnn_regnet_fpn, retinanet_regnet_fpn

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


def test_detectors_use_all_backbone_levels():
    faster = BUILDERS["faster"]()
    assert faster.roi_heads.box_roi_pool.featmap_names == ["0", "1", "2", "3"]
    assert faster.rpn.anchor_generator.sizes == ((32,), (64,), (128,), (256,), (512,))  # torchvision's
    retina = BUILDERS["retina"]()
    assert len(retina.anchor_generator.sizes) == 5  # s2..s4 + P6 + P7
    assert retina.anchor_generator.sizes[0] == (32, 40, 50)  # torchvision RetinaNet: 2^(k/3) scales
    mask = maskrcnn_regnet_fpn("regnetx_200mf", num_classes=3, returned_stages=(2, 3, 4), **SMALL_RCNN)
    assert mask.roi_heads.mask_roi_pool.featmap_names == ["0", "1", "2"]
    assert len(mask.rpn.anchor_generator.sizes) == 4


def test_pretrained_backbone_is_passed_through(x200_weights):
    from regnet_zoo.weights import read_state_dict

    model = fasterrcnn_regnet_fpn("regnetx_200mf", num_classes=3, pretrained_backbone=x200_weights, **SMALL_RCNN)
    state = read_state_dict(x200_weights)
    torch.testing.assert_close(model.backbone.body.s3.b1.conv1.conv.weight, state["s3.b1.conv1.conv.weight"])
    assert not model.backbone.body.s1.b1.conv1.conv.weight.requires_grad  # pretrained: stem + s1 frozen
