"""Throughput, FLOP/s-vs-peak and activation-memory measurement against timm, torchvision, EfficientNet."""

from regnet_zoo.benchmark.memory import cuda_training_peak_bytes, saved_activation_bytes
from regnet_zoo.benchmark.peak import Peak, conv1x1_flops, measure_peak
from regnet_zoo.benchmark.runner import BenchConfig, Report, run_benchmark, summary
from regnet_zoo.benchmark.timing import Timing, time_interleaved

__all__ = ["BenchConfig", "Peak", "Report", "Timing", "conv1x1_flops", "cuda_training_peak_bytes", "measure_peak",
           "run_benchmark", "saved_activation_bytes", "summary", "time_interleaved"]
