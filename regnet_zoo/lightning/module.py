"""``RegNetClassifier``: a LightningModule training any RegNet/AnyNet with the paper's recipe (pycls ``OPTIM``)."""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from timm.optim import param_groups_weight_decay
from timm.utils import ModelEmaV3
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from torchvision.transforms import v2

from regnet_zoo.factory import create
from regnet_zoo.lightning.errors import NonFiniteLossError, ignore_known_lightning_warnings
from regnet_zoo.lightning.schedule import Interval, LrSchedule, Policy, global_batch_size, scaled_lr
from regnet_zoo.lightning.sync_batchnorm import torch_converted_norm_act
from regnet_zoo.weights import publish

# lr_info keys of the global batch compared on a resume, with their words; LrSchedule.recipe()'s fields by hparam
_BATCH_FACTS = (("global_batch_size", "global batch"), ("devices", "devices"), ("nodes", "nodes"),
                ("per_device_batch_size", "per-device batch"), ("accumulate_grad_batches", "accumulation"))
_RECIPE_NAMES = ("steps_per_epoch", "schedule_epochs", "lr_policy", "warmup_epochs", "warmup_factor", "min_lr",
                 "lr_interval", "lr_steps", "lr_mult")


class RegNetClassifier(L.LightningModule):
    """Image classifier around ``regnet_zoo.create`` with the paper's training recipe.

    Args:
        model: registry name or alias (``"regnety_4.0gf"``), ``"hf-hub:org/repo"``, or a config dict
            (``RegNetCfg.to_dict()`` / ``AnyNetCfg.to_dict()``).
        num_classes: classifier outputs (the CLI links it to the data's class count).
        pretrained: False, True (the model's default weights), a weight tag, or a weight file path.
        name: registry name that wins over ``model`` when given (``--model.name regnety_800mf``).
        in_chans: input channels (the CLI links it to the data).
        drop_rate: dropout before the classifier.
        drop_path_rate: stochastic depth rate of the last block (rises linearly from 0).
        zero_init_last: zero-init the last BN of each residual branch (pycls default: False).
        base_lr: LR per ``reference_batch_size`` images (pycls BASE_LR x 128 / TRAIN.BATCH_SIZE = 0.1).
        reference_batch_size: images per step that ``base_lr`` refers to.
        scale_lr: peak LR = ``base_lr`` x global batch (per-device batch x devices x nodes x gradient
            accumulation) / ``reference_batch_size``; False: ``base_lr`` as is.
        momentum, nesterov, weight_decay: SGD settings (pycls: 0.9, True, 5e-5).
        no_weight_decay_bn_bias: no weight decay on 1-d parameters (BN, biases); pycls decays them.
        lr_policy: ``"cos"`` (half-period cosine), ``"lin"``, ``"exp"``, ``"steps"`` or ``"constant"``.
        schedule_epochs: schedule length in epochs (pycls OPTIM.MAX_EPOCH); None: the trainer's max_epochs
            (or its max_steps when only those are set).
        warmup_epochs: linear warmup length (pycls OPTIM.WARMUP_EPOCHS, 5).
        warmup_factor: LR factor at the start of the warmup (pycls OPTIM.WARMUP_FACTOR, 0.1).
        min_lr: final LR as a fraction of the peak (pycls OPTIM.MIN_LR, 0).
        lr_steps, lr_mult: epochs at which the ``steps`` policy multiplies the LR by ``lr_mult``.
        lr_interval: ``"step"`` (LR updated every optimizer step) or ``"epoch"`` (pycls: once per epoch).
        label_smoothing: cross-entropy label smoothing.
        mixup_alpha, cutmix_alpha: torchvision MixUp / CutMix per training batch (both > 0: one at random).
        ema: keep an exponential moving average of the weights (timm ``ModelEmaV3``); it is saved in
            checkpoints, validated, and exported.
        ema_decay: EMA decay per optimizer step.
        ema_warmup: timm's EMA decay warmup (the decay grows towards ``ema_decay`` early in training).
        ema_validate_model: with ``ema``, also validate the raw weights (``val/acc1_raw``).
        channels_last: NHWC memory format for model and inputs.
        compile: ``torch.compile`` the model's forward (state-dict keys are unchanged).
        check_finite_loss: stop with ``NonFiniteLossError`` naming the step when the loss is NaN/inf.
        batch_size: per-device batch size for LR scaling when the train loader has no ``batch_size``.
    """

    def __init__(
        self, model: str | dict[str, Any] = "regnetx_200mf", num_classes: int = 1000, pretrained: bool | str = False,
        name: str | None = None, in_chans: int = 3, drop_rate: float = 0.0, drop_path_rate: float = 0.0,
        zero_init_last: bool = False,
        # optimizer
        base_lr: float = 0.1, reference_batch_size: int = 128, scale_lr: bool = True, momentum: float = 0.9,
        nesterov: bool = True, weight_decay: float = 5e-5, no_weight_decay_bn_bias: bool = False,
        # LR schedule
        lr_policy: Policy = "cos", schedule_epochs: int | None = None, warmup_epochs: float = 5.0,
        warmup_factor: float = 0.1, min_lr: float = 0.0, lr_steps: tuple[float, ...] = (), lr_mult: float = 0.1,
        lr_interval: Interval = "step",
        # regularisation and EMA
        label_smoothing: float = 0.0, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0, ema: bool = False,
        ema_decay: float = 0.9998, ema_warmup: bool = True, ema_validate_model: bool = True,
        # runtime
        channels_last: bool = False, compile: bool = False, check_finite_loss: bool = True,
        batch_size: int | None = None,
    ):
        super().__init__()
        # checks the schedule settings now (ValueError) rather than when fit builds the real schedule
        LrSchedule(1, 1.0, lr_policy, warmup_epochs, warmup_factor, min_lr, lr_interval, tuple(lr_steps), lr_mult)
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup_alpha and cutmix_alpha must be >= 0, got {mixup_alpha}, {cutmix_alpha}")
        if not 0.0 < ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1), got {ema_decay}")
        self.save_hyperparameters()
        self.model = create(name or model, pretrained=pretrained, num_classes=num_classes, in_chans=in_chans,
                            drop_rate=drop_rate, drop_path_rate=drop_path_rate, zero_init_last=zero_init_last)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.ema: ModelEmaV3 | None = None
        if ema:
            self.ema = ModelEmaV3(self.model, decay=ema_decay, use_warmup=ema_warmup)
            self.ema.requires_grad_(False)
            self.ema.train()  # follows the module's train/eval mode like any submodule (only used in eval)
        if compile:
            self.model.compile()
        mixers = [mix(alpha=a, num_classes=num_classes)
                  for a, mix in ((mixup_alpha, v2.MixUp), (cutmix_alpha, v2.CutMix)) if a > 0]
        self.mixer = v2.RandomChoice(mixers) if len(mixers) == 2 else next(iter(mixers), None)
        metrics = MetricCollection({f"acc{k}": MulticlassAccuracy(num_classes, top_k=min(k, num_classes),
                                                                  average="micro") for k in (1, 5)})
        self.train_metrics, self.val_metrics, self.test_metrics = (
            metrics.clone(prefix=f"{stage}/") for stage in ("train", "val", "test"))
        self.val_raw_metrics = metrics.clone(prefix="val/", postfix="_raw") if ema and ema_validate_model else None
        self.lr_info: dict[str, float | int] = {}
        self._planned_schedule: tuple[LrSchedule, float] | None = None  # (schedule, peak LR) of this run
        self._restored_lr_info: dict[str, Any] | None = None  # lr_info of the checkpoint resumed from
        self.data_config: dict[str, Any] | None = None  # the training data's preprocessing, for export
        self._last_step_time: float | None = None
        self._pending_loss: tuple[torch.Tensor, int, int, int, float] | None = None
        self._ema_step = -1

    # ------------------------------------------------------------------ forward
    def prepare_input(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) in the model's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.hparams.channels_last else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) normalised images -> (N, num_classes) logits of the trained weights."""
        return self.model(self.prepare_input(x))

    @property
    def eval_model(self) -> nn.Module:
        """The weights used for validation, test, predict and export: the EMA if enabled."""
        return self.ema.module if self.ema is not None else self.model

    # ------------------------------------------------------------------ training
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        target = y
        if self.mixer is not None:
            x, target = self.mixer(x, y)  # target: (N, num_classes) mixed one-hot
        self.check_finite_loss()  # the previous step's loss, without waiting for this step
        logits = self.model(self.prepare_input(x))
        loss = F.cross_entropy(logits, target, label_smoothing=self.hparams.label_smoothing)
        if self.hparams.check_finite_loss:
            self._pending_loss = (loss.detach(), self.global_step, self.current_epoch, batch_idx, self._current_lr())
            if loss.device.type == "cpu":  # free on the CPU: check now; on accelerators one step later (no sync)
                self.check_finite_loss()
        self.train_metrics.update(logits.detach(), target.argmax(dim=1) if target.ndim == 2 else target)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=x.shape[0])
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        self.log("train/lr", self._current_lr(), prog_bar=False, on_step=True, on_epoch=False, batch_size=1)
        return loss

    def check_finite_loss(self) -> None:
        """Raise ``NonFiniteLossError`` naming the step if the last recorded training loss is NaN/inf; on accelerators
        step s is checked at the start of step s + 1 (and before the epoch's validation and checkpoints), so the
        check never stalls the device queue."""
        pending, self._pending_loss = self._pending_loss, None
        if pending is not None and not bool(torch.isfinite(pending[0])):
            loss, step, epoch, batch_idx, lr = pending
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at global step {step} (epoch {epoch}, batch {batch_idx}, "
                f"LR {lr:.4g}); training stopped. Lower model.base_lr, check the data for NaN/inf, or train in "
                "32-bit precision.")

    def _current_lr(self) -> float:
        if self._trainer is None or not self.trainer.optimizers:
            return float("nan")
        return float(self.trainer.optimizers[0].param_groups[0]["lr"])

    def on_train_epoch_start(self) -> None:
        self._last_step_time = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch:
            self.check_finite_loss()  # before validation and epoch-end checkpoints
        now = time.perf_counter()
        if self._last_step_time is not None:
            images = batch[0].shape[0] * self.trainer.world_size
            self.log("train/images_per_sec", images / max(now - self._last_step_time, 1e-9), on_step=True,
                     on_epoch=True, batch_size=1, prog_bar=True)
        self._last_step_time = now
        if self.ema is not None and self.global_step != self._ema_step:  # once per optimizer step
            self._ema_step = self.global_step
            self.ema.update(self.model, step=self.global_step)

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, batch: Any, metrics: MetricCollection, model: nn.Module, loss_name: str,
                  prog_bar: bool = False) -> None:
        x, y = batch
        logits = model(self.prepare_input(x))
        metrics.update(logits, y)
        self.log(loss_name, F.cross_entropy(logits, y), on_step=False, on_epoch=True, sync_dist=True,
                 batch_size=x.shape[0], prog_bar=prog_bar)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metrics, self.eval_model, "val/loss", prog_bar=True)
        self.log_dict(self.val_metrics, on_step=False, on_epoch=True, prog_bar=True)
        if self.val_raw_metrics is not None:
            self._evaluate(batch, self.val_raw_metrics, self.model, "val/loss_raw")
            self.log_dict(self.val_raw_metrics, on_step=False, on_epoch=True)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metrics, self.eval_model, "test/loss")
        self.log_dict(self.test_metrics, on_step=False, on_epoch=True)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """(N, num_classes) class probabilities of the evaluation weights (EMA if enabled)."""
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.eval_model(self.prepare_input(x)).softmax(dim=-1)

    # ------------------------------------------------------------------ optimizer
    def configure_optimizers(self) -> dict[str, Any]:
        hp, trainer = self.hparams, self.trainer
        trainer.fit_loop.setup_data()  # loads the train loader now: its batch size and length set the schedule
        accumulate, batches = trainer.accumulate_grad_batches, trainer.num_training_batches
        if not math.isfinite(batches):
            raise ValueError("the LR schedule needs a train loader with a length (got an unsized iterable)")
        steps_per_epoch = max(1, math.ceil(batches / accumulate))
        # how long the trainer trains, in epochs, by max_epochs and by max_steps (None: not bounded by it)
        by_epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs >= 0 else None
        by_steps = trainer.max_steps / steps_per_epoch if trainer.max_steps > 0 else None
        train_epochs = min((e for e in (by_epochs, by_steps) if e is not None), default=None)
        epochs = hp.schedule_epochs if hp.schedule_epochs is not None else (by_epochs or by_steps)
        if epochs is None or epochs <= 0:
            raise ValueError("set model.schedule_epochs (or trainer.max_epochs / max_steps) for the LR schedule")
        if train_epochs is not None and train_epochs > epochs * (1 + 1e-9):
            rank_zero_warn(
                f"the trainer trains {train_epochs:g} epochs (trainer.max_epochs / max_steps) but the LR schedule "
                f"ends after {epochs:g} (model.schedule_epochs): the last {train_epochs - epochs:g} epochs run at "
                f"the schedule's final LR ({hp.min_lr:g} x peak). Set model.schedule_epochs {train_epochs:g} (or "
                "null to follow trainer.max_epochs) to stretch the schedule over the whole run.")
        batch_size = getattr(trainer.train_dataloader, "batch_size", None) or hp.batch_size
        if batch_size is None:
            raise ValueError("cannot tell the per-device batch size for LR scaling: the train loader has no "
                             "batch_size; pass model.batch_size")
        optimizer, scheduler = self.make_optimizer(steps_per_epoch, epochs, int(batch_size), trainer.num_devices,
                                                   trainer.num_nodes, accumulate)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def make_optimizer(self, steps_per_epoch: int, schedule_epochs: float, per_device_batch_size: int,
                       devices: int = 1, nodes: int = 1, accumulate: int = 1,
                       ) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
        """The paper's SGD and per-step LR schedule for this model (what ``configure_optimizers`` returns).

        The peak LR is ``base_lr`` x global batch / ``reference_batch_size`` (global batch = per-device
        batch x devices x nodes x accumulate); the scheduler must be stepped once per optimizer step.
        Sets ``lr_info`` and prints the LR scaling on rank 0. Usable without a Trainer (plain loops).
        """
        hp = self.hparams
        gbs = global_batch_size(per_device_batch_size, devices, nodes, accumulate)
        peak = scaled_lr(hp.base_lr, gbs, hp.reference_batch_size) if hp.scale_lr else hp.base_lr
        schedule = LrSchedule(steps_per_epoch, schedule_epochs, hp.lr_policy, hp.warmup_epochs, hp.warmup_factor,
                              hp.min_lr, hp.lr_interval, tuple(hp.lr_steps), hp.lr_mult)
        self._planned_schedule = (dataclasses.replace(schedule), peak)  # a copy: a resume rewrites the scheduler's
        self.lr_info = {"base_lr": hp.base_lr, "reference_batch_size": hp.reference_batch_size,
                        "per_device_batch_size": per_device_batch_size, "devices": devices,
                        "nodes": nodes, "accumulate_grad_batches": accumulate,
                        "global_batch_size": gbs, "peak_lr": peak, "steps_per_epoch": steps_per_epoch,
                        "schedule_epochs": schedule_epochs}
        rank_zero_info(f"LR {hp.base_lr:g} per {hp.reference_batch_size} images x global batch {gbs} "
                       f"({per_device_batch_size} per device x {devices} devices x {nodes} nodes x "
                       f"{accumulate} accumulated) = {peak:g}; {hp.lr_policy} schedule over {schedule_epochs:g} "
                       f"epochs of {steps_per_epoch} steps, {hp.warmup_epochs:g} warmup epochs")
        params = [p for p in self.model.parameters() if p.requires_grad]  # one group, at the default weight decay
        groups = param_groups_weight_decay(self.model, hp.weight_decay) if hp.no_weight_decay_bn_bias else params
        optimizer = torch.optim.SGD(groups, lr=peak, momentum=hp.momentum, nesterov=hp.nesterov,
                                    weight_decay=hp.weight_decay, dampening=0.0)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    def on_train_start(self) -> None:
        """After a resume, make the scheduler follow this run's schedule and peak LR.

        A restored scheduler has the checkpoint's peak LR (``base_lrs``) and ``LrSchedule``. When this run
        plans another (other global batch or schedule settings), that applies from the resumed step on,
        continuing at the epoch reached, with a warning naming the changes.
        """
        configs = self.trainer.lr_scheduler_configs
        scheduler = configs[0].scheduler if configs else None
        restored = getattr(scheduler, "lr_lambdas", [None])[0]
        if self._planned_schedule is None or not isinstance(restored, LrSchedule):
            return
        planned, peak = self._planned_schedule
        old_peak = scheduler.base_lrs[0]
        same_peak = all(math.isclose(p, peak, rel_tol=1e-9) for p in scheduler.base_lrs)
        if same_peak and restored.recipe() == planned.recipe():
            return
        step = scheduler.last_epoch  # optimizer steps done; the next step is this one
        position = restored.progress(step)
        schedule = dataclasses.replace(planned, start_step=step, start_epoch=position)
        optimizer = scheduler.optimizer
        old_lr = optimizer.param_groups[0]["lr"]
        scheduler.lr_lambdas = [schedule] * len(optimizer.param_groups)
        scheduler.base_lrs = [peak] * len(optimizer.param_groups)
        for group in optimizer.param_groups:
            group["initial_lr"], group["lr"] = peak, peak * schedule(step)
        scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]
        old_info = self._restored_lr_info or {}
        changes = [] if same_peak else [f"peak LR {old_peak:g} -> {peak:g}"]
        changes += [f"{what} {old_info[key]} -> {self.lr_info.get(key)}" for key, what in _BATCH_FACTS
                    if key in old_info and old_info[key] != self.lr_info.get(key)]
        changes += [f"{name} {old} -> {new}" for name, old, new in zip(_RECIPE_NAMES, restored.recipe(),
                                                                       planned.recipe()) if old != new]
        rank_zero_warn(
            f"resuming at step {step} (epoch {position:.3f}) with another LR schedule than the checkpoint's: "
            f"{', '.join(changes)}. This run's schedule applies from here on, continuing at epoch {position:.3f} "
            f"(the LR of the next step is {optimizer.param_groups[0]['lr']:.6g} instead of {old_lr:.6g}). To keep "
            "the checkpoint's schedule, resume with its devices, batch size and schedule settings.")

    # ------------------------------------------------------------------ export
    def _datamodule_config(self) -> dict[str, Any] | None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        return dm.data_config() if hasattr(dm, "data_config") else None

    def setup(self, stage: str) -> None:
        ignore_known_lightning_warnings()
        cfg = self._datamodule_config() if stage == "fit" and self.example_input_array is None else None
        if cfg and "input_size" in cfg:  # one image: the model summary shows map sizes and FLOPs
            self.example_input_array = torch.zeros(1, *cfg["input_size"])

    def on_fit_start(self) -> None:
        broken = torch_converted_norm_act(self.model)
        if broken:
            raise ValueError(
                f"Trainer(sync_batchnorm=True) converted {len(broken)} BN+activation layers (e.g. {broken[0]}) to "
                "torch.nn.SyncBatchNorm, which drops their ReLU; pass "
                "plugins=[regnet_zoo.lightning.TimmSyncBatchNorm()] to the Trainer (regnet-zoo fit does)")
        self.data_config = self._datamodule_config() or self.data_config

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.data_config is not None:
            checkpoint["data_config"] = self.data_config
        if self.lr_info:
            checkpoint["lr_info"] = dict(self.lr_info)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.data_config = checkpoint.get("data_config", self.data_config)
        self._restored_lr_info = checkpoint.get("lr_info")

    def export_model(self) -> nn.Module:
        """A standalone CPU copy of the evaluation weights (EMA if enabled) in eval mode; its ``pretrained_cfg``
        carries the training data's preprocessing (input size, mean, std, crop, class names) when known."""
        model = copy.deepcopy(self.eval_model).cpu().eval().to(memory_format=torch.contiguous_format)
        model.pretrained_cfg = {**self.model.pretrained_cfg, **(self.data_config or {}),
                                "num_classes": self.hparams.num_classes}
        return model

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> Any:
        """Write the evaluation weights in ``regnet_zoo.save_pretrained`` format (safetensors + config)."""
        return publish.save_pretrained(self.export_model(), save_directory, **kwargs)

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload the evaluation weights with ``regnet_zoo.push_to_hub``."""
        return publish.push_to_hub(self.export_model(), repo_id, **kwargs)
