"""DataModules: digits split, folder layouts, image modes, clear errors, epoch-seeded loading, transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DistributedSampler

from regnet_zoo.lightning import DataError, DigitsDataModule, FinetuneDataModule, ImageFolderDataModule
from regnet_zoo.lightning.data import EpochDataLoader, stratified_split
from regnet_zoo.lightning.transforms import IMAGENET_PCA_EIGVAL, IMAGENET_PCA_EIGVEC, Lighting, eval_transform


def _write_images(folder, n, size=(40, 30), mode="RGB", seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(arr).convert(mode)
        img.save(folder / f"img{i:03d}.png")


# ---------------------------------------------------------------------------- digits
def test_digits_split_is_stratified_and_deterministic():
    dm = DigitsDataModule()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set)) == (1438, 359)
    assert dm.num_classes == 10 and dm.in_chans == 3
    x, y = dm.train_set[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.long
    counts = np.bincount(dm.val_set.labels.numpy(), minlength=10)
    all_counts = np.bincount(np.concatenate([dm.train_set.labels.numpy(), dm.val_set.labels.numpy()]))
    assert counts.tolist() == [int(round(0.2 * c)) for c in all_counts]
    assert abs(dm.train_set.images.mean().item()) < 1e-4 and dm.train_set.images.std().item() == pytest.approx(1, 1e-3)
    again = DigitsDataModule()
    again.setup("fit")
    assert torch.equal(again.val_set.images, dm.val_set.images)
    other = DigitsDataModule(split_seed=1, in_chans=1, image_size=16)
    other.setup("fit")
    assert other.val_set.images.shape[1:] == (1, 16, 16)
    assert not torch.equal(other.val_set.labels, dm.val_set.labels)


def test_stratified_split_by_hand():
    targets = [0] * 10 + [1] * 5 + [2]
    tr, va = stratified_split(targets, 0.2, seed=3)
    assert len(va) == 2 + 1 and sorted(np.asarray(targets)[va].tolist()) == [0, 0, 1]
    assert sorted(tr.tolist() + va.tolist()) == list(range(16)) and 15 in tr  # the single class-2 image trains
    assert np.array_equal(stratified_split(targets, 0.2, seed=3)[1], va)


# ---------------------------------------------------------------------------- loading
def test_epoch_loader_is_a_function_of_seed_epoch_rank():
    data = torch.arange(40)
    ds = torch.utils.data.TensorDataset(data, torch.zeros(40))

    def order(epoch=0, rank=0, world=1, seed=0):
        loader = EpochDataLoader(ds, batch_size=4, sampler=DistributedSampler(ds, world, rank, seed=seed), seed=seed,
                                 rank=rank)
        it = iter(loader)
        torch.rand(5)  # RNG use between iter() and the first batch (Lightning's hooks) does not matter
        loader.sampler.set_epoch(epoch)  # Lightning sets the epoch after creating the iterator on resume
        batches = [b[0] for b in it]
        return torch.cat(batches).tolist(), torch.rand(1).item()  # order, and the process RNG after seeding

    a, ra = order()
    b, rb = order()
    assert a == b and ra == rb and sorted(a) == list(range(40)) and a != list(range(40))
    c, rc = order(epoch=1)
    assert c != a and rc != ra
    shards = [order(rank=r, world=2)[0] for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(40)) and not set(shards[0]) & set(shards[1])


# ---------------------------------------------------------------------------- folders
def test_image_folder_layout_modes_and_transforms(tmp_path):
    for split, n in (("train", 4), ("val", 2)):
        _write_images(tmp_path / split / "cat", n, mode="L")         # grayscale
        _write_images(tmp_path / split / "dog", n, mode="RGBA")      # alpha
        _write_images(tmp_path / split / "eel", n, mode="P")         # palette
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")  # ignored by extension
    dm = ImageFolderDataModule(str(tmp_path), image_size=32, batch_size=2, val_batch_size=3, num_workers=0,
                               pin_memory=False)
    assert dm.classes == ["cat", "dog", "eel"] and dm.num_classes == 3
    dm.setup("fit")
    assert len(dm.train_set) == 12 and len(dm.val_set) == 6
    x, y = dm.train_set[0]
    assert x.shape == (3, 32, 32) and y == 0
    xv, yv = dm.val_set[5]
    assert xv.shape == (3, 32, 32) and yv == 2
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (2, 3, 32, 32)


def test_folder_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderDataModule(str(tmp_path / "missing")).setup("fit")
    (tmp_path / "train" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a").mkdir(parents=True)
    _write_images(tmp_path / "val" / "a", 1)
    with pytest.raises(DataError, match=r"training folder .*train.*\ba\b"):
        ImageFolderDataModule(str(tmp_path), num_workers=0).setup("fit")  # empty class folder
    _write_images(tmp_path / "train" / "a", 2)
    _write_images(tmp_path / "train" / "b", 2)
    with pytest.raises(DataError, match=r"different classes: missing in val \['b'\]"):
        ImageFolderDataModule(str(tmp_path), num_workers=0).setup("fit")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        FinetuneDataModule(str(empty)).setup("fit")


def test_unreadable_and_unsupported_images_name_the_file(tmp_path):
    _write_images(tmp_path / "a", 3)
    _write_images(tmp_path / "b", 3)
    bad = tmp_path / "a" / "img001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16)).save(tmp_path / "b" / "img002.png")  # 16-bit
    dm = FinetuneDataModule(str(tmp_path), image_size=16, val_fraction=0.34, num_workers=0)
    dm.setup("fit")
    samples = {p: i for i, (p, _) in enumerate(dm.train_set.samples)}
    samples_val = {p: i for i, (p, _) in enumerate(dm.val_set.samples)}

    def get(path):
        ds, idx = (dm.train_set, samples[path]) if path in samples else (dm.val_set, samples_val[path])
        return ds[idx]

    with pytest.raises(DataError, match=r"cannot read image .*img001\.png"):
        get(str(bad))
    with pytest.raises(DataError, match=r"img002\.png' has mode 'I;16'"):
        get(str(tmp_path / "b" / "img002.png"))


def test_finetune_split_is_deterministic_and_stratified(tmp_path):
    _write_images(tmp_path / "x", 10)
    _write_images(tmp_path / "y", 20, seed=1)
    dm = FinetuneDataModule(str(tmp_path), image_size=16, val_fraction=0.2, num_workers=0)
    dm.setup("fit")
    val = [(p.split("/")[-2], t) for p, t in dm.val_set.samples]
    assert sorted(val).count(("x", 0)) == 2 and sorted(val).count(("y", 1)) == 4
    assert not {p for p, _ in dm.train_set.samples} & {p for p, _ in dm.val_set.samples}
    again = FinetuneDataModule(str(tmp_path), image_size=16, val_fraction=0.2, num_workers=0)
    again.setup("fit")
    assert again.val_set.samples == dm.val_set.samples
    assert dm.state_dict() == {"classes": ["x", "y"]}
    with pytest.raises(DataError, match="trained on 3 classes"):
        dm.load_state_dict({"classes": ["x", "y", "z"]})


# ---------------------------------------------------------------------------- transforms
def test_lighting_is_pycls_pca_noise():
    t = Lighting(0.1)
    torch.manual_seed(5)
    params = t.make_params([])
    torch.manual_seed(5)
    alpha = (torch.randn(3) * 0.1).tolist()
    # pycls: rgb[i] = sum_j eig_vec[i][j] * alpha[j] * eig_val[j]
    rgb = [sum(IMAGENET_PCA_EIGVEC[i][j] * alpha[j] * IMAGENET_PCA_EIGVAL[j] for j in range(3)) for i in range(3)]
    assert params["rgb"].tolist() == pytest.approx(rgb, rel=1e-6)
    img = torch.rand(3, 4, 5)
    out = t.transform(img, params)
    assert torch.allclose(out - img, torch.tensor(rgb).view(3, 1, 1).expand(3, 4, 5), atol=1e-7)
    with pytest.raises(TypeError, match="float RGB"):
        t.transform(torch.zeros(3, 2, 2, dtype=torch.uint8), params)


def test_eval_transform_resizes_then_centre_crops():
    img = Image.new("RGB", (400, 300), (255, 128, 0))
    out = eval_transform(224, crop_pct=0.875)(img)
    assert out.shape == (3, 224, 224)
    expected = (torch.tensor([1.0, 128 / 255, 0.0]) - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225])
    assert torch.allclose(out[:, 112, 112], expected, atol=1e-5)
    marker = Image.new("RGB", (512, 256), (0, 0, 0))  # short side 256 stays; crop keeps the central 224 columns
    marker.paste((255, 255, 255), (144, 0, 145, 256))  # a white column 112 pixels left of the centre
    crop = eval_transform(224, crop_pct=0.875)(marker)
    assert crop[0, 100].argmax().item() == 0 and crop[0, 100, 0] > 1.0
