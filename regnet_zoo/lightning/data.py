"""LightningDataModules: the embedded digits, ImageNet-layout folders, and any folder of classes, sharing one
loader policy (``ClassificationDataModule``); each exposes ``num_classes``, ``in_chans`` (linked to the model
by the CLI) and ``classes``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.transforms import v2

from regnet_zoo.lightning.errors import DataError
from regnet_zoo.lightning.transforms import AutoAugmentName, eval_transform, load_rgb_image, train_transform


# ---------------------------------------------------------------------------- datasets
class SampleDataset(Dataset):
    """(path, class index) samples -> (transformed image, class index)."""

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable | None = None):
        self.samples, self.transform = list(samples), transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        path, target = self.samples[index]
        img = load_rgb_image(path)
        return (self.transform(img) if self.transform is not None else img), target


class TensorImageDataset(Dataset):
    """In-memory (N, C, H, W) float images and (N,) labels, with an optional per-image transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable | None = None):
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index]
        return (self.transform(x) if self.transform is not None else x), self.labels[index]


def check_folder(path: str | os.PathLike, what: str = "data folder") -> str:
    """``path`` as a string; ``DataError`` if it does not exist or is not a folder."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise DataError(f"{what} {path!r} " + ("is not a folder" if os.path.exists(path) else "does not exist"))
    return path


def scan_class_folder(root: str | os.PathLike, what: str = "data folder",
                      images: bool = True) -> tuple[list[str], list[tuple[str, int]]]:
    """Classes (sorted sub-folder names) of ``root`` and, with ``images``, its sorted (path, class index) images;
    ``DataError`` when ``root`` is missing, not a folder, has no class sub-folders, or a class holds no images."""
    root = check_folder(root, what)
    try:
        classes = find_classes(root)[0]
    except FileNotFoundError as e:
        raise DataError(f"{what} {root!r} has no class sub-folders (expected {root}/<class>/<image>)") from e
    try:
        samples = make_dataset(root, {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS) if images else []
    except FileNotFoundError as e:
        raise DataError(f"{what} {root!r}: {e}") from e
    return classes, sorted(samples)


def list_images(root: str | os.PathLike) -> list[str]:
    """Sorted image files (by extension) under ``root``, recursively; ``DataError`` if none."""
    root = check_folder(root, "image folder")
    paths = sorted(str(p) for p in Path(root).rglob("*") if p.is_file() and p.name.lower().endswith(IMG_EXTENSIONS))
    if not paths:
        raise DataError(f"image folder {root!r} holds no image files ({', '.join(IMG_EXTENSIONS)})")
    return paths


def stratified_split(targets: Sequence[int], val_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class split: (train indices, val indices), both sorted. Each class with n >= 2 samples puts
    ``max(1, round(val_fraction * n))`` (at most n - 1) of them, chosen by a permutation seeded with ``seed``, in
    val; a class with one sample stays in train."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    targets = np.asarray(targets)
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(targets):
        idx = np.flatnonzero(targets == c)
        if len(idx) >= 2:
            val.append(rng.permutation(idx)[:min(len(idx) - 1, max(1, int(round(val_fraction * len(idx)))))])
    val_idx = np.sort(np.concatenate(val)) if val else np.zeros(0, dtype=np.int64)
    return np.setdiff1d(np.arange(len(targets)), val_idx), val_idx


# ---------------------------------------------------------------------------- loading
class EpochDataLoader(DataLoader):
    """``DataLoader`` whose epoch is seeded from (seed, ``sampler.epoch``, rank) when its first batch is drawn.

    Each epoch's order, augmentations, MixUp draws and DropPath masks then depend only on (seed, epoch,
    rank), so ``--ckpt_path last`` resumes exactly. It seeds the loader's generator (worker seeds follow)
    and this process's ``torch``, ``numpy`` and ``random``. Seeding waits for the first batch: on resume
    Lightning creates the iterator before it calls ``sampler.set_epoch``. Use a sampler with ``set_epoch``
    (a ``DistributedSampler``, which Lightning keeps under DDP); outside Lightning call
    ``loader.sampler.set_epoch(epoch)``.
    """

    def __init__(self, dataset: Dataset, *args: Any, seed: int = 0, rank: int = 0, **kwargs: Any):
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, *args, **kwargs)
        self.seed, self.rank = seed, rank

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # a generator: nothing runs until the first next(); a well-mixed 63-bit seed of (seed, epoch, rank)
        epoch = int(getattr(self.sampler, "epoch", 0))
        s = int(np.random.SeedSequence([self.seed, epoch, self.rank]).generate_state(1, np.uint64)[0]) >> 1
        if self.generator is not None:
            self.generator.manual_seed(s)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        yield from super().__iter__()


# ---------------------------------------------------------------------------- base
class ClassificationDataModule(L.LightningDataModule):
    """Shared loader policy; subclasses set ``classes`` and, in ``setup``, ``train_set``, ``val_set``, ``predict_set``.

    Args:
        batch_size: training images per device per step.
        val_batch_size: evaluation images per device (default: ``batch_size``).
        num_workers: loader worker processes per device.
        pin_memory: page-locked host memory for faster host-to-GPU copies.
        persistent_workers: keep workers alive between epochs (needs ``num_workers > 0``).
        seed: seed of the data order and augmentations (combined with the epoch and rank).
        drop_last: drop the last incomplete training batch (pycls does).
    """

    def __init__(self, batch_size: int = 128, val_batch_size: int | None = None, num_workers: int = 0,
                 pin_memory: bool = False, persistent_workers: bool = False, seed: int = 0, drop_last: bool = True):
        super().__init__()
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1):
            raise ValueError(f"batch sizes must be >= 1, got {batch_size}, {val_batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.seed, self.drop_last = seed, drop_last
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.predict_set: Dataset | None = None

    classes: list[str]
    in_chans: int = 3

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _loader_kwargs(self) -> dict[str, Any]:
        return dict(num_workers=self.num_workers, pin_memory=self.pin_memory,
                    persistent_workers=self.persistent_workers)

    def _require(self, split: str) -> Dataset:
        if getattr(self, f"{split}_set") is None:
            self.setup("fit" if split in ("train", "val") else split)
        dataset = getattr(self, f"{split}_set")
        if dataset is None:
            raise DataError(f"{type(self).__name__} has no {split} data")
        return dataset

    def train_dataloader(self) -> DataLoader:
        dataset = self._require("train")
        world, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer is not None else (1, 0)
        if len(dataset) < self.batch_size * world and self.drop_last:
            raise DataError(f"the training set has {len(dataset)} images, fewer than one global batch "
                            f"({self.batch_size} x {world} devices); lower data.batch_size")
        sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
        return EpochDataLoader(dataset, batch_size=self.batch_size, sampler=sampler, drop_last=self.drop_last,
                               seed=self.seed, rank=rank, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._require("val"), batch_size=self.val_batch_size, shuffle=False,
                          **self._loader_kwargs())

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        dataset = self.predict_set if self.predict_set is not None else self._require("val")
        return DataLoader(dataset, batch_size=self.val_batch_size, shuffle=False, **self._loader_kwargs())

    def data_config(self) -> dict[str, Any]:
        """Preprocessing facts for exported weights, in timm ``pretrained_cfg`` keys (input_size, mean, std,
        crop_pct, interpolation, label_names); here only the class names, subclasses add the rest."""
        return {"label_names": list(self.classes)}

    def state_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("classes")
        if saved is not None and list(saved) != list(self.classes):
            raise DataError(f"the checkpoint was trained on {len(saved)} classes {saved[:5]}... but "
                            f"{type(self).__name__} has {len(self.classes)} classes {list(self.classes)[:5]}...")


# ---------------------------------------------------------------------------- digits
class DigitsDataModule(ClassificationDataModule):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), no download needed.

    Images are scaled to [0, 1], upsampled bilinearly to ``image_size``, repeated to ``in_chans``
    channels and normalised with the training split's mean and std. The split is stratified and
    deterministic in ``split_seed`` (default 0): with ``val_fraction=0.2``, 1438 train / 359 val images.

    Args:
        image_size: side of the upsampled square images (pixels).
        batch_size: training images per device per step.
        val_fraction: fraction of each class held out for validation.
        seed: seed of the data order and augmentations.
        num_workers: loader workers (0: the data is in memory, workers only add overhead).
        in_chans: image channels (the digit is repeated on each).
        val_batch_size: evaluation batch size (default: ``batch_size``).
        augment: random affine jitter (+-10 degrees, 10% shift, 90-110% scale) of training images.
        split_seed: seed of the train/val split.
        pin_memory, persistent_workers, drop_last: as ``ClassificationDataModule``.
    """

    def __init__(self, image_size: int = 32, batch_size: int = 64, val_fraction: float = 0.2, seed: int = 0,
                 num_workers: int = 0, in_chans: int = 3, val_batch_size: int | None = None, augment: bool = False,
                 split_seed: int = 0, pin_memory: bool = False, persistent_workers: bool = False,
                 drop_last: bool = True):
        super().__init__(batch_size, val_batch_size, num_workers, pin_memory, persistent_workers, seed, drop_last)
        if image_size < 8:
            raise ValueError(f"image_size must be >= 8 (the digits are 8x8), got {image_size}")
        if in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {in_chans}")
        self.image_size, self.val_fraction, self.in_chans = image_size, val_fraction, in_chans
        self.augment, self.split_seed = augment, split_seed
        self.classes = [str(i) for i in range(10)]
        self.mean: float | None = None  # of the training split, set by setup
        self.std: float | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0  # (N, 1, 8, 8), [0, 1]
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        images = F.interpolate(images, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        train_idx, val_idx = stratified_split(digits.target, self.val_fraction, self.split_seed)
        train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
        self.mean, self.std = float(images[train_idx].mean()), float(images[train_idx].std())
        images = ((images - self.mean) / self.std).expand(-1, self.in_chans, -1, -1).contiguous()
        jitter = v2.RandomAffine(degrees=10, translate=(0.1, 0.1), scale=(0.9, 1.1)) if self.augment else None
        self.train_set = TensorImageDataset(images[train_idx], labels[train_idx], jitter)
        self.val_set = TensorImageDataset(images[val_idx], labels[val_idx])

    def data_config(self) -> dict[str, Any]:
        """Inputs are 8x8 digits in [0, 1] upsampled bilinearly to ``image_size`` and normalised (see class doc)."""
        self.setup("fit")
        return {"input_size": (self.in_chans, self.image_size, self.image_size), "mean": (self.mean,) * self.in_chans,
                "std": (self.std,) * self.in_chans, "crop_pct": 1.0, "interpolation": "bilinear",
                **super().data_config()}


# ---------------------------------------------------------------------------- folders
class _FolderDataModule(ClassificationDataModule):
    """Transform options shared by the folder DataModules (see ``transforms.train_transform``); classes
    are the sub-folders of ``class_root``."""

    def __init__(self, root: str, image_size: int, crop_pct: float, batch_size: int, val_batch_size: int | None,
                 num_workers: int, pin_memory: bool, persistent_workers: bool, seed: int, drop_last: bool,
                 train_scale: tuple[float, float], hflip: float, auto_augment: AutoAugmentName | None,
                 randaugment_magnitude: int, randaugment_num_ops: int, pca_std: float, mean: tuple[float, ...],
                 std: tuple[float, ...], predict_root: str | None, class_dir: str | None = None):
        super().__init__(batch_size, val_batch_size, num_workers, pin_memory, persistent_workers, seed, drop_last)
        self.root = os.fspath(root)
        self.class_root = os.path.join(self.root, class_dir) if class_dir else self.root
        self.image_size, self.crop_pct, self.predict_root = image_size, crop_pct, predict_root
        self.mean, self.std = tuple(mean), tuple(std)
        self.train_tf = train_transform(image_size, tuple(train_scale), hflip, auto_augment, randaugment_magnitude,
                                        randaugment_num_ops, pca_std, self.mean, self.std)
        self.eval_tf = eval_transform(image_size, crop_pct, self.mean, self.std)
        self._classes: list[str] | None = None

    @property
    def classes(self) -> list[str]:  # type: ignore[override]
        if self._classes is None:
            check_folder(self.root)
            what = "data folder" if self.class_root == self.root else "training folder"
            self._classes = scan_class_folder(self.class_root, what, images=False)[0]
        return self._classes

    def data_config(self) -> dict[str, Any]:
        return {"input_size": (3, self.image_size, self.image_size), "mean": self.mean, "std": self.std,
                "crop_pct": self.crop_pct, "interpolation": "bilinear", **super().data_config()}

    def _setup_predict(self, stage: str | None) -> bool:
        """For ``stage == "predict"``: the ``predict_root`` images; True when they are all ``predict`` needs."""
        if stage == "predict" and self.predict_root is not None and self.predict_set is None:
            self.predict_set = SampleDataset([(p, -1) for p in list_images(self.predict_root)], self.eval_tf)
        return stage == "predict" and self.predict_set is not None


class ImageFolderDataModule(_FolderDataModule):
    """ImageNet layout: ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*.JPEG``, the paper's transforms.

    Defaults are the paper code's (pycls): 224 training crops, evaluation at 256 resize + 224 centre
    crop, PCA lighting with std 0.1, per-device batch 128 (TRAIN.BATCH_SIZE 1024 over 8 GPUs), eval
    batch 100 (TEST.BATCH_SIZE 800 over 8 GPUs).

    Args:
        root: dataset folder holding ``train_dir`` and ``val_dir``.
        image_size: training crop and evaluation crop side (pixels).
        crop_pct: evaluation crop / resize ratio (224 / 256 = 0.875).
        train_scale: area range of the random resized crop.
        hflip: horizontal flip probability.
        auto_augment: None, ``"autoaugment"``, ``"randaugment"`` or ``"trivialaugment"`` (torchvision v2).
        randaugment_magnitude, randaugment_num_ops: RandAugment settings.
        pca_std: std of the PCA lighting noise (pycls TRAIN.PCA_STD; 0 disables).
        mean, std: normalisation (ImageNet RGB).
        predict_root: folder of images for ``predict`` (recursive); default: the val split.
        train_dir, val_dir: split sub-folder names.
        Other arguments: as ``ClassificationDataModule``.
    """

    def __init__(self, root: str, image_size: int = 224, crop_pct: float = 0.875, batch_size: int = 128,
                 val_batch_size: int | None = 100, num_workers: int = 8, pin_memory: bool = True,
                 persistent_workers: bool = False, seed: int = 0, drop_last: bool = True,
                 train_scale: tuple[float, float] = (0.08, 1.0), hflip: float = 0.5,
                 auto_augment: AutoAugmentName | None = None, randaugment_magnitude: int = 9,
                 randaugment_num_ops: int = 2, pca_std: float = 0.1,
                 mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN, std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
                 predict_root: str | None = None, train_dir: str = "train", val_dir: str = "val"):
        super().__init__(root, image_size, crop_pct, batch_size, val_batch_size, num_workers, pin_memory,
                         persistent_workers, seed, drop_last, train_scale, hflip, auto_augment, randaugment_magnitude,
                         randaugment_num_ops, pca_std, mean, std, predict_root, class_dir=train_dir)
        self.train_dir, self.val_dir = train_dir, val_dir

    def setup(self, stage: str | None = None) -> None:
        if self._setup_predict(stage):
            return
        check_folder(self.root)
        if self.val_set is None:
            val_root = os.path.join(self.root, self.val_dir)
            val_classes, val_samples = scan_class_folder(val_root, "validation folder")
            if val_classes != self.classes:
                missing = sorted(set(self.classes) - set(val_classes))
                extra = sorted(set(val_classes) - set(self.classes))
                raise DataError(f"{val_root!r} and {self.class_root!r} have different classes: "
                                f"missing in val {missing[:10]}, only in val {extra[:10]}")
            self.val_set = SampleDataset(val_samples, self.eval_tf)
        if stage in (None, "fit") and self.train_set is None:
            self.train_set = SampleDataset(scan_class_folder(self.class_root, "training folder")[1], self.train_tf)


class FinetuneDataModule(_FolderDataModule):
    """Any folder of class sub-folders (``root/<class>/<image>``), split deterministically into train/val.

    The split is stratified per class (``val_fraction`` of each class, seeded by ``split_seed``) and
    independent of file-system listing order. Transforms as ``ImageFolderDataModule``.

    Args:
        root: folder with one sub-folder of images per class.
        val_fraction: fraction of each class held out for validation.
        split_seed: seed of the split.
        Other arguments: as ``ImageFolderDataModule``.
    """

    def __init__(self, root: str, image_size: int = 224, crop_pct: float = 0.875, val_fraction: float = 0.1,
                 split_seed: int = 0, batch_size: int = 32, val_batch_size: int | None = None, num_workers: int = 4,
                 pin_memory: bool = True, persistent_workers: bool = False, seed: int = 0, drop_last: bool = True,
                 train_scale: tuple[float, float] = (0.08, 1.0), hflip: float = 0.5,
                 auto_augment: AutoAugmentName | None = None, randaugment_magnitude: int = 9,
                 randaugment_num_ops: int = 2, pca_std: float = 0.1,
                 mean: tuple[float, ...] = IMAGENET_DEFAULT_MEAN, std: tuple[float, ...] = IMAGENET_DEFAULT_STD,
                 predict_root: str | None = None):
        super().__init__(root, image_size, crop_pct, batch_size, val_batch_size, num_workers, pin_memory,
                         persistent_workers, seed, drop_last, train_scale, hflip, auto_augment, randaugment_magnitude,
                         randaugment_num_ops, pca_std, mean, std, predict_root)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.val_fraction, self.split_seed = val_fraction, split_seed

    def setup(self, stage: str | None = None) -> None:
        if self._setup_predict(stage) or self.train_set is not None:
            return
        self._classes, samples = scan_class_folder(self.root)
        train_idx, val_idx = stratified_split([t for _, t in samples], self.val_fraction, self.split_seed)
        if len(val_idx) == 0:
            raise DataError(f"data folder {self.root!r} has too few images for a validation split "
                            "(every class has a single image); add images")
        self.train_set = SampleDataset([samples[i] for i in train_idx], self.train_tf)
        self.val_set = SampleDataset([samples[i] for i in val_idx], self.eval_tf)
