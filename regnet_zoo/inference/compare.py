"""Accuracy of a low-precision model: top-1 on labelled data and agreement with the fp32 model."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torchmetrics.classification import MulticlassAccuracy

Model = Callable[[torch.Tensor], torch.Tensor]


def top1_accuracy(model: Model, batches: Iterable[Any], num_classes: int) -> float:
    """Top-1 accuracy (0-1, micro) of ``model`` over ``(images, targets)`` batches (torchmetrics)."""
    metric = MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro")
    with torch.no_grad():
        for x, y in batches:
            metric.update(model(x).float(), y)
    return float(metric.compute())


def compare_outputs(reference: Model, candidate: Model, batches: Iterable[Any]) -> dict[str, float]:
    """How far ``candidate``'s logits are from ``reference``'s on the images of ``batches``.

    Returns ``top1_agreement`` (fraction of images with the same arg-max), ``max_abs_error`` (largest
    |logit difference|), ``max_rel_error`` (``max_abs_error`` / the largest |reference logit|) and
    ``images``. Batches are image tensors or ``(images, targets)`` pairs.
    """
    agree = n = 0
    max_abs = max_ref = 0.0
    with torch.no_grad():
        for batch in batches:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            ref, got = reference(x).float(), candidate(x).float()
            if ref.shape != got.shape:
                raise ValueError(f"output shapes differ: reference {tuple(ref.shape)}, candidate {tuple(got.shape)}")
            max_abs = max(max_abs, float((got - ref).abs().max()))
            max_ref = max(max_ref, float(ref.abs().max()))
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
            n += len(x)
    if n == 0:
        raise ValueError("no images to compare")
    return {"top1_agreement": agree / n, "max_abs_error": max_abs, "max_rel_error": max_abs / max(max_ref, 1e-12),
            "images": n}
