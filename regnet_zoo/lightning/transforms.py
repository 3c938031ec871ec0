"""Image loading and the paper code's train/eval transforms, on torchvision.transforms.v2.

Train (pycls ``datasets/imagenet.py``): Inception-style random resized crop (area 8-100%, aspect
3/4-4/3), horizontal flip, optional AutoAugment/RandAugment, AlexNet-style PCA colour lighting
(``alphastd`` 0.1 with ImageNet's eigenvalues/vectors), mean/std normalisation. Eval: resize the
short side to ``image_size / crop_pct`` (256 for 224) and centre-crop ``image_size``.
"""

from __future__ import annotations

import os
from typing import Any, Literal

import torch
from PIL import Image, UnidentifiedImageError
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision.transforms import InterpolationMode, v2

from regnet_zoo.lightning.errors import DataError

# PCA of ImageNet's RGB pixels (in [0, 1]), as pycls (from fb.resnet.torch): eigenvalues and
# eigenvectors (columns), RGB order.
IMAGENET_PCA_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGVEC = ((-0.5675, 0.7192, 0.4009), (-0.5808, -0.0045, -0.8140), (-0.5836, -0.6948, 0.4203))
AutoAugmentName = Literal["autoaugment", "randaugment", "trivialaugment"]
# PIL modes that ``convert("RGB")`` maps faithfully (grayscale, palette, alpha, CMYK, YCbCr, LAB, HSV).
_CONVERTIBLE_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def load_rgb_image(path: str | os.PathLike) -> Image.Image:
    """Read an image file as 8-bit RGB (grayscale, palette, RGBA and CMYK converted); ``DataError`` naming the file
    for unreadable/truncated files and modes without a faithful 8-bit RGB conversion (16/32-bit int or float)."""
    try:
        with open(path, "rb") as f:
            img = Image.open(f)
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image {os.fspath(path)!r}: {e}") from e
    if img.mode not in _CONVERTIBLE_MODES:
        raise DataError(f"image {os.fspath(path)!r} has mode {img.mode!r}, which has no faithful 8-bit RGB "
                        f"conversion; convert it to 8-bit RGB or grayscale (supported: {sorted(_CONVERTIBLE_MODES)})")
    if img.mode in ("P", "PA") and "transparency" in img.info:
        img = img.convert("RGBA")
    return img if img.mode == "RGB" else img.convert("RGB")


class Lighting(v2.Transform):
    """AlexNet-style PCA colour noise (pycls ``transforms.lighting``) on float RGB images in [0, 1], ``alpha ~
    N(0, alphastd)`` per image."""

    def __init__(self, alphastd: float = 0.1, eigval: tuple[float, ...] = IMAGENET_PCA_EIGVAL,
                 eigvec: tuple[tuple[float, ...], ...] = IMAGENET_PCA_EIGVEC):
        super().__init__()
        self.alphastd = alphastd
        self.eigval = torch.tensor(eigval, dtype=torch.float32)
        self.eigvec = torch.tensor(eigvec, dtype=torch.float32)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        alpha = torch.randn(3) * self.alphastd
        return {"rgb": self.eigvec @ (alpha * self.eigval)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, torch.Tensor):
            return inpt
        if not inpt.is_floating_point() or inpt.shape[-3] != 3:
            raise TypeError(f"Lighting expects float RGB images (..., 3, H, W) in [0, 1], got {inpt.dtype} "
                            f"{tuple(inpt.shape)}; put it after ToDtype(torch.float32, scale=True)")
        return inpt + params["rgb"].to(inpt).view(3, 1, 1)


def auto_augment(name: AutoAugmentName | None, magnitude: int = 9, num_ops: int = 2) -> list[v2.Transform]:
    """torchvision's AutoAugment (ImageNet policy), RandAugment(num_ops, magnitude) or TrivialAugmentWide."""
    make = {"autoaugment": lambda: v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
            "randaugment": lambda: v2.RandAugment(num_ops=num_ops, magnitude=magnitude),
            "trivialaugment": v2.TrivialAugmentWide}
    if name is not None and name not in make:
        raise ValueError(f"auto_augment must be None or one of {sorted(make)}, got {name!r}")
    return [make[name]()] if name is not None else []


def train_transform(image_size: int = 224, scale: tuple[float, float] = (0.08, 1.0), hflip: float = 0.5,
                    augment: AutoAugmentName | None = None, randaugment_magnitude: int = 9,
                    randaugment_num_ops: int = 2, pca_std: float = 0.1,
                    mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
                    std: tuple[float, ...] = IMAGENET_DEFAULT_STD) -> v2.Compose:
    """PIL image -> (3, image_size, image_size) float tensor, the paper's training pipeline."""
    ops: list[Any] = [v2.ToImage(), v2.RandomResizedCrop(image_size, scale=scale, ratio=(3 / 4, 4 / 3),
                                                          interpolation=InterpolationMode.BILINEAR, antialias=True)]
    ops += [v2.RandomHorizontalFlip(hflip)] if hflip > 0 else []
    ops += [*auto_augment(augment, randaugment_magnitude, randaugment_num_ops), v2.ToDtype(torch.float32, scale=True)]
    ops += [Lighting(pca_std)] if pca_std > 0 else []
    return v2.Compose([*ops, v2.Normalize(mean, std)])


def eval_transform(image_size: int = 224, crop_pct: float = 0.875, mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN,
                   std: tuple[float, ...] = IMAGENET_DEFAULT_STD) -> v2.Compose:
    """PIL image -> (3, image_size, image_size): resize short side to image_size / crop_pct, centre crop."""
    if not 0 < crop_pct <= 1:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    resize = int(round(image_size / crop_pct))
    return v2.Compose([v2.ToImage(), v2.Resize(resize, interpolation=InterpolationMode.BILINEAR, antialias=True),
                       v2.CenterCrop(image_size), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
