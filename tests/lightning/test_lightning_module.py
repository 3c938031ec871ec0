"""RegNetClassifier: model building, loss switches, EMA, NaN stop, channels_last, export."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from regnet_zoo.config import cfg_from_dict
from regnet_zoo.lightning import DigitsDataModule, NonFiniteLossError, RegNetClassifier
from regnet_zoo.registry import get_entry


def test_builds_registry_names_aliases_and_configs(tiny_cfg):
    m = RegNetClassifier("RegNetX-200MF", num_classes=7)
    assert m.model.cfg == get_entry("regnetx_200mf").cfg and m.model.num_classes == 7
    m = RegNetClassifier(name="regnety_200mf", num_classes=3)  # --model.name wins over model
    assert m.model.cfg == get_entry("regnety_200mf").cfg
    m = RegNetClassifier(tiny_cfg, num_classes=10, in_chans=1, drop_path_rate=0.1)
    assert m.model.cfg == cfg_from_dict(tiny_cfg) and m.model.in_chans == 1
    assert m(torch.randn(2, 1, 16, 16)).shape == (2, 10)
    with pytest.raises(ValueError, match="label_smoothing"):
        RegNetClassifier(tiny_cfg, label_smoothing=1.5)


def test_pretrained_weight_file_is_loaded(tiny_cfg, tmp_path):
    from safetensors.torch import save_file

    src = RegNetClassifier(tiny_cfg, num_classes=10).model
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    m = RegNetClassifier(tiny_cfg, num_classes=10, pretrained=str(tmp_path / "w.safetensors"))
    for k, v in src.state_dict().items():
        assert torch.equal(m.model.state_dict()[k], v), k


def _step_loss(model: RegNetClassifier, x, y) -> torch.Tensor:
    """training_step outside a trainer (its logging is skipped)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.training_step((x, y), 0)


def test_label_smoothing_loss_matches_hand_formula(tiny_cfg):
    torch.manual_seed(0)
    model = RegNetClassifier(tiny_cfg, num_classes=10, label_smoothing=0.1).eval()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 3, 5, 9])
    loss = _step_loss(model, x, y)
    logp = F.log_softmax(model(x), dim=1)
    target = torch.full((4, 10), 0.1 / 10)  # pycls smooth_one_hot_labels: neg = ls / n, pos = 1 - ls + ls / n
    target[torch.arange(4), y] = 1 - 0.1 + 0.1 / 10
    assert loss.item() == pytest.approx(-(target * logp).sum(1).mean().item(), rel=1e-5)


def test_mixup_gives_soft_targets(tiny_cfg, monkeypatch):
    model = RegNetClassifier(tiny_cfg, num_classes=10, mixup_alpha=0.4, cutmix_alpha=1.0).eval()
    seen = {}
    orig = F.cross_entropy

    def spy(logits, target, **kw):
        seen["target"] = target
        return orig(logits, target, **kw)

    monkeypatch.setattr(F, "cross_entropy", spy)
    x, y = torch.randn(8, 3, 16, 16), torch.arange(8)
    _step_loss(model, x, y)
    t = seen["target"]
    assert t.shape == (8, 10) and torch.allclose(t.sum(1), torch.ones(8))
    assert (t > 0).sum(1).max() == 2  # each row mixes two labels


