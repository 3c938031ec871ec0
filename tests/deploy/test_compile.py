"""torch.compile (inductor, weight freezing) of the fused channels_last fp32 / bf16 model on a tiny RegNet."""

from __future__ import annotations

import shutil

import pytest
import torch

import regnet_zoo
from regnet_zoo.config import AnyNetCfg, StageCfg
from regnet_zoo.inference import FrozenCompiled, cpu_capabilities, optimize_for_inference

TINY = AnyNetCfg(stages=(StageCfg(1, 16, 8, 1.0, 2), StageCfg(1, 32, 8, 1.0, 2)), stem_width=8, se_ratio=0.25)


needs_compiler = pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                    reason="inductor on CPU needs a C++ compiler")


@pytest.mark.slow
@needs_compiler
def test_compiled_optimised_model_matches_eager(bn_randomizer):
    torch.manual_seed(0)
    model = bn_randomizer(regnet_zoo.create(TINY, num_classes=10)).eval()
    from torch._inductor.utils import run_and_get_code  # heavy import: only where it runs

    fast = optimize_for_inference(model, compile=True)
    assert isinstance(fast, FrozenCompiled)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
        got, codes = run_and_get_code(fast, x.contiguous(memory_format=torch.channels_last))
        again = fast(torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert again.shape == (2, 10)
    # the weights really were frozen: graph constants, prepacked for oneDNN convs fused with their ReLU
    # (torch.compile(options={"freezing": True}) alone leaves them graph inputs and calls plain convolutions)
    code = "\n".join(codes)
    assert "_frozen_param" in code and "mkldnn._convolution_pointwise" in code


@pytest.mark.slow
@needs_compiler
@pytest.mark.skipif(not cpu_capabilities()["mkldnn_bf16"], reason="this CPU cannot run oneDNN bf16")
def test_compiled_bf16_model_matches_fp32(bn_randomizer):
    torch.manual_seed(0)
    model = bn_randomizer(regnet_zoo.create(TINY, num_classes=10)).eval()
    fast = optimize_for_inference(model, "bf16", compile=True)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        ref, got = model(x), fast(x)
    assert got.dtype == torch.float32
    assert float((got - ref).abs().max() / ref.abs().max()) < 3e-2


def test_compile_mode_and_options_conflict():
    from regnet_zoo.inference import compile_model

    with pytest.raises(ValueError, match="either mode or options"):
        compile_model(torch.nn.Linear(2, 2), mode="max-autotune", epilogue_fusion=False)
    # freezing is not an option any more (it is applied around each call), so it combines with a mode
    assert isinstance(compile_model(torch.nn.Linear(2, 2), mode="max-autotune"), FrozenCompiled)
