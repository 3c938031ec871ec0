"""The deployment benchmark of regnet-zoo: zoo models vs timm / torchvision / EfficientNet-B0..B5.

Runs ``regnet-zoo benchmark --preset full`` (eager, channels_last, BN-fused and torch.compile'd
inference; training steps in NCHW and channels_last; activation memory; the RegNetX-8.0GF vs
EfficientNet-B5 headline) and writes ``benchmarks/results/deploy-<device>.json`` and ``.png``.
Run it on a quiet machine; extra arguments are passed on (e.g. ``--threads 16``, ``--device cuda``)::

    python benchmarks/deploy_speed.py               # CPU, 2 threads: about 50 minutes, ~12 GB free RAM
    python benchmarks/deploy_speed.py --device cuda  # GPU, bf16 autocast, batch 256 / 128: about 15 minutes
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from regnet_zoo.cli.deploy import main


def run(argv: list[str]) -> int:
    device = "cuda" if ("--device" in argv and "cuda" in argv[argv.index("--device") + 1]) or (
        "--device" not in argv and torch.cuda.is_available()) else "cpu"
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    return main("benchmark", ["--preset", "full", "--json", str(out / f"deploy-{device}.json"),
                              "--plot", str(out / f"deploy-{device}.png"), *argv])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
