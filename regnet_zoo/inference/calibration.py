"""Calibration images for post-training quantization: a few hundred preprocessed images from any source.

Sources (``calibration_batches``): a tensor ``(N, C, H, W)`` of preprocessed images; an iterable of batches
(a ``DataLoader``) of tensors or ``(images, targets)`` pairs; a LightningDataModule (its *training* split:
the validation split stays for measuring accuracy); ``"digits"``, the demo data at the model's input size;
an image folder (recursive, a seeded random subset) in the model's eval transform (timm ``create_transform``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

DIGITS = "digits"


class CalibrationError(ValueError):
    """A calibration source that is empty, unreadable, or yields something other than image batches."""


def calibration_batches(source: Any, model: nn.Module | None = None, *, num_images: int = 300,
                        batch_size: int = 32, seed: int = 0) -> list[torch.Tensor]:
    """Up to ``num_images`` float32 NCHW images from ``source`` (see the module doc), in batches.

    ``model`` gives the preprocessing of folders and ``"digits"`` and the channel count; ``batch_size`` applies
    to folders and digits; ``seed`` picks a folder's subset. ``CalibrationError`` naming the source when it
    yields no images, an image cannot be read, or batches are not float (N, C, H, W) with the model's channels.
    """
    if num_images < 1 or batch_size < 1:
        raise ValueError(f"num_images and batch_size must be >= 1, got {num_images}, {batch_size}")
    what = _describe(source)
    if isinstance(source, torch.Tensor):
        batches: Iterable[Any] = source.split(batch_size)
    elif isinstance(source, (str, os.PathLike)) and os.fspath(source) == DIGITS:
        batches = _digits_loader(model, batch_size)
    elif isinstance(source, (str, os.PathLike)):
        batches = _folder_batches(os.fspath(source), model, num_images, batch_size, seed)
    elif hasattr(source, "train_dataloader"):
        if hasattr(source, "setup"):
            source.setup("fit")
        batches = source.train_dataloader()
    elif isinstance(source, Iterable):
        batches = source
    else:
        raise CalibrationError(f"calibration source {what} is not a tensor, data loader, DataModule, image folder "
                               f"or {DIGITS!r}")
    out, count = [], 0
    in_chans = getattr(model, "in_chans", None)
    for i, batch in enumerate(batches):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise CalibrationError(f"calibration source {what}: batch {i} is {shape}, not a float (N, C, H, W) "
                                   "image tensor (or an (images, targets) pair)")
        if in_chans is not None and x.shape[1] != in_chans:
            raise CalibrationError(f"calibration source {what}: batch {i} has {x.shape[1]} channels but the model "
                                   f"takes {in_chans}")
        if not torch.isfinite(x).all():
            raise CalibrationError(f"calibration source {what}: batch {i} holds NaN or infinite values")
        x = x[:num_images - count].detach().float().cpu().contiguous()
        out.append(x)
        count += len(x)
        if count >= num_images:
            break
    if count == 0:
        raise CalibrationError(f"calibration source {what} yielded no images")
    return out


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return repr(os.fspath(source))
    if isinstance(source, torch.Tensor):
        return f"tensor {tuple(source.shape)}"
    return type(source).__name__


def _require_train_extra(purpose: str) -> Any:
    try:
        from regnet_zoo.lightning import data
    except ImportError as err:
        raise CalibrationError(f"{purpose} needs the training extra ({err}); install it with: "
                               "pip install 'regnet-zoo[train]'") from err
    return data


def _digits_loader(model: nn.Module | None, batch_size: int) -> Iterable[Any]:
    """The digits training split at the model's input size (as ``recipes/demo_digits.yaml`` trains it)."""
    data = _require_train_extra("calibrating on the digits")
    cfg = getattr(model, "pretrained_cfg", None) or {}
    in_chans, size = (cfg.get("input_size") or (getattr(model, "in_chans", 3), 32, 32))[:2]
    dm = data.DigitsDataModule(image_size=int(size), in_chans=int(in_chans), batch_size=batch_size,
                               val_batch_size=batch_size)
    dm.setup("fit")
    return torch.utils.data.DataLoader(dm.train_set, batch_size=batch_size, shuffle=False)


def _folder_batches(root: str, model: nn.Module | None, num_images: int, batch_size: int,
                    seed: int) -> Iterable[torch.Tensor]:
    """Batches of a seeded random subset of the images under ``root``, in the model's eval preprocessing."""
    from timm.data import create_transform, resolve_model_data_config

    data = _require_train_extra("calibrating on an image folder")
    try:
        paths = data.list_images(root)
    except data.DataError as err:
        raise CalibrationError(f"calibration folder: {err}") from err
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[:num_images]
    transform = create_transform(**(resolve_model_data_config(model) if model is not None else {}),
                                 is_training=False)
    chosen = [paths[i] for i in order.tolist()]
    for start in range(0, len(chosen), batch_size):
        images = []
        for path in chosen[start:start + batch_size]:
            try:
                images.append(transform(data.load_rgb_image(path)))
            except data.DataError as err:
                raise CalibrationError(f"calibration folder {root!r}: {err}; remove or fix the file") from err
        yield torch.stack(images)
