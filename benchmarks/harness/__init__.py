"""The full benchmark protocol behind ``benchmarks/deploy_speed.py`` (not part of the installed package).

Throughput of zoo models vs timm / torchvision (same architecture) and vs the flops-matched
EfficientNets of the paper's Table 4, FLOP/s vs the measured peak, training-step memory. Timing uses
the package's ``regnet_zoo.inference.speed.time_interleaved`` (the thin ``regnet-zoo benchmark``
command's timer); modules: ``runner`` (``BenchConfig``, ``run_benchmark``), ``models``, ``memory``,
``peak``, ``report`` (``Report``, ``summary``), ``plot``. Import with ``benchmarks/`` on ``sys.path``.
"""

from harness.report import Report, summary
from harness.runner import BenchConfig, run_benchmark

__all__ = ["BenchConfig", "Report", "run_benchmark", "summary"]
