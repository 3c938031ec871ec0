"""Inference speed-ups: channels_last memory format, ``torch.compile``, and the combined path.

What helps depends on the model, batch and machine (see ``regnet-zoo benchmark``): on CPU, BN
folding + channels_last (oneDNN's NHWC convolutions) usually help; ``torch.compile`` with inductor
weight freezing can add more but costs compile time (and needs a C++ compiler on CPU).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from regnet_zoo.inference.fuse import fuse_bn


def to_channels_last(model: nn.Module) -> nn.Module:
    """Store 4-D weights as NHWC (in place); feed ``x.contiguous(memory_format=torch.channels_last)`` inputs."""
    return model.to(memory_format=torch.channels_last)


def compile_model(model: nn.Module, *, freezing: bool = True, backend: str = "inductor", mode: str | None = None,
                  dynamic: bool | None = None, fullgraph: bool = True, **options: Any) -> nn.Module:
    """``torch.compile`` for inference (call under ``torch.inference_mode()`` / ``no_grad``).

    ``freezing`` (inductor) treats the weights as constants: it folds remaining BN and prepacks
    weights for oneDNN. Compilation happens on the first call (seconds to minutes).
    """
    compile_options = {**({"freezing": True} if freezing and backend == "inductor" else {}), **options}
    if mode is not None and compile_options:
        raise ValueError(f"torch.compile takes either mode or options, not both: got mode={mode!r} and options "
                         f"{sorted(compile_options)} (pass freezing=False to use a mode)")
    return torch.compile(model, backend=backend, mode=mode, dynamic=dynamic, fullgraph=fullgraph,
                         options=compile_options or None)


def optimize_for_inference(model: nn.Module, *, fuse: bool = True, channels_last: bool = True,
                           compile: bool = False, **compile_kwargs: Any) -> nn.Module:
    """Eval-mode copy of ``model`` with BN folded (``fuse``), NHWC weights, optionally compiled.

    The original model is not modified. With ``channels_last``, inputs should be channels_last too.
    """
    model = fuse_bn(model) if fuse else _eval_copy(model)
    if channels_last:
        model = to_channels_last(model)
    return compile_model(model, **compile_kwargs) if compile else model


def _eval_copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model).eval()
