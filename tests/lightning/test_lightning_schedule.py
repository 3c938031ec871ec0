"""The LR recipe against hand-computed values, pycls' formula, and the optimizer a Trainer actually steps."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from regnet_zoo.lightning import DigitsDataModule, LrSchedule, RegNetClassifier, global_batch_size, scaled_lr
from regnet_zoo.lightning.schedule import policy_factor, warmup_factor


def pycls_epoch_lr(cur_epoch: float, base_lr: float, max_epoch: float, warmup_epochs: float,
                   warmup_factor_: float = 0.1, min_lr: float = 0.0) -> float:
    """pycls get_epoch_lr with lr_fun_cos, written out from pycls/core/optimizer.py's formulas."""
    lr = (1.0 - min_lr) * 0.5 * (1.0 + math.cos(math.pi * cur_epoch / max_epoch)) + min_lr
    lr *= base_lr
    if cur_epoch < warmup_epochs:
        alpha = cur_epoch / warmup_epochs
        lr *= warmup_factor_ * (1.0 - alpha) + alpha
    return lr


def test_linear_scaling_matches_the_paper_configs():
    # pycls dds_baselines: BASE_LR 0.8 @ 1024, 0.4 @ 512, 0.2 @ 256 -- all 0.1 per 128 images
    assert scaled_lr(0.1, 1024) == pytest.approx(0.8)
    assert scaled_lr(0.1, 512) == pytest.approx(0.4)
    assert scaled_lr(0.1, 256) == pytest.approx(0.2)
    assert global_batch_size(128, devices=8) == 1024
    assert global_batch_size(32, devices=4, nodes=2, accumulate=2) == 512
    with pytest.raises(ValueError, match="accumulate"):
        global_batch_size(32, accumulate=0)


def test_schedule_hand_computed_values():
    s = LrSchedule(steps_per_epoch=10, max_epoch=100, warmup_epochs=5, warmup_start=0.1)
    assert s(0) == pytest.approx(0.1)  # warmup starts at 0.1x
    # t = 2.5: warmup 0.1 * 0.5 + 0.5 = 0.55; cosine 0.5 * (1 + cos(0.025 pi)) = 0.998458666866564
    assert s(25) == pytest.approx(0.55 * 0.998458666866564, rel=1e-12)
    # t = 5: warmup over; 0.5 * (1 + cos(0.05 pi)) = 0.993844170297569
    assert s(50) == pytest.approx(0.993844170297569, rel=1e-12)
    assert s(500) == pytest.approx(0.5)
    assert s(1000) == pytest.approx(0.0, abs=1e-15)
    # per epoch as pycls: step 25 is epoch 2: (0.1 * 0.6 + 0.4) * 0.5 * (1 + cos(0.02 pi))
    e = LrSchedule(steps_per_epoch=10, max_epoch=100, warmup_epochs=5, interval="epoch")
    assert e(25) == pytest.approx(0.46 * 0.999013364214136, rel=1e-12)
    assert e(29) == e(20)


@pytest.mark.parametrize("interval", ["step", "epoch"])
def test_schedule_equals_pycls_formula(interval):
    s = LrSchedule(steps_per_epoch=7, max_epoch=12, warmup_epochs=3, warmup_start=0.1, interval=interval,
                   min_lr=0.01)
    for step in range(7 * 12):
        t = step / 7 if interval == "step" else step // 7
        assert 0.8 * s(step) == pytest.approx(pycls_epoch_lr(t, 0.8, 12, 3, 0.1, 0.01), rel=1e-12)


def test_other_policies_and_errors():
    assert policy_factor("lin", 25, 100) == pytest.approx(0.75)
    assert policy_factor("exp", 50, 100, min_lr=0.01) == pytest.approx(0.1)
    assert [policy_factor("steps", t, 90, steps=(0, 30, 60)) for t in (0, 29.9, 30, 75)] == pytest.approx(
        [1, 1, 0.1, 0.01])
    assert warmup_factor(1.0, 0.0) == 1.0  # no warmup: no division by zero
    with pytest.raises(ValueError, match="min_lr > 0"):
        LrSchedule(10, 100, policy="exp")
    with pytest.raises(ValueError, match="unknown LR policy"):
        LrSchedule(10, 100, policy="cosine")
    with pytest.raises(ValueError, match="steps starting at 0"):
        LrSchedule(10, 100, policy="steps", steps=(30, 60))


def test_lr_holds_its_final_value_after_the_schedule_ends():
    """Past max_epoch the factor stays at min_lr (was: cosine rising again, lin negative, exp below min_lr)."""
    cos, lin = LrSchedule(22, 8, warmup_epochs=1), LrSchedule(22, 8, policy="lin", warmup_epochs=1)
    # epochs 8..12 at 22 steps per epoch: steps 176, 198, 220, 242, 264
    assert [cos(22 * e) for e in range(8, 13)] == [0.0] * 5
    assert [lin(22 * e) for e in range(8, 13)] == [0.0] * 5
    # before the end nothing changed: t = 6 -> cos 0.5 (1 + cos(3 pi / 4)) = 0.1464466..., lin 1 - 6/8 = 0.25
    assert cos(132) == pytest.approx(0.14644660940672624, rel=1e-12) and lin(132) == pytest.approx(0.25)
    exp = LrSchedule(22, 8, policy="exp", min_lr=0.01, warmup_epochs=1)
    assert exp(88) == pytest.approx(0.1)  # t = 4: 0.01 ** 0.5
    assert [exp(22 * e) for e in range(8, 13)] == pytest.approx([0.01] * 5, rel=1e-12)
    floor = LrSchedule(22, 8, min_lr=0.05, warmup_epochs=1)
    assert floor(22 * 8) == pytest.approx(0.05) and floor(22 * 12 + 7) == pytest.approx(0.05)