def test_nan_loss_stops_with_the_step(tiny_cfg, trainer_kwargs):
    dm = DigitsDataModule(image_size=16, batch_size=32)
    model = RegNetClassifier(tiny_cfg, num_classes=10, schedule_epochs=1)

    class Poison(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.global_step == 3:
                batch[0][0, 0, 0, 0] = float("nan")

    trainer = L.Trainer(max_epochs=1, callbacks=[Poison()], enable_checkpointing=False, **trainer_kwargs)
    with pytest.raises(NonFiniteLossError, match=r"nan at global step 3 \(epoch 0, batch 3"):
        trainer.fit(model, dm)


def test_ema_is_checkpointed_validated_and_exported(tiny_cfg, trainer_kwargs, tmp_path):
    dm = DigitsDataModule(image_size=16, batch_size=32)
    model = RegNetClassifier(tiny_cfg, num_classes=10, ema=True, ema_decay=0.9, ema_warmup=False,
                             schedule_epochs=1)
    trainer = L.Trainer(max_epochs=1, limit_train_batches=5, enable_checkpointing=False, **trainer_kwargs)
    trainer.fit(model, dm)
    ema_sd, raw_sd = model.ema.module.state_dict(), model.model.state_dict()
    assert not all(torch.equal(ema_sd[k], raw_sd[k]) for k in raw_sd)  # an average, not a copy
    assert all(not p.requires_grad for p in model.ema.parameters())
    # validation uses the EMA weights, val/*_raw the trained ones
    val = trainer.validate(model, dm, verbose=False)[0]
    dm.setup("fit")
    x = torch.stack([dm.val_set[i][0] for i in range(len(dm.val_set))])
    y = torch.stack([dm.val_set[i][1] for i in range(len(dm.val_set))])
    model.eval()
    with torch.no_grad():
        ema_acc = (model.ema.module(x).argmax(1) == y).float().mean().item()
        raw_acc = (model.model(x).argmax(1) == y).float().mean().item()
    assert val["val/acc1"] == pytest.approx(ema_acc, abs=1e-6)
    assert val["val/acc1_raw"] == pytest.approx(raw_acc, abs=1e-6)
    # the checkpoint holds the EMA; loading restores it exactly
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    restored = RegNetClassifier.load_from_checkpoint(path)
    for k, v in model.ema.state_dict().items():
        assert torch.equal(restored.ema.state_dict()[k], v), k
    exported = restored.export_model()
    assert not exported.training
    for k, v in ema_sd.items():
        assert torch.equal(exported.state_dict()[k], v), k


def test_channels_last_and_predict(tiny_cfg):
    model = RegNetClassifier(tiny_cfg, num_classes=10, channels_last=True).eval()
    w = model.model.stem.conv.weight
    assert w.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(3, 3, 16, 16)
    probs = model.predict_step((x, torch.zeros(3)), 0)
    assert probs.shape == (3, 10) and torch.allclose(probs.sum(1), torch.ones(3), atol=1e-5)
    ref = RegNetClassifier(tiny_cfg, num_classes=10).eval()
    ref.model.load_state_dict(model.model.state_dict())
    assert torch.allclose(ref(x).softmax(1), probs, atol=1e-5)


def test_deferred_finite_check_names_the_recorded_step(tiny_cfg):
    """On accelerators the loss of step s is checked at step s + 1; the error still names step s."""
    model = RegNetClassifier(tiny_cfg, num_classes=10)
    model._pending_loss = (torch.tensor(float("inf")), 7, 1, 2, 0.05)
    with pytest.raises(NonFiniteLossError, match=r"inf at global step 7 \(epoch 1, batch 2, LR 0.05\)"):
        model.check_finite_loss()
    model.check_finite_loss()  # nothing pending: no error


def test_model_summary_sees_the_data_input_size_and_exact_flops(tiny_cfg, trainer_kwargs):
    from lightning.pytorch.utilities.model_summary import ModelSummary

    import regnet_zoo

    dm = DigitsDataModule(image_size=24, batch_size=32)
    model = RegNetClassifier(tiny_cfg, num_classes=10, schedule_epochs=1)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, enable_checkpointing=False, **trainer_kwargs)
    trainer.fit(model, dm)
    assert tuple(model.example_input_array.shape) == (1, 3, 24, 24)  # set from the DataModule's input size
    summary = ModelSummary(model, max_depth=1)
    assert summary.in_sizes[0] == [1, 3, 24, 24] and summary.out_sizes[0] == [1, 10]
    # torch counts 2 FLOPs per multiply-add and no bias adds; pycls adds one per biased output (the 10 logits)
    exact = regnet_zoo.complexity(cfg_from_dict(tiny_cfg), resolution=24, num_classes=10)["flops"]
    assert summary.total_flops == 2 * (exact - 10)
