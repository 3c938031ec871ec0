"""torch.compile (inductor, weight freezing) of the fused channels_last model on a tiny RegNet."""

from __future__ import annotations

import shutil

import pytest
import torch

import regnet_zoo
from regnet_zoo.config import AnyNetCfg, StageCfg
from regnet_zoo.inference import optimize_for_inference

TINY = AnyNetCfg(stages=(StageCfg(1, 16, 8, 1.0, 2), StageCfg(1, 32, 8, 1.0, 2)), stem_width=8, se_ratio=0.25)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="inductor on CPU needs a C++ compiler")
def test_compiled_optimised_model_matches_eager(bn_randomizer):
    torch.manual_seed(0)
    model = bn_randomizer(regnet_zoo.create(TINY, num_classes=10)).eval()
    fast = optimize_for_inference(model, compile=True)
    assert isinstance(fast, torch._dynamo.eval_frame.OptimizedModule)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        got = fast(x.contiguous(memory_format=torch.channels_last))
        again = fast(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert again.shape == (2, 10)


def test_compile_mode_and_options_conflict():
    from regnet_zoo.inference import compile_model

    with pytest.raises(ValueError, match="either mode or options"):
        compile_model(torch.nn.Linear(2, 2), mode="max-autotune")
