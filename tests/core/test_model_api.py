"""timm-compatible model API: features, heads, drop path, channels, init, timm registration."""

import math
import subprocess
import sys

import pytest
import timm
import torch
from safetensors.torch import save_file

import regnet_zoo
from regnet_zoo.config import RegNetCfg
from regnet_zoo.models import AnyNet
from regnet_zoo.registry import UnknownModelError
from regnet_zoo.weights import WeightsError, WeightsMismatchError

X = torch.randn(2, 3, 64, 64)


def test_create_by_every_kind_of_name():
    for name in ("regnety_4.0gf", "RegNetY-4.0GF", "regnety_040", "regnet_y_4gf", "RegNetY-4000"):
        m = regnet_zoo.create(name)
        assert m.pretrained_cfg["architecture"] == "regnety_4.0gf"
    with pytest.raises(UnknownModelError, match="closest: regnety_4.0gf"):
        regnet_zoo.create("regnety_4.0fg")


def test_create_from_cfg_and_dict():
    cfg = RegNetCfg(depth=13, w0=24, wa=36.44, wm=2.49, group_width=8)
    m = regnet_zoo.create(cfg, num_classes=10)
    assert m(X).shape == (2, 10)
    m2 = regnet_zoo.create(cfg.to_dict(), num_classes=10)
    assert list(m2.state_dict()) == list(m.state_dict())
    with pytest.raises(TypeError):
        regnet_zoo.create(3.5)


@pytest.mark.parametrize("out_indices", [None, (1, 2, 3, 4), (0, 4), (-1,)])
def test_features_only(out_indices):
    f = regnet_zoo.create("regnetx_200mf", features_only=True, out_indices=out_indices)
    feats = f(X)
    all_ch, all_red = [32, 24, 56, 152, 368], [2, 4, 8, 16, 32]
    idx = list(range(5)) if out_indices is None else [i % 5 for i in out_indices]
    assert f.feature_info.channels() == [all_ch[i] for i in idx]
    assert f.feature_info.reduction() == [all_red[i] for i in idx]
    assert f.feature_info.module_name() == [["stem", "s1", "s2", "s3", "s4"][i] for i in idx]
    assert [t.shape for t in feats] == [(2, all_ch[i], 64 // all_red[i], 64 // all_red[i]) for i in idx]


def test_features_only_matches_timm_and_forward_intermediates():
    ours = regnet_zoo.create("regnety_200mf", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    ref = timm.create_model("regnety_002", features_only=True, out_indices=(1, 2, 3, 4)).eval()
    ref.load_state_dict(ours.state_dict())
    full = regnet_zoo.create("regnety_200mf").eval()
    full.load_state_dict(ours.state_dict(), strict=False)
    with torch.no_grad():
        a, b = ours(X), ref(X)
        inter = full.forward_intermediates(X, indices=[1, 2, 3, 4], intermediates_only=True)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(u, v) for u, v in zip(a, inter))


def test_features_only_bad_indices():
    with pytest.raises(ValueError, match="out_indices \\[7\\] out of range"):
        regnet_zoo.create("regnetx_200mf", features_only=True, out_indices=(1, 7))


def test_forward_features_head_and_pre_logits():
    m = regnet_zoo.create("regnetx_200mf").eval()
    with torch.no_grad():
        f = m.forward_features(X)
        assert f.shape == (2, 368, 2, 2)
        pre = m.forward_head(f, pre_logits=True)
        assert pre.shape == (2, 368) and m.num_features == 368
        torch.testing.assert_close(pre, f.mean((2, 3)))
        torch.testing.assert_close(m.forward_head(f), m.get_classifier()(pre))
        assert torch.equal(m(X), m.forward_head(f))


def test_reset_classifier_and_global_pool():
    m = regnet_zoo.create("regnetx_200mf")
    m.reset_classifier(5)
    assert m(X).shape == (2, 5) and m.get_classifier().out_features == 5 and m.num_classes == 5
    m.reset_classifier(0)
    assert m(X).shape == (2, 368)
    m2 = regnet_zoo.create("regnetx_200mf", global_pool="catavgmax", num_classes=3)
    assert m2.get_classifier().in_features == 2 * 368 and m2(X).shape == (2, 3)


def test_drop_path_changes_train_outputs_only():
    torch.manual_seed(0)
    a = regnet_zoo.create("regnetx_200mf", drop_path_rate=0.3, zero_init_last=False)
    b = regnet_zoo.create("regnetx_200mf", drop_path_rate=0.0, zero_init_last=False)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(X), b(X))
    a.train(), b.train()
    with torch.no_grad():
        torch.manual_seed(1)
        ya = a(X)
        torch.manual_seed(1)
        yb = b(X)
    assert not torch.allclose(ya, yb)
    # per-block rates rise linearly from 0 to 0.3 over the 13 blocks
    rates = [getattr(blk.drop_path, "drop_prob", 0.0) for s in a.stage_names for blk in getattr(a, s).children()]
    assert rates == pytest.approx([0.3 * i / 12 for i in range(13)])


def test_in_chans_and_wrong_input():
    m = regnet_zoo.create("regnetx_200mf", in_chans=1)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 1000)
    with pytest.raises(ValueError, match=r"shape \(N, 1, H, W\), got \[2, 3, 32, 32\].*in_chans=C"):
        m(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="shape"):
        regnet_zoo.create("regnetx_200mf")(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="in_chans"):
        regnet_zoo.create("regnetx_200mf", in_chans=0)


