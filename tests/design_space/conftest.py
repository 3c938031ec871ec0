"""Shared helpers: a tiny RegNet space whose models train in about a second on digits at 16 px."""

import pytest

from regnet_zoo.design_space import RegNetSpace, TrainSettings, sample, trials_from_samples

TINY = RegNetSpace("tiny", depth=(2, 4), w0=(8, 16), wa=(8.0, 16.0), wm=(2.0, 3.0), num_stages=(1, 4),
                   bottleneck_ratios=(1,), group_widths=(8,))
FAST = TrainSettings(epochs=1, batch_size=32, limit_train_batches=2, limit_val_batches=1)


def tiny_trials(n: int, seed: int = 0) -> list[dict]:
    """n trials of the tiny space at 16 px, 10 classes."""
    return trials_from_samples(sample(TINY, n, seed=seed, resolution=16, num_classes=10))


@pytest.fixture
def fast_settings() -> TrainSettings:
    return FAST
