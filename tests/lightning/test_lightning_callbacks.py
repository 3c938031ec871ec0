"""Precise BN against hand-computed batch statistics; atomic checkpoint writes."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from torch import nn

from regnet_zoo.lightning import DigitsDataModule, RegNetClassifier
from regnet_zoo.lightning.callbacks import PreciseBN, precise_bn_stats
from regnet_zoo.lightning.checkpoint_io import AtomicCheckpointIO


def _manual_bn_stats(model: nn.Module, batches: list[torch.Tensor]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per BN: mean over batches of the batch mean and of the unbiased batch variance of its input."""
    model = copy.deepcopy(model).train()
    seen: dict[str, list] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.setdefault(name, []).append(inp[0]))
             for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for x in batches:
            model(x)
    for h in hooks:
        h.remove()
    return {name: (torch.stack([t.mean((0, 2, 3)) for t in ts]).mean(0),
                   torch.stack([t.var((0, 2, 3), unbiased=True) for t in ts]).mean(0)) for name, ts in seen.items()}


def test_precise_bn_stats_average_batch_statistics(tiny_cfg):
    torch.manual_seed(0)
    model = RegNetClassifier(tiny_cfg, num_classes=10).model
    batches = [torch.randn(8, 3, 16, 16) * (i + 1) + i for i in range(4)]
    expected = _manual_bn_stats(model, batches[:3])
    momenta = {n: m.momentum for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    model.eval()
    assert precise_bn_stats([model], iter(batches), num_batches=3) == 3
    assert not model.training  # modes restored
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.allclose(m.running_mean, expected[name][0], rtol=1e-5, atol=1e-6), name
            assert torch.allclose(m.running_var, expected[name][1], rtol=1e-5, atol=1e-6), name
            assert m.momentum == momenta[name]
    precise_bn_stats([model], iter(batches), num_batches=3, all_reduce_mean=lambda t: t * 0.5)  # e.g. DDP mean
    name, bn = next((n, m) for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.allclose(bn.running_mean, expected[name][0] * 0.5, rtol=1e-5, atol=1e-6)


def test_precise_bn_callback_before_validation(tiny_cfg, trainer_kwargs):
    """After fit, BN statistics are those of the final weights on the first 3 training batches of the epoch."""
    dm = DigitsDataModule(image_size=16, batch_size=16)
    model = RegNetClassifier(tiny_cfg, num_classes=10, schedule_epochs=1, ema=True, ema_decay=0.5)
    cb = PreciseBN(num_batches=3)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=4, limit_val_batches=1, callbacks=[cb],
                        enable_checkpointing=False, **trainer_kwargs)
    trainer.fit(model, dm)
    assert cb.last_num_batches == 3
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(0)
    batches = [x for x, _ in [b for _, b in zip(range(3), loader)]]
    for net in (model.model, model.ema.module):  # the EMA's statistics are recomputed too
        expected = _manual_bn_stats(net, batches)
        for name, m in net.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                assert torch.allclose(m.running_mean, expected[name][0], rtol=1e-4, atol=1e-5), name
                assert torch.allclose(m.running_var, expected[name][1], rtol=1e-4, atol=1e-5), name


class _Explodes:
    def __reduce__(self):
        raise RuntimeError("serialisation failed half-way")


def test_atomic_checkpoint_io(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "ckpts" / "last.ckpt"
    io.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    with pytest.raises(RuntimeError, match="half-way"):
        io.save_checkpoint({"epoch": 2, "big": torch.zeros(1000), "bad": _Explodes()}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1  # the previous checkpoint is intact
    stale = path.parent / ".last.ckpt.deadbeef.tmp"  # left by a writer killed with SIGKILL
    stale.write_bytes(b"partial")
    io.save_checkpoint({"epoch": 3}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 3
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]
