"""SyncBN conversion keeps timm's fused BN + ReLU layers; torch's conversion (Lightning's default) drops the ReLU.

The synchronization itself (2 gloo processes = 1 process of the global batch) is tested in
``test_lightning_ddp.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch
from timm.layers import BatchNormAct2d

import regnet_zoo
from regnet_zoo.lightning import RegNetClassifier, TimmSyncBatchNorm
from regnet_zoo.lightning.sync_batchnorm import (
    AllReduceBatchNormAct,
    convert_sync_batchnorm,
    revert_sync_batchnorm,
    torch_converted_norm_act,
)

X = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _model() -> torch.nn.Module:
    model = regnet_zoo.create("regnety_200mf", num_classes=10)
    with torch.no_grad():  # non-trivial BN statistics, so that eval mode is not the identity
        for m in model.modules():
            if isinstance(m, BatchNormAct2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


def test_torchs_conversion_drops_the_fused_relu_and_the_module_refuses_it():
    model = _model()
    broken = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(model))
    names = torch_converted_norm_act(broken)
    assert "stem.bn" in names and "s1.b1.conv1.bn" in names and "s1.b1.conv3.bn" not in names  # conv3: no act
    with torch.no_grad():
        assert (broken(X) - model(X)).abs().max() > 1e-3  # another function: the activations are gone
    module = RegNetClassifier({"type": "regnet", "depth": 4, "w0": 8, "wa": 8.0, "wm": 2.0, "group_width": 8},
                              num_classes=10)
    module.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(module.model)
    with pytest.raises(ValueError, match="TimmSyncBatchNorm"):
        module.on_fit_start()


def test_plugin_keeps_the_function_and_reverts_to_the_same_tensors():
    model = _model()
    with torch.no_grad():  # train mode (on a copy: it moves the running statistics): one process = plain BN
        expected_eval, expected_train = model(X), copy.deepcopy(model).train()(X)
    params = {n: p for n, p in model.named_parameters()}
    plugin = TimmSyncBatchNorm()
    synced = plugin.apply(copy.deepcopy(model))
    assert not torch_converted_norm_act(synced)
    assert {type(m) for m in synced.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {
        AllReduceBatchNormAct}  # no process group here: the gloo-capable layers
    with torch.no_grad():
        torch.testing.assert_close(synced(X), expected_eval, rtol=0, atol=0)
        torch.testing.assert_close(synced.train()(X), expected_train, rtol=0, atol=0)
    plugin_on_model = plugin.apply(model)  # in place on the original: the very same Parameters
    assert all(p is params[n] for n, p in plugin_on_model.named_parameters())
    back = plugin.revert(plugin_on_model)
    assert {type(m) for m in back.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {
        BatchNormAct2d}
    assert all(p is params[n] for n, p in back.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(back(X), expected_eval, rtol=0, atol=0)


def test_native_conversion_for_gpus_is_timms_and_reverts_too():
    """With NCCL the layers are timm's SyncBatchNormAct (torch's kernels); eval mode runs anywhere."""
    from timm.layers import SyncBatchNormAct

    model = _model()
    with torch.no_grad():
        expected = model(X)
    native = convert_sync_batchnorm(copy.deepcopy(model), native=True)
    assert {type(m) for m in native.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {
        SyncBatchNormAct}
    with torch.no_grad():
        torch.testing.assert_close(native(X), expected, rtol=0, atol=0)
        back = revert_sync_batchnorm(native)
        torch.testing.assert_close(back(X), expected, rtol=0, atol=0)
    assert {type(m) for m in back.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)} == {
        BatchNormAct2d}
