"""The paper code's learning-rate recipe as pure math (no torch).

pycls (``pycls/core/optimizer.py``) sets the LR of (fractional) epoch ``t`` to ``BASE_LR * lr_fun(t)``,
times a warmup factor rising linearly from ``WARMUP_FACTOR`` to 1 over ``WARMUP_EPOCHS``; ``BASE_LR`` is
0.1 per 128 images (linear scaling). pycls evaluates it once per epoch; we default to once per optimizer
step. Past the schedule's end the LR stays at its final value (``min_lr`` x base LR).
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from typing import Literal, get_args

Policy = Literal["cos", "lin", "exp", "steps", "constant"]
Interval = Literal["step", "epoch"]
POLICIES: tuple[str, ...] = get_args(Policy)
INTERVALS: tuple[str, ...] = get_args(Interval)


def scaled_lr(base_lr: float, global_batch_size: int, reference_batch_size: int = 128) -> float:
    """Linear scaling rule: ``base_lr`` is the LR for ``reference_batch_size`` images per step."""
    if global_batch_size < 1 or reference_batch_size < 1:
        raise ValueError(f"batch sizes must be >= 1, got global {global_batch_size}, reference {reference_batch_size}")
    return base_lr * global_batch_size / reference_batch_size


def global_batch_size(per_device: int, devices: int = 1, nodes: int = 1, accumulate: int = 1) -> int:
    """Images per optimizer step: per-device batch x devices x nodes x gradient-accumulation steps."""
    for name, v in (("per_device", per_device), ("devices", devices), ("nodes", nodes), ("accumulate", accumulate)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    return per_device * devices * nodes * accumulate


def policy_factor(policy: Policy, epoch: float, max_epoch: float, min_lr: float = 0.0,
                  steps: tuple[float, ...] = (), lr_mult: float = 0.1) -> float:
    """pycls ``lr_fun_<policy>(epoch)``: multiplier of the base LR at ``epoch`` (before warmup).

    ``cos``: half-period cosine from 1 to ``min_lr``; ``lin``: linear from 1 to ``min_lr``; ``exp``:
    ``min_lr ** (epoch / max_epoch)``; ``steps``: ``lr_mult ** (step epochs <= epoch, minus one)``, with
    ``steps[0] == 0``; ``constant``: 1. ``epoch`` is clamped to ``max_epoch`` (pycls never evaluates past
    it), so the factor then holds its final value.
    """
    epoch = min(epoch, max_epoch)
    if policy == "cos":
        return (1.0 - min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / max_epoch)) + min_lr
    if policy == "lin":
        return (1.0 - min_lr) * (1.0 - epoch / max_epoch) + min_lr
    if policy == "exp":
        if not min_lr > 0:
            raise ValueError("the 'exp' policy needs min_lr > 0 (the LR reaches min_lr * base LR at max_epoch)")
        return min_lr ** (epoch / max_epoch)
    if policy == "steps":
        if not steps or steps[0] != 0:
            raise ValueError(f"the 'steps' policy needs steps starting at 0, e.g. (0, 30, 60, 90); got {steps!r}")
        return lr_mult ** (sum(1 for s in steps if epoch >= s) - 1)
    if policy == "constant":
        return 1.0
    raise ValueError(f"unknown LR policy {policy!r}; choose one of {POLICIES}")


def warmup_factor(epoch: float, warmup_epochs: float, start_factor: float = 0.1) -> float:
    """pycls' linear warmup: ``start_factor`` at epoch 0 rising to 1 at ``warmup_epochs``."""
    if epoch >= warmup_epochs:
        return 1.0
    alpha = epoch / warmup_epochs
    return start_factor * (1.0 - alpha) + alpha


@dataclass(frozen=True)
class LrSchedule:
    """LR multiplier per optimizer step (picklable, for ``torch.optim.lr_scheduler.LambdaLR``).

    Attributes:
        steps_per_epoch: optimizer steps per epoch (after gradient accumulation), >= 1.
        max_epoch, policy, warmup_epochs, warmup_start, min_lr: pycls ``OPTIM.MAX_EPOCH`` (schedule length in
            epochs), ``LR_POLICY``, ``WARMUP_EPOCHS`` (may be fractional), ``WARMUP_FACTOR``, ``MIN_LR`` (fraction
            of the base LR).
        interval: ``"step"`` evaluates at ``t = step / steps_per_epoch``; ``"epoch"`` at
            ``t = floor(step / steps_per_epoch)``, as pycls did.
        steps, lr_mult: pycls ``OPTIM.STEPS`` and ``OPTIM.LR_MULT`` for the ``steps`` policy.
        start_step, start_epoch: optimizer step ``start_step`` runs at (fractional) epoch ``start_epoch``;
            later steps advance by ``1 / steps_per_epoch`` epochs. Non-zero when a run resumed with another
            number of steps per epoch (e.g. another device count): its earlier steps had another length.
    """

    steps_per_epoch: int
    max_epoch: float
    policy: Policy = "cos"
    warmup_epochs: float = 5.0
    warmup_start: float = 0.1
    min_lr: float = 0.0
    interval: Interval = "step"
    steps: tuple[float, ...] = ()
    lr_mult: float = 0.1
    start_step: int = 0
    start_epoch: float = 0.0

    def __post_init__(self) -> None:
        if self.steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}")
        if not self.max_epoch > 0:
            raise ValueError(f"the schedule length must be > 0 epochs, got {self.max_epoch}")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.interval not in INTERVALS:
            raise ValueError(f"interval must be one of {INTERVALS}, got {self.interval!r}")
        if self.start_step < 0 or self.start_epoch < 0:
            raise ValueError(f"start_step and start_epoch must be >= 0, got {self.start_step}, {self.start_epoch}")
        policy_factor(self.policy, 0.0, self.max_epoch, self.min_lr, tuple(self.steps), self.lr_mult)  # policy checks

    def recipe(self) -> tuple:
        """The fields that define the LR curve over epochs and the step length (all but the start offsets)."""
        return astuple(self)[:-2]

    def progress(self, step: int) -> float:
        """Epochs of training done when optimizer step ``step`` starts (fractional)."""
        return self.start_epoch + (step - self.start_step) / self.steps_per_epoch

    def epoch_at(self, step: int) -> float:
        """The epoch at which the schedule evaluates step ``step``: ``progress(step)``, floored for "epoch"."""
        t = self.progress(step)
        return float(math.floor(t)) if self.interval == "epoch" else t

    def __call__(self, step: int) -> float:
        """Multiplier of the scaled base LR at optimizer step ``step``: policy x warmup at ``epoch_at(step)``."""
        t = self.epoch_at(step)
        f = policy_factor(self.policy, t, self.max_epoch, self.min_lr, tuple(self.steps), self.lr_mult)
        return f * warmup_factor(t, self.warmup_epochs, self.warmup_start)
