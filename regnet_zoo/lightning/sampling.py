"""Epoch-seeded data loading: each epoch's order and randomness depend only on (seed, epoch, rank).

That makes ``--ckpt_path last`` resumption exact: a resumed epoch sees the same batches, augmentations,
MixUp draws and DropPath masks as it would have in an uninterrupted run. Lightning restores no RNG
states, and on resume it creates the first epoch's iterator *before* it sets the sampler's epoch (so
with worker processes a plain ``DataLoader`` replays epoch 0's order). ``EpochDataLoader`` therefore
starts its epoch lazily, at the first batch, after Lightning has called ``sampler.set_epoch``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """A well-mixed 63-bit seed for (seed, epoch, rank)."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(2, dtype=np.uint64)[0] >> np.uint64(1))


class _EpochIterator:
    """Creates the real iterator at the first ``next()``, after seeding for the sampler's epoch."""

    def __init__(self, loader: EpochDataLoader):
        self.loader = loader
        self.iterator: Iterator[Any] | None = None

    def __iter__(self) -> _EpochIterator:
        return self

    def __next__(self) -> Any:
        if self.iterator is None:
            self.iterator = self.loader._start_epoch()
        return next(self.iterator)

    def __len__(self) -> int:
        return len(self.loader)


class EpochDataLoader(DataLoader):
    """``DataLoader`` whose epoch is seeded from (seed, ``sampler.epoch``, rank) when its first batch is drawn.

    It seeds the loader's generator (so worker seeds follow) and ``torch``, ``numpy`` and ``random``
    of this process (augmentations run here when ``num_workers == 0``; MixUp/CutMix, dropout and
    DropPath always do). Use a sampler with ``set_epoch`` (``epoch_sampler``); Lightning sets its epoch,
    outside Lightning call ``loader.sampler.set_epoch(epoch)`` as for any ``DistributedSampler``.
    """

    def __init__(self, dataset: Dataset, *args: Any, seed: int = 0, rank: int = 0, **kwargs: Any):
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, *args, **kwargs)
        self.seed, self.rank = seed, rank

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", 0))

    def _start_epoch(self) -> Iterator[Any]:
        s = epoch_seed(self.seed, self.epoch, self.rank)
        if self.generator is not None:
            self.generator.manual_seed(s)
        torch.manual_seed(s)
        np.random.seed(s % 2**32)
        random.seed(s)
        return super().__iter__()

    def __iter__(self) -> _EpochIterator:  # type: ignore[override]
        return _EpochIterator(self)


def epoch_sampler(dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                  seed: int = 0) -> DistributedSampler:
    """torch's ``DistributedSampler`` (permutation seeded by seed + epoch, one shard per rank).

    Being a ``DistributedSampler`` already, Lightning keeps it under DDP instead of replacing it.
    """
    return DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed,
                              drop_last=False)
