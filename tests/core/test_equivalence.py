"""Our model against timm's and torchvision's implementations (independent code): same state dict, same outputs."""

import pytest
import timm
import torch
import torchvision

from regnet_zoo.models import AnyNet
from regnet_zoo.registry import MODELS, get_entry

# the paper's models, torchvision's roundings and the RegNetZ that timm has (regnetz_005)
PAPER_AND_TV = [n for n, e in MODELS.items() if e.paper or e.cfg.rounding == "torchvision"
                or (e.cfg.block == "z" and e.timm_name)]


def _randomize_bn(model: torch.nn.Module, seed: int) -> None:
    """Give BN non-trivial statistics and affine terms (init leaves them 1/0, which hides mix-ups)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                for t in (m.weight, m.bias, m.running_mean):
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2 + (1.0 if t is m.weight else 0.0))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def _fast_first(names: list[str], fast: set[str]) -> list:
    """``names`` as params; all but ``fast`` (small models, one of each kind) marked slow: the full sweep runs in CI."""
    return [pytest.param(n, marks=() if n in fast else pytest.mark.slow) for n in names]


@pytest.mark.parametrize("name", _fast_first(PAPER_AND_TV, {"regnetx_200mf", "regnety_200mf", "regnetx_400mf_tv",
                                                            "regnety_800mf_tv", "regnetz_500mf"}))
def test_timm_state_dict_loads_strictly_and_outputs_match(name):
    entry = MODELS[name]
    torch.manual_seed(0)
    ref = timm.create_model(entry.timm_name, pretrained=False).eval()
    _randomize_bn(ref, 1)
    ours = AnyNet(entry.cfg).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())  # same keys, same order
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))


# regnet_y_128gf (645M params) is too big for a unit test; test_generator checks its stages against torchvision.
TORCHVISION = sorted({e.torchvision_name for e in MODELS.values() if e.torchvision_name} - {"regnet_y_128gf"})


@pytest.mark.parametrize("tv_name", _fast_first(TORCHVISION, {"regnet_x_400mf", "regnet_y_400mf", "regnet_y_800mf"}))
def test_torchvision_models_convert_exactly(tv_name):
    """torchvision's random model -> timm's converter (its own, independent code) -> our model."""
    from timm.models.regnet import _filter_fn

    torch.manual_seed(0)
    ref = getattr(torchvision.models, tv_name)().eval()
    _randomize_bn(ref, 2)
    ours = AnyNet(get_entry(tv_name).cfg).eval()
    ours.load_state_dict(_filter_fn(ref.state_dict()), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=1e-6)



def test_regnetz_head_conv_width_equals_timm_regnetz_040_h():
    """Our RegNetZ-4GF with timm's 1536-wide head conv is timm's regnetz_040_h (its other head choice)."""
    from dataclasses import replace

    torch.manual_seed(0)
    ref = timm.create_model("regnetz_040_h", pretrained=False).eval()
    _randomize_bn(ref, 3)
    ours = AnyNet(replace(MODELS["regnetz_4gf"].cfg, head_width=1536)).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(ours(x), ref(x))
        assert torch.equal(ours.forward_features(x), ref.forward_features(x))
