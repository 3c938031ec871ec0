"""RegNetZ (linear inverted-bottleneck block, SiLU, head conv) and SEER's RegNetY-10B against the paper code.

Reference: pycls 0.1.1 (PyPI) has no ``ResBottleneckLinearBlock`` or ``HEAD_W``; pycls master defines
``ResBottleneckLinearBlock.complexity`` as ``BottleneckTransform.complexity`` and the head conv as
``conv2d_cx`` + ``norm2d_cx`` before ``AnyHead``'s pool + fc. So the reference below is pycls 0.1.1's own
``BottleneckTransform``/``SimpleStemIN``/``AnyHead`` counters and ``complexity_conv2d``/``batchnorm2d``,
composed as pycls master composes them, on stages from pycls 0.1.1's generator.
"""

from dataclasses import replace

import numpy as np
import pytest
import torch
from pycls.core import net as pycls_net  # pinned test dependency: the paper's code
from pycls.models import anynet as pycls_anynet
from pycls.models import regnet as pycls_regnet
from torch import nn

import regnet_zoo
from regnet_zoo.config import BlockConfigError, RegNetCfg, StageCfg, cfg_from_dict
from regnet_zoo.counting import anynet_arrays, complexity_arrays, model_complexity
from regnet_zoo.generator import adjust_block_compatibility
from regnet_zoo.models import AnyNet, Bottleneck
from regnet_zoo.registry import MODELS, get_entry

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def pycls_stages(cfg: RegNetCfg):
    """Stage depths, widths, group widths by pycls 0.1.1's generator and compatibility step."""
    ws, _, _, _ = pycls_regnet.generate_regnet(cfg.wa, cfg.w0, cfg.wm, cfg.depth)
    ws, ds = pycls_regnet.get_stages_from_blocks(ws, ws)
    gs = [cfg.group_width] * len(ws)
    # 0.1.1's rule rounds bottlenecks to multiples of g; master's to lcm(g, bot_mul): equal here
    assert all(np.lcm(g, int(cfg.bot_mul)) == g for g in gs) or cfg.bot_mul <= 1
    ws, gs = pycls_regnet.adjust_ws_gs_comp(ws, [cfg.bot_mul] * len(ws), gs)
    return ds, ws, gs


def pycls_complexity(cfg: RegNetCfg, resolution: int) -> dict[str, int]:
    ds, ws, gs = pycls_stages(cfg)
    block = pycls_anynet.BottleneckTransform if cfg.block == "z" else pycls_anynet.ResBottleneckBlock
    cx = {"h": resolution, "w": resolution, "flops": 0, "params": 0, "acts": 0}
    cx = pycls_anynet.SimpleStemIN.complexity(cx, 3, cfg.stem_width)
    prev = cfg.stem_width
    for d, w, g in zip(ds, ws, gs):
        cx = pycls_anynet.AnyStage.complexity(cx, prev, w, 2, d, block, cfg.bot_mul, g, cfg.se_ratio or None)
        prev = w
    if cfg.head_width:
        cx = pycls_net.complexity_conv2d(cx, prev, cfg.head_width, 1, 1, 0)
        cx = pycls_net.complexity_batchnorm2d(cx, cfg.head_width)
        prev = cfg.head_width
    cx = pycls_anynet.AnyHead.complexity(cx, prev, 1000)
    return {m: cx[m] for m in ("flops", "params", "acts")}


@pytest.mark.parametrize("name,resolution", [("regnetz_500mf", 224), ("regnetz_500mf", 256), ("regnetz_4gf", 224),
                                             ("regnetz_4gf", 256), ("regnety_10b", 224)])
def test_complexity_equals_paper_code(name, resolution):
    cfg = get_entry(name).cfg
    arch = cfg.to_anynet()
    assert (arch.depths, arch.widths, arch.group_widths) == tuple(list(x) for x in pycls_stages(cfg))
    assert regnet_zoo.complexity(name, resolution=resolution) == pycls_complexity(cfg, resolution)


def test_registry_rows_and_published_sizes():
    z5, z4 = get_entry("RegNetZ-500MF"), get_entry("regnet_z_4gf")  # ClassyVision's names resolve too
    assert (z5.name, z5.display, z5.timm_name) == ("regnetz_500mf", "RegNetZ-500MF", "regnetz_005")
    assert (z4.name, z4.display, z4.timm_name) == ("regnetz_4gf", "RegNetZ-4GF", None)
    for e in (z5, z4):
        c = e.cfg
        assert (c.block, c.activation, c.bot_mul, c.se_ratio, c.head_width) == ("z", "silu", 4.0, 0.25, 1024)
    assert z5.cfg.to_anynet().depths == [1, 4, 9, 7] and z5.cfg.to_anynet().widths == [16, 40, 104, 256]
    # Xiao et al. 2021, Table 2: RegNetZ-4GF 4.0 GF, 28.1 M params, 24.3 M acts (256 px), one decimal;
    # the other head widths in use (timm's 0 and 1536) would not match its params.
    cx = regnet_zoo.complexity("regnetz_4gf", resolution=256)
    assert abs(cx["flops"] / 1e9 - 4.0) < 0.1 and abs(cx["params"] / 1e6 - 28.1) < 0.1
    assert abs(cx["acts"] / 1e6 - 24.3) < 0.1
    for hw in (0, 1536):
        other = model_complexity(replace(z4.cfg, head_width=hw), resolution=256)
        assert abs(other["params"] / 1e6 - 28.1) > 0.7
    # VISSL's RegNetY-10B yaml: stage_checkpoints [[2], [7], [9, 17], [1]], head dims [28280, 1000]
    seer = get_entry("RegNetY-10B").cfg.to_anynet()
    assert seer.depths == [2, 7, 17, 1] and seer.widths[-1] == 28280 and seer.se_ratio == 0.25
    assert get_entry("regnety_10b").timm_name is None


