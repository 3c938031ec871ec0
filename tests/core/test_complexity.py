"""Exact complexity against independent references: the built model, torch's FlopCounterMode, hooks."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import regnet_zoo
from regnet_zoo.config import AnyNetCfg, RegNetCfg, StageCfg
from regnet_zoo.counting import anynet_arrays, complexity_arrays, model_complexity
from regnet_zoo.models import AnyNet
from regnet_zoo.registry import MODELS, get_entry


@pytest.mark.parametrize("name", list(MODELS))
def test_params_equal_built_model(name):
    cfg = MODELS[name].cfg
    with torch.device("meta"):  # no memory, exact shapes
        model = AnyNet(cfg)
    assert sum(p.numel() for p in model.parameters()) == regnet_zoo.complexity(name)["params"]


def _traced(model: nn.Module, resolution: int, in_chans: int = 3) -> tuple[int, int, int]:
    """(torch FlopCounterMode flops, outputs of conv/linear layers, outputs of those with a bias)."""
    outs = {"all": 0, "bias": 0}

    def hook(mod, _inp, out):
        outs["all"] += out[0].numel()
        if mod.bias is not None:
            outs["bias"] += out[0].numel()

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(torch.randn(1, in_chans, resolution, resolution))
    for h in handles:
        h.remove()
    return counter.get_total_flops(), outs["all"], outs["bias"]


@pytest.mark.parametrize("name,resolution", [("regnetx_200mf", 224), ("regnety_200mf", 224),
                                             ("regnety_600mf", 193), ("regnetx_400mf_tv", 97),
                                             ("regnetz_500mf", 224), ("regnetz_4gf", 131)])
def test_flops_and_acts_against_traced_counter(name, resolution):
    """FlopCounterMode counts 2 FLOPs per multiply-add and no bias adds; pycls counts 1 and adds one per
    biased output. So traced == 2 * (ours - outputs of biased layers), exactly; acts == all outputs."""
    model = AnyNet(get_entry(name).cfg)
    traced, acts, bias_outs = _traced(model, resolution)
    cx = regnet_zoo.complexity(name, resolution=resolution)
    assert traced == 2 * (cx["flops"] - bias_outs)
    assert acts == cx["acts"]


def test_anynet_with_bottleneck_and_strides_against_traced_counter():
    cfg = AnyNetCfg(stages=(StageCfg(2, 32, 8, 0.5, 1), StageCfg(3, 64, 16, 0.25), StageCfg(1, 96, 24, 1.0, 2),
                            StageCfg(2, 128, 32, 1.0, 1)), stem_width=24, se_ratio=0.25)
    model = AnyNet(cfg, in_chans=1, num_classes=7)
    traced, acts, bias_outs = _traced(model, 45, in_chans=1)
    cx = model_complexity(cfg, resolution=45, in_chans=1, num_classes=7)
    assert traced == 2 * (cx["flops"] - bias_outs)
    assert acts == cx["acts"]
    assert sum(p.numel() for p in model.parameters()) == cx["params"]
    assert model.complexity(45) == cx


@pytest.mark.parametrize("name", ["regnetx_8.0gf", "regnety_4.0gf", "regnety_8.0gf_tv", "regnetz_4gf", "regnety_10b"])
def test_module_complexity_equals_vectorised(name):
    with torch.device("meta"):
        model = AnyNet(MODELS[name].cfg)
    for res in (224, 256, 161):
        assert model.complexity(res) == regnet_zoo.complexity(name, resolution=res)


def test_per_stage_sums_to_total():
    cx = regnet_zoo.complexity("regnetx_200mf", per_stage=True)
    assert [s["name"] for s in cx["stages"]] == ["stem", "s1", "s2", "s3", "s4", "head"]
    for m in ("flops", "params", "acts"):
        assert sum(s[m] for s in cx["stages"]) == cx[m]
    # stem by hand: 3x3 conv 3->32 at 112x112 + BN
    assert cx["stages"][0] == {"name": "stem", "flops": 9 * 3 * 32 * 112 * 112, "params": 9 * 3 * 32 + 64,
                               "acts": 32 * 112 * 112}
    # head by hand: 368 -> 1000 linear with bias
    assert cx["stages"][-1] == {"name": "head", "flops": 368 * 1000 + 1000, "params": 368 * 1000 + 1000,
                                "acts": 1000}


def test_vectorised_over_many_configs_matches_one_by_one():
    rng = np.random.default_rng(1)
    cfgs = []
    while len(cfgs) < 200:
        try:
            cfgs.append(RegNetCfg(depth=int(rng.integers(1, 30)), w0=int(rng.integers(1, 20)) * 8,
                                  wa=float(rng.uniform(0, 100)), wm=float(rng.uniform(1.5, 3)),
                                  group_width=int(rng.choice([1, 8, 16, 24])),
                                  se_ratio=float(rng.choice([0.0, 0.25]))).to_anynet())
        except ValueError:
            continue
    out = complexity_arrays(**anynet_arrays(cfgs), resolution=160)
    for i, c in enumerate(cfgs):
        one = model_complexity(c, resolution=160)
        assert [int(out[m][i]) for m in ("flops", "params", "acts")] == [one["flops"], one["params"], one["acts"]]


def test_padded_arrays_with_absent_stages_match_single_models():
    """10^5 padded configs in one call; a sample of them (absent stages included) checked one by one."""
    n = 100_000
    rng = np.random.default_rng(0)
    depths = rng.integers(0, 6, (n, 4))
    depths[:, 0] = np.maximum(depths[:, 0], 1)
    widths = rng.integers(1, 64, (n, 4)) * 8
    group_widths = np.full((n, 4), 8)
    out = complexity_arrays(depths, widths, group_widths, resolution=96)
    assert out["flops"].shape == (n,)
    for i in rng.choice(n, 30, replace=False):
        stages = tuple(StageCfg(int(d), int(w), 8) for d, w in zip(depths[i], widths[i]) if d > 0)
        one = model_complexity(AnyNetCfg(stages=stages), resolution=96)
        assert [int(out[m][i]) for m in ("flops", "params", "acts")] == [one["flops"], one["params"], one["acts"]]


def test_bad_resolution():
    with pytest.raises(ValueError, match="resolution"):
        regnet_zoo.complexity("regnetx_200mf", resolution=0)


def test_module_complexity_counts_wide_pools_and_dilated_projections():
    """Against the built model: 'catavgmax' doubles the classifier input; a dilation change adds a projection."""
    m = AnyNet(MODELS["regnetx_200mf"].cfg, global_pool="catavgmax")
    assert m.complexity(224)["params"] == sum(p.numel() for p in m.parameters())
    cfg = AnyNetCfg(stages=(StageCfg(1, 16, 8), StageCfg(1, 32, 8), StageCfg(2, 32, 8, stride=2),
                            StageCfg(1, 32, 8)))
    d = AnyNet(cfg, output_stride=8)
    assert any(b.has_projection and b.in_chs == b.out_chs and b.stride == 1 for b in d.modules()
               if hasattr(b, "has_projection"))
    assert d.complexity(64)["params"] == sum(p.numel() for p in d.parameters())
    traced, acts, bias_outs = _traced(d, 64)
    assert traced == 2 * (d.complexity(64)["flops"] - bias_outs) and acts == d.complexity(64)["acts"]