def test_pretrained_file_into_other_in_chans_and_num_classes(tmp_path):
    """3-channel weights into a 1-channel model (timm sums the stem's kernels): a gray image gives exactly what
    the 3-channel model gives on the gray image repeated 3 times. The head of another class count is fresh."""
    src = regnet_zoo.create("regnetx_200mf").eval()
    path = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(path))
    gray = torch.randn(2, 1, 64, 64)
    one = regnet_zoo.create("regnetx_200mf", pretrained=path, in_chans=1).eval()
    with torch.no_grad():
        torch.testing.assert_close(one(gray), src(gray.expand(-1, 3, -1, -1)), rtol=1e-5, atol=1e-5)
    ten = regnet_zoo.create("regnetx_200mf", pretrained=str(path), num_classes=10).eval()
    assert ten(X).shape == (2, 10)
    assert torch.equal(ten.s4.b7.conv3.conv.weight, src.s4.b7.conv3.conv.weight)


def test_mismatched_weights_say_what_and_where(tmp_path):
    src = regnet_zoo.create("regnety_200mf")
    path = tmp_path / "y200.safetensors"
    save_file(src.state_dict(), str(path))
    with pytest.raises(WeightsMismatchError) as err:
        regnet_zoo.create("regnetx_200mf", pretrained=path)
    msg = str(err.value)
    assert str(path) in msg and "regnetx_200mf" in msg and "unexpected keys: s1.b1.se.fc1" in msg
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError) as err:
        regnet_zoo.create("regnetx_200mf", pretrained=bad)
    assert str(bad) in str(err.value)  # names the file


def test_grad_checkpointing_gives_same_outputs_and_grads():
    torch.manual_seed(0)
    a = regnet_zoo.create("regnetx_200mf", zero_init_last=False)
    b = regnet_zoo.create("regnetx_200mf", zero_init_last=False)
    b.load_state_dict(a.state_dict())
    b.set_grad_checkpointing(True)
    assert all(getattr(b, s).grad_checkpointing for s in b.stage_names)
    a.eval(), b.eval()
    ya, yb = a(X), b(X)
    ya.sum().backward(), yb.sum().backward()
    torch.testing.assert_close(ya, yb)
    torch.testing.assert_close(a.stem.conv.weight.grad, b.stem.conv.weight.grad)


def test_output_stride_dilates_late_stages():
    m = regnet_zoo.create("regnetx_200mf", output_stride=16).eval()
    assert [f["reduction"] for f in m.feature_info] == [2, 4, 8, 16, 16]
    assert m.forward_features(X).shape == (2, 368, 4, 4)
    assert m.s4.b1.conv2.conv.dilation == (1, 1) and m.s4.b2.conv2.conv.dilation == (2, 2)
    with pytest.raises(ValueError, match="output_stride"):
        regnet_zoo.create("regnetx_200mf", output_stride=12)


def test_init_follows_paper_code():
    torch.manual_seed(0)
    m = regnet_zoo.create("regnetx_1.6gf")
    w = m.s3.b1.conv1.conv.weight  # 1x1, fan_out = 408
    assert w.std().item() == pytest.approx(math.sqrt(2 / 408), rel=0.05)
    assert torch.all(m.s3.b1.conv3.bn.weight == 0) and torch.all(m.s3.b1.conv1.bn.weight == 1)
    assert m.head.fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.all(m.head.fc.bias == 0)
    assert torch.all(regnet_zoo.create("regnetx_200mf", zero_init_last=False).s1.b1.conv3.bn.weight == 1)


def test_pretrained_cfg_and_group_matcher():
    m = regnet_zoo.create("regnetx_200mf", num_classes=10)
    cfg = m.pretrained_cfg
    assert cfg["input_size"] == (3, 224, 224) and cfg["num_classes"] == 10
    assert cfg["first_conv"] == "stem.conv" and cfg["classifier"] == "head.fc"
    assert {"mean", "std", "crop_pct", "interpolation"} <= set(cfg)
    assert timm.data.resolve_data_config(model=m)["input_size"] == (3, 224, 224)
    assert m.group_matcher()["blocks"] == r"^s(\d+)\.b(\d+)"


