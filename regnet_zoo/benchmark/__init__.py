"""Throughput, FLOP/s-vs-peak and training-memory measurement against timm, torchvision, EfficientNet."""

from regnet_zoo.benchmark.memory import (
    cuda_training_peak_bytes,
    process_training_peak_bytes,
    saved_activation_bytes,
)
from regnet_zoo.benchmark.models import (
    EFFICIENTNET_RESOLUTION,
    FLOPS_MATCHED,
    efficientnet_complexity,
    efficientnet_resolution,
    traced_complexity,
)
from regnet_zoo.benchmark.peak import Peak, conv1x1_flops, measure_peak
from regnet_zoo.benchmark.report import Report, summary
from regnet_zoo.benchmark.runner import BenchConfig, run_benchmark
from regnet_zoo.benchmark.timing import Timing, time_interleaved

__all__ = ["EFFICIENTNET_RESOLUTION", "FLOPS_MATCHED", "BenchConfig", "Peak", "Report", "Timing", "conv1x1_flops",
           "cuda_training_peak_bytes", "efficientnet_complexity", "efficientnet_resolution", "measure_peak",
           "process_training_peak_bytes", "run_benchmark", "saved_activation_bytes", "summary", "time_interleaved",
           "traced_complexity"]
