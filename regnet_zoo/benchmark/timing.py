"""Interleaved wall-clock timing of several workloads (robust to a shared, noisy machine).

Every repeat runs each workload once in a rotating order, so slow phases of the machine hit all of
them alike; the median over repeats is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass
class Timing:
    """Seconds per call of one workload (one call processes ``batch`` images)."""

    name: str
    batch: int
    seconds: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)

    @property
    def min_s(self) -> float:
        return min(self.seconds)

    @property
    def images_per_s(self) -> float:
        """Throughput of the median call."""
        return self.batch / self.median_s

    @property
    def best_images_per_s(self) -> float:
        """Throughput of the fastest call: the least disturbed by other load on a shared machine."""
        return self.batch / self.min_s

    @property
    def spread(self) -> float:
        """(max - min) / median of the per-repeat times: the run-to-run noise."""
        return (max(self.seconds) - min(self.seconds)) / self.median_s


def time_interleaved(
    cases: Mapping[str, Callable[[], object]],
    batch: int | Mapping[str, int],
    *,
    warmup: int = 1,
    repeats: int = 5,
    iters: int = 1,
    sync: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time ``cases`` (name -> zero-argument callable running one batch) interleaved.

    Args:
        batch: images per call, one for all or per case name.
        warmup: untimed calls of each case first (compilation, allocator, caches).
        repeats: timed rounds; each case's time is the median over rounds.
        iters: calls per case and round (their mean is the round's time).
        sync: called before reading the clock (``torch.cuda.synchronize`` on GPU).
    """
    if repeats < 1 or iters < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1, iters >= 1, warmup >= 0; got {repeats}, {iters}, {warmup}")
    sync = sync or (lambda: None)
    names = list(cases)
    out = {n: Timing(n, batch if isinstance(batch, int) else batch[n]) for n in names}
    for _ in range(warmup):
        for n in names:
            cases[n]()
    sync()
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            start = time.perf_counter()
            for _ in range(iters):
                cases[n]()
            sync()
            out[n].seconds.append((time.perf_counter() - start) / iters)
    return out
