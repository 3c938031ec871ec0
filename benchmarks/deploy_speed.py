"""The deployment benchmark of regnet-zoo: zoo models vs timm / torchvision / EfficientNet-B0..B5.

Runs ``regnet-zoo benchmark --preset full``: per model (RegNetX-200MF, -800MF, -1.6GF, RegNetY-4.0GF,
RegNetX-8.0GF) eager NCHW and channels_last inference and training steps of our model, timm's and
torchvision's, and our BN-fused channels_last and torch.compile'd inference; the flops-matched pairs of
the paper's Table 4 (RegNetY-400MF/B0, Y-600MF/B1, Y-800MF/B2, Y-1.6GF/B3, Y-4.0GF/B4, X-8.0GF and
Y-8.0GF/B5, EfficientNets at their native resolutions) timed side by side, whose X-8.0GF/B5 pair is the
headline; FLOP/s as a fraction of the measured peak; training-step memory (bytes saved for backward and
the measured peak) vs the analytic activations. Writes ``benchmarks/results/deploy-<device>.json`` and
``.png`` and prints a summary. Run it on a quiet machine; extra arguments are passed on::

    python benchmarks/deploy_speed.py                # CPU, 2 threads, quiet machine: about 30 min (20-45), < 10 GB RAM
    python benchmarks/deploy_speed.py --device cuda  # GPU, bf16 autocast, batch 256 / 128
"""

from __future__ import annotations

import sys
from pathlib import Path

from regnet_zoo.cli.deploy import benchmark_device, main

RESULTS = Path(__file__).resolve().parent / "results"


def benchmark_args(argv: list[str], results: Path = RESULTS) -> list[str]:
    """The ``regnet-zoo benchmark`` arguments: full preset, JSON + PNG named by device, then ``argv``."""
    device = benchmark_device(argv)  # parsed like the benchmark itself: --device=cuda, --device auto, ...
    return ["--preset", "full", "--json", str(results / f"deploy-{device}.json"),
            "--plot", str(results / f"deploy-{device}.png"), *argv]


def run(argv: list[str]) -> int:
    return main("benchmark", benchmark_args(argv))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