def test_schedule_started_mid_run():
    """start_step/start_epoch: step 60 runs at epoch 5, later steps advance by 1 / 20 epochs."""
    s = LrSchedule(steps_per_epoch=20, max_epoch=10, warmup_epochs=0, start_step=60, start_epoch=5.0)
    assert s.progress(60) == 5.0 and s.progress(70) == 5.5
    assert s(70) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.55)), rel=1e-12)
    e = LrSchedule(steps_per_epoch=20, max_epoch=10, warmup_epochs=0, interval="epoch", start_step=60,
                   start_epoch=5.0)
    assert e.epoch_at(79) == 5.0 and e.epoch_at(80) == 6.0


class _RecordLr(L.Callback):
    def __init__(self):
        self.lrs: dict[int, float] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]


@pytest.mark.parametrize("accumulate,interval", [(1, "step"), (2, "epoch")])
def test_trainer_steps_the_schedule(tiny_cfg, trainer_kwargs, accumulate, interval):
    """The LR the optimizer really uses at every step = base_lr x global batch / 128 x schedule(step)."""
    dm = DigitsDataModule(image_size=16, batch_size=32)
    model = RegNetClassifier(tiny_cfg, num_classes=10, base_lr=0.1, warmup_epochs=1, schedule_epochs=3,
                             lr_interval=interval)
    rec = _RecordLr()
    trainer = L.Trainer(max_epochs=2, limit_train_batches=9, limit_val_batches=1, accumulate_grad_batches=accumulate,
                        callbacks=[rec], enable_checkpointing=False, **trainer_kwargs)
    trainer.fit(model, dm)
    info = model.lr_info
    assert info["global_batch_size"] == 32 * accumulate
    assert info["peak_lr"] == pytest.approx(0.1 * 32 * accumulate / 128)
    steps_per_epoch = math.ceil(9 / accumulate)
    assert info["steps_per_epoch"] == steps_per_epoch
    assert trainer.global_step == 2 * steps_per_epoch
    assert sorted(rec.lrs) == list(range(2 * steps_per_epoch))
    for step, lr in rec.lrs.items():
        t = step / steps_per_epoch if interval == "step" else step // steps_per_epoch
        assert lr == pytest.approx(pycls_epoch_lr(t, info["peak_lr"], 3, 1), rel=1e-9), step


@pytest.mark.parametrize("exclude", [False, True])
def test_optimizer_is_the_papers_sgd(tiny_cfg, trainer_kwargs, exclude):
    """SGD, momentum 0.9, Nesterov, wd 5e-5 on every parameter (pycls) or not on BN/bias (switch)."""
    model = RegNetClassifier(tiny_cfg, num_classes=10, no_weight_decay_bn_bias=exclude)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, enable_checkpointing=False, **trainer_kwargs)
    trainer.fit(model, DigitsDataModule(image_size=16, batch_size=32))
    opt = trainer.optimizers[0]
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["momentum"] == 0.9 and g["nesterov"] and g["dampening"] == 0 for g in opt.param_groups)
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    params = dict(model.model.named_parameters())
    assert set(decay) == {id(p) for p in params.values()}
    for name, p in params.items():
        one_d = name.endswith(".bias") or ".bn." in name
        assert one_d == (p.ndim == 1), name
        assert decay[id(p)] == (0.0 if exclude and one_d else 5e-5), name


@pytest.mark.parametrize("schedule_epochs,warns", [(2, True), (None, False)])
def test_warns_when_training_outlasts_the_schedule(tiny_cfg, trainer_kwargs, schedule_epochs, warns, recwarn):
    """max_epochs 3 > schedule_epochs 2: a warning, and the third epoch runs at LR 0 (min_lr), not rising."""
    model = RegNetClassifier(tiny_cfg, num_classes=10, base_lr=0.1, warmup_epochs=0, schedule_epochs=schedule_epochs)
    rec = _RecordLr()
    trainer = L.Trainer(max_epochs=3, limit_train_batches=2, limit_val_batches=0, callbacks=[rec],
                        enable_checkpointing=False, **trainer_kwargs)
    trainer.fit(model, DigitsDataModule(image_size=16, batch_size=32))
    messages = [str(w.message) for w in recwarn if "LR schedule ends after" in str(w.message)]
    assert bool(messages) == warns, messages
    if warns:
        assert "trains 3 epochs" in messages[0] and "ends after 2" in messages[0]
        # peak 0.1 x 32 / 128 = 0.025; t = 0, 0.5, 1, 1.5 -> 0.5 (1 + cos(pi t / 2)); then held at 0
        assert [rec.lrs[s] for s in range(6)] == pytest.approx(
            [0.025, 0.025 * 0.8535533905932737, 0.0125, 0.025 * 0.14644660940672624, 0.0, 0.0], abs=1e-12)