def test_config_fields_validate_and_round_trip():
    z = get_entry("regnetz_4gf").cfg
    assert cfg_from_dict(z.to_dict()) == z and cfg_from_dict(z.to_anynet().to_dict()) == z.to_anynet()
    old = {k: v for k, v in get_entry("regnety_4.0gf").cfg.to_dict().items()
           if k not in ("block", "activation", "head_width")}  # a dict written before these fields
    loaded = cfg_from_dict(old)
    assert (loaded.block, loaded.activation, loaded.head_width) == ("x", "relu", 0)
    assert loaded == get_entry("regnety_4.0gf").cfg
    for bad in (dict(block="y"), dict(activation="swish"), dict(head_width=-8), dict(head_width=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            replace(z, **bad)
        with pytest.raises(ValueError, match=next(iter(bad))):
            replace(z.to_anynet(), **bad)


@pytest.mark.parametrize("kwargs", [
    dict(width=40, group_width=64),  # a group wider than the bottleneck
    dict(width=40, group_width=16),  # bottleneck 40 not a multiple of 16
    dict(width=10, group_width=1, bot_mul=0.25),  # 2.5 channels
])
def test_stage_the_block_cannot_build(kwargs):
    with pytest.raises(BlockConfigError):
        StageCfg(depth=1, **kwargs)


def test_compatibility_uses_lcm_for_expanding_bottlenecks():
    # pycls master: w=100, b=4 -> v=400; g=6 -> m = lcm(6, 4) = 12; round(400/12) = 33 -> 396 -> w = 99
    ws, bs, gs = adjust_block_compatibility([100], [4.0], [6])
    assert (ws, bs, gs) == ([99], [4.0], [6])
    assert StageCfg(1, 99, 6, 4.0).groups == 66


def test_vectorised_mixed_blocks_and_heads_match_one_by_one():
    rng = np.random.default_rng(3)
    cfgs = []
    while len(cfgs) < 60:
        z = bool(rng.integers(2))
        try:
            cfgs.append(RegNetCfg(depth=int(rng.integers(4, 25)), w0=int(rng.integers(2, 12)) * 8,
                                  wa=float(rng.uniform(5, 60)), wm=float(rng.uniform(1.8, 2.8)),
                                  group_width=int(rng.choice([4, 8, 16])), bot_mul=4.0 if z else 1.0,
                                  se_ratio=0.25, block="z" if z else "x",
                                  head_width=int(rng.choice([0, 512, 1024]))).to_anynet())
        except ValueError:
            continue
    out = complexity_arrays(**anynet_arrays(cfgs), resolution=128)
    for i, c in enumerate(cfgs):
        assert [int(out[m][i]) for m in ("flops", "params", "acts")] == list(model_complexity(c, 128).values())


def test_linear_block_by_hand():
    torch.manual_seed(0)
    same = Bottleneck(16, 16, bot_mul=4.0, group_width=4, se_ratio=0.25, block="z", activation="silu").eval()
    down = Bottleneck(16, 32, stride=2, bot_mul=4.0, group_width=4, se_ratio=0.25, block="z",
                      activation="silu").eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        f = same.conv3(same.se(same.conv2(same.conv1(x))))
        assert torch.equal(same(x), f + x)  # identity shortcut, no activation after the sum
        assert torch.equal(down(x), down.conv3(down.se(down.conv2(down.conv1(x)))))  # no shortcut at all
    assert same.has_skip and not down.has_skip and not down.has_projection
    assert not any(k.startswith("downsample") for k in down.state_dict())
    assert same.se.fc1.out_channels == 4 and isinstance(same.se.act, nn.SiLU)  # SE width from the input width
    assert isinstance(same.conv1.bn.act, nn.SiLU) and isinstance(same.act3, nn.Identity)


def test_regnetz_model_api():
    m = regnet_zoo.create("regnetz_500mf").eval()
    assert not any(isinstance(x, nn.ReLU) for x in m.modules())
    assert isinstance(m.stem.bn.act, nn.SiLU) and isinstance(m.final_conv.bn.act, nn.SiLU)
    assert m.num_features == m.head_hidden_size == 1024 and m.get_classifier().in_features == 1024
    assert [b.has_skip for b in m.s2.children()] == [False, True, True, True]
    with torch.no_grad():
        feats = m.forward_features(X)
        assert feats.shape == (2, 1024, 2, 2)
        assert torch.equal(m(X), m.forward_head(feats))
        assert m.forward_head(feats, pre_logits=True).shape == (2, 1024)
        final, inter = m.forward_intermediates(X)
        assert torch.equal(final, feats) and [t.shape[1] for t in inter] == [32, 16, 40, 104, 256]
        f = regnet_zoo.create("regnetz_500mf", features_only=True)
        f.load_state_dict(m.state_dict(), strict=False)
        assert all(torch.equal(a, b) for a, b in zip(f.eval()(X), inter))
    m.reset_classifier(10)
    assert m(X).shape == (2, 10) and m.get_classifier().in_features == 1024
    kept = regnet_zoo.create("regnetz_500mf")
    kept.prune_intermediate_layers((1, 2, 3, 4), prune_head=False)  # all stages kept: head conv stays (timm)
    assert isinstance(kept.final_conv, nn.Module) and kept.num_features == 1024
    m.prune_intermediate_layers((1, 2, 3), prune_head=False)
    assert isinstance(m.final_conv, nn.Identity) and m.num_features == 104
    assert m(X).shape == (2, 104, 4, 4)  # head conv pruned with s4: the classifier goes too, as timm
    assert m.complexity(64)["params"] == sum(p.numel() for p in m.parameters())


def test_regnetz_zero_init_drop_path_dilation_checkpointing_fx():
    cfg = get_entry("regnetz_500mf").cfg
    m = AnyNet(cfg, drop_path_rate=0.3)
    blocks = [b for b in m.modules() if isinstance(b, Bottleneck)]
    assert all(bool((b.conv3.bn.weight == 0).all()) == b.has_skip for b in blocks)  # no-skip blocks keep signal
    live = AnyNet(cfg, drop_path_rate=0.3, zero_init_last=False)  # zeroed branches would hide drop path
    with torch.no_grad():
        assert m.eval()(X).abs().sum() > 0
        torch.manual_seed(1)
        a = live.train()(X)
        torch.manual_seed(2)
        assert not torch.equal(a, live(X))  # drop path active in training
        assert torch.equal(live.eval()(X), live(X))
    d = AnyNet(cfg, output_stride=16).eval()
    assert [b.has_skip for b in d.modules() if isinstance(b, Bottleneck)] == [b.has_skip for b in blocks]
    assert d.forward_features(X).shape == (2, 1024, 4, 4) and list(d.state_dict()) == list(m.state_dict())
    d.load_state_dict(m.state_dict())
    ref = m.eval()(X)
    m.set_grad_checkpointing(True)
    x = X.clone().requires_grad_(True)
    out = m.train()(x)
    out.sum().backward()
    assert x.grad is not None and out.shape == ref.shape
    # torch.fx: every RegNetZ part (stages with skip/no-skip blocks, head conv, head) traces and matches
    body = nn.Sequential(*[getattr(m, n) for n in m.stage_names], m.final_conv, m.head).eval()
    traced = torch.fx.symbolic_trace(body)
    h = m.stem(X)
    with torch.no_grad():
        assert torch.equal(traced(h), body(h))


def test_timm_expresses_z_configs_without_a_registered_twin():
    """hf config.json: a Z model timm has no name for is timm's RegNet with its linear-out options."""
    import timm

    from regnet_zoo.weights.hf_config import timm_args_for

    z4 = get_entry("regnetz_4gf").cfg
    arch, args = timm_args_for(z4)
    assert (arch, args["linear_out"], args["downsample"], args["num_features"]) == ("regnety_002", True, "", 1024)
    ref = timm.create_model(arch, **args).eval()
    ours = AnyNet(z4).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(ours(X), ref(X))
    assert timm_args_for(replace(z4, head_width=0)) is None  # timm adds a SiLU before its pool there
    assert timm_args_for(get_entry("regnetz_500mf").cfg) == ("regnetz_005", {})
    arch, args = timm_args_for(get_entry("regnety_10b").cfg)
    assert arch == "regnety_002" and "act_layer" not in args  # plain RegNetY options only


def test_models_without_timm_twin_register_with_timm_by_canonical_name():
    import timm

    names = regnet_zoo.register_timm_models()
    assert {"regnet_zoo_regnetz_005", "regnet_zoo_regnetz_4gf", "regnet_zoo_regnety_10b"} <= set(names)
    assert len(names) == len(set(names)) == len(MODELS)
    m = timm.create_model("regnet_zoo_regnetz_4gf", device="meta")
    assert isinstance(m, AnyNet) and m.cfg == get_entry("regnetz_4gf").cfg
