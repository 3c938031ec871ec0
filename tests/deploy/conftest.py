"""Shared fixtures for the deploy tests: zoo weights with non-trivial BatchNorm statistics.

``benchmarks/`` (the full benchmark protocol, ``harness``, and ``deploy_speed.py``; not in the installed
package) goes on ``sys.path`` for the benchmark tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import regnet_zoo

BENCHMARKS = str(Path(__file__).resolve().parents[2] / "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BN random running stats and affine params (a fresh model's BN is nearly the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) - 0.5)
    return model


@pytest.fixture(scope="session")
def bn_randomizer():
    return randomize_batchnorm


@pytest.fixture(scope="session")
def x200_weights(tmp_path_factory) -> str:
    """A .safetensors file of regnetx_200mf (timm layout) with random BN statistics."""
    torch.manual_seed(0)
    model = randomize_batchnorm(regnet_zoo.create("regnetx_200mf"), seed=1)
    path = tmp_path_factory.mktemp("weights") / "regnetx_200mf_bn.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)
