"""Inference speed-ups: BN folding, channels_last, bf16 / int8, ``torch.compile``, and the combined path
(what helps depends on the model, batch and machine: ``regnet-zoo benchmark``)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from regnet_zoo.inference.fuse import fuse_bn
from regnet_zoo.inference.precision import BF16Inference, Precision, precision_name, require_bf16
from regnet_zoo.inference.quantize import quantize_model


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store 4-D weights as NHWC (in place); feed ``x.contiguous(memory_format=torch.channels_last)`` inputs."""
    return model.to(memory_format=torch.channels_last)


class FrozenCompiled(nn.Module):
    """A ``torch.compile``d module whose calls (and so compilations) run under inductor weight freezing.

    Dynamo reads ``freezing`` from the *global* inductor config at trace time: ``options={"freezing": True}``
    alone leaves the weights graph inputs (no BN folding, prepacking or conv + ReLU fusion; torch 2.14's
    generated code), hence ``torch._inductor.config.patch(freezing=True)`` around each call. ``module`` is
    the original (uncompiled) model.
    """

    def __init__(self, module: nn.Module, compiled: nn.Module):
        super().__init__()
        self.module = module
        self._compiled = [compiled]  # a list: not a registered submodule (no duplicate parameters)
        for attr in ("pretrained_cfg", "num_classes", "in_chans"):
            if hasattr(module, attr):
                setattr(self, attr, getattr(module, attr))

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        import torch._inductor.config as inductor_config  # heavy (inductor); loaded once on the first call

        with inductor_config.patch(freezing=True):
            return self._compiled[0](*args, **kwargs)


def compile_model(model: nn.Module, *, freezing: bool = True, backend: str = "inductor", mode: str | None = None,
                  dynamic: bool | None = None, fullgraph: bool = True, **options: Any) -> nn.Module:
    """``torch.compile`` for inference (call under ``torch.inference_mode()`` / ``no_grad``).

    ``freezing`` (inductor) treats the weights as constants: it folds remaining BN, prepacks weights
    for oneDNN and fuses pointwise ops into the convolutions (``FrozenCompiled``). Compilation happens
    on the first call (seconds to minutes).
    """
    if mode is not None and options:
        raise ValueError(f"torch.compile takes either mode or options, not both: got mode={mode!r} and options "
                         f"{sorted(options)}")
    compiled = torch.compile(model, backend=backend, mode=mode, dynamic=dynamic, fullgraph=fullgraph,
                             options=options or None)
    return FrozenCompiled(model, compiled) if freezing and backend == "inductor" else compiled


def optimize_for_inference(model: nn.Module, dtype: Precision | torch.dtype = "fp32", *, fuse: bool = True,
                           channels_last: bool = True, compile: bool = False, calibration: Any = None,
                           num_images: int = 300, **compile_kwargs: Any) -> nn.Module:
    """Eval-mode copy of ``model`` for fast CPU inference; the original model is not modified.

    * ``"fp32"``: BN folded (``fuse``), NHWC weights (``channels_last``; feed channels_last inputs),
      optionally compiled (``FrozenCompiled``; ``compile_kwargs`` go to ``compile_model``).
    * ``"bf16"``: the same with bf16 weights, in ``BF16Inference`` (any float images in, float32 logits
      out). ``BF16UnsupportedError`` when the CPU cannot run oneDNN bf16 (a warning when it emulates it).
    * ``"int8"``: ``quantize_model`` (OpenVINO + NNCF) calibrated on ``num_images`` images of
      ``calibration`` (required); a ``QuantizedModel``, compiled by OpenVINO (``compile``, ``fuse`` and
      ``channels_last`` do not apply).

    Another ``dtype`` raises ``UnsupportedDtypeError``.
    """
    precision = precision_name(dtype)
    if precision == "int8":
        if calibration is None:
            raise ValueError("dtype='int8' needs calibration images: calibration=<tensor | DataLoader | DataModule | "
                             "image folder | 'digits'> (a few hundred images preprocessed as for the model)")
        return quantize_model(model, calibration, num_images=num_images)
    if calibration is not None:
        raise ValueError(f"calibration applies to dtype='int8' only, not {precision!r}")
    if precision == "bf16":
        require_bf16()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    fast = fuse_bn(model) if fuse else copy.deepcopy(model).eval()
    fast = fast.to(dtype=torch.bfloat16 if precision == "bf16" else None, memory_format=layout)
    if compile:
        fast = compile_model(fast, **compile_kwargs)
    return BF16Inference(fast, layout, source=model) if precision == "bf16" else fast