def test_nothing_is_registered_with_timm_until_asked():
    code = """
import timm
before = set(timm.list_models())
import regnet_zoo
regnet_zoo.create("regnetx_200mf")
assert set(timm.list_models()) == before, sorted(set(timm.list_models()) - before)[:3]
names = regnet_zoo.register_timm_models()
assert set(timm.list_models()) - before == set(names) and len(names) == len(regnet_zoo.list_models())
m = timm.create_model("regnet_zoo_regnetx_002")
t = timm.create_model("regnet_zoo_regnetx_002.pycls_in1k")  # a tag without pretrained=True: timm's random init
assert m.pretrained_cfg["architecture"] == t.pretrained_cfg["architecture"] == "regnetx_200mf"
assert regnet_zoo.register_timm_models() == names  # idempotent
"""
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_registered_with_timm():
    names = regnet_zoo.register_timm_models()
    assert "regnet_zoo_regnety_040" in names and "regnet_zoo_regnety_040" in timm.list_models("regnet_zoo_*")
    m = timm.create_model("regnet_zoo_regnetx_002", num_classes=4, drop_path_rate=0.1)
    assert isinstance(m, AnyNet) and m(X).shape == (2, 4)
    f = timm.create_model("regnet_zoo_regnetx_002", features_only=True, out_indices=(2, 3))
    assert f.feature_info.channels() == [56, 152]


def test_class_count_defaults_to_the_weights(tmp_path):
    src = regnet_zoo.create("regnetx_200mf", num_classes=7)
    path = tmp_path / "seven.safetensors"
    save_file(src.state_dict(), str(path))
    m = regnet_zoo.create("regnetx_200mf", pretrained=path)
    assert m.num_classes == 7 and m.pretrained_cfg["num_classes"] == 7
    headless = {k: v for k, v in src.state_dict().items() if not k.startswith("head.fc")}
    save_file(headless, str(tmp_path / "headless.safetensors"))
    feats = regnet_zoo.create("regnetx_200mf", pretrained=tmp_path / "headless.safetensors")
    assert feats.num_classes == 0 and feats(X).shape == (2, 368)


def test_input_channels_default_to_the_weights(tmp_path):
    src = regnet_zoo.create("regnetx_200mf", in_chans=1, num_classes=7).eval()
    path = tmp_path / "gray.safetensors"
    save_file(src.state_dict(), str(path))
    m = regnet_zoo.create("regnetx_200mf", pretrained=path).eval()
    assert m.in_chans == 1 and m.stem.conv.in_channels == 1
    with torch.no_grad():
        torch.testing.assert_close(m(X[:, :1]), src(X[:, :1]), rtol=0, atol=0)


def test_timm_entrypoint_honours_device_dtype_and_pretrained_cfg_overlay(tmp_path):
    regnet_zoo.register_timm_models()
    m = timm.create_model("regnet_zoo_regnetx_002", device="meta")
    assert {p.device.type for p in m.parameters()} == {"meta"}
    m = timm.create_model("regnet_zoo_regnetx_002", dtype=torch.float64, num_classes=3).eval()
    assert {p.dtype for p in m.parameters()} == {torch.float64}
    with torch.no_grad():
        assert m(X.double()).dtype == torch.float64
    overlay = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 1.0}
    m = timm.create_model("regnet_zoo_regnetx_002", pretrained_cfg_overlay=overlay)
    assert {k: m.pretrained_cfg[k] for k in overlay} == overlay
    assert timm.data.resolve_data_config(model=m)["mean"] == (0.5, 0.5, 0.5)
    # timm's way to load a local file: pretrained=True with pretrained_cfg_overlay=dict(file=...)
    src = regnet_zoo.create("regnetx_200mf", num_classes=5).eval()
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    m = timm.create_model("regnet_zoo_regnetx_002", pretrained=True,
                          pretrained_cfg_overlay={"file": str(tmp_path / "w.safetensors")}).eval()
    assert m.num_classes == 5
    with torch.no_grad():
        torch.testing.assert_close(m(X), src(X), rtol=0, atol=0)


def test_prune_intermediate_layers_keeps_the_requested_features():
    m = regnet_zoo.create("regnety_200mf").eval()
    with torch.no_grad():
        before = m.forward_intermediates(X, indices=(1, 2), intermediates_only=True)
    assert m.prune_intermediate_layers(indices=(1, 2)) == [1, 2]
    assert [type(getattr(m, s)).__name__ for s in m.stage_names] == ["Stage", "Stage", "Identity", "Identity"]
    assert m.num_classes == 0 and not any(k.startswith(("s3.", "s4.", "head.fc")) for k in m.state_dict())
    with torch.no_grad():
        after = m.forward_intermediates(X, indices=(1, 2), intermediates_only=True)
    assert [t.shape for t in after] == [(2, 24, 16, 16), (2, 56, 8, 8)]
    assert all(torch.equal(a, b) for a, b in zip(after, before))


def test_pretrained_cfg_follows_in_chans():
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    one = regnet_zoo.create("regnetx_200mf", in_chans=1).pretrained_cfg
    assert one["input_size"] == (1, 224, 224)
    assert one["mean"] == pytest.approx((sum(IMAGENET_DEFAULT_MEAN) / 3,))
    assert one["std"] == pytest.approx((sum(IMAGENET_DEFAULT_STD) / 3,))
    four = regnet_zoo.create("regnetx_200mf", in_chans=4).pretrained_cfg
    assert four["mean"] == (*IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_MEAN[0]) and four["input_size"][0] == 4
    assert timm.data.resolve_data_config(model=regnet_zoo.create("regnetx_200mf", in_chans=1))["input_size"] == (
        1, 224, 224)
