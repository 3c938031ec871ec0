"""Precise BN against hand-computed batch statistics; atomic checkpoint writes."""

from __future__ import annotations

import copy
import threading

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


def _assert_bn_stats(model: nn.Module, expected: dict, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.allclose(m.running_mean, expected[name][0], rtol=rtol, atol=atol), name
            assert torch.allclose(m.running_var, expected[name][1], rtol=rtol, atol=atol), name


def test_precise_bn_turns_off_drop_path_and_dropout(tiny_cfg):
    """Stats equal those of the same weights without DropPath/dropout; those layers see eval mode."""
    torch.manual_seed(0)
    model = RegNetClassifier(tiny_cfg, num_classes=10, drop_path_rate=0.5, drop_rate=0.5).model
    plain = RegNetClassifier(tiny_cfg, num_classes=10).model  # same architecture, no stochastic layers
    plain.load_state_dict(model.state_dict())
    batches = [torch.randn(8, 3, 16, 16) + i for i in range(3)]
    expected = _manual_bn_stats(plain, batches)
    stochastic = [m for m in model.modules() if type(m).__name__ in ("DropPath", "Dropout")]
    assert {type(m).__name__ for m in stochastic} == {"DropPath", "Dropout"}
    modes: dict[str, set] = {"stochastic": set(), "bn": set()}
    hooks = [m.register_forward_pre_hook(lambda mod, inp: modes["stochastic"].add(mod.training)) for m in stochastic]
    hooks += [m.register_forward_pre_hook(lambda mod, inp: modes["bn"].add(mod.training))
              for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    model.train()
    assert precise_bn_stats([model], iter(batches), num_batches=3) == 3
    for h in hooks:
        h.remove()
    assert modes == {"stochastic": {False}, "bn": {True}}
    assert all(m.training for m in model.modules())  # modes restored
    _assert_bn_stats(model, expected)


def _run_ranks(jobs: list[tuple[nn.Module, list[torch.Tensor]]], num_batches: int) -> list[int]:
    """precise_bn_stats in one thread per simulated process, with a barrier all-reduce (mean) as DDP's.

    A process that skipped the reduction would leave the others waiting: the barrier times out and fails.
    """
    barrier = threading.Barrier(len(jobs), timeout=30)
    slots: list[torch.Tensor | None] = [None] * len(jobs)
    used: list[int | None] = [None] * len(jobs)
    errors: list[BaseException] = []

    def work(rank: int, model: nn.Module, batches: list[torch.Tensor]) -> None:
        def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
            slots[rank] = t.clone()
            barrier.wait()
            out = torch.stack(slots).mean(0)
            barrier.wait()
            return out

        try:
            used[rank] = precise_bn_stats([model], iter(batches), num_batches, all_reduce_mean)
        except BaseException as e:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=work, args=(r, m, b)) for r, (m, b) in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return used


def test_precise_bn_across_processes_averages_all_batches_and_never_skips_the_reduce(tiny_cfg):
    torch.manual_seed(0)
    model = RegNetClassifier(tiny_cfg, num_classes=10).model
    batches = [torch.randn(8, 3, 16, 16) * (i + 1) + i for i in range(4)]
    expected = _manual_bn_stats(model, batches)  # the average over all 4 batches
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    assert _run_ranks([(a, batches[:3]), (b, batches[3:])], num_batches=3) == [3, 1]  # weighted by batches
    _assert_bn_stats(a, expected)
    _assert_bn_stats(b, expected)
    # one process gets no batch (e.g. a short shard): it still joins the reduction and gets the others' stats
    empty, full = copy.deepcopy(model), copy.deepcopy(model)
    assert _run_ranks([(empty, []), (full, batches)], num_batches=4) == [0, 4]
    _assert_bn_stats(empty, expected)
    _assert_bn_stats(full, expected)
    # no batch anywhere: statistics unchanged
    before = copy.deepcopy(model.state_dict())
    assert _run_ranks([(model, []), (copy.deepcopy(model), [])], num_batches=4) == [0, 0]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


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
