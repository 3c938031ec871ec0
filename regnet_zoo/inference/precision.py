"""Inference precisions ``"fp32"``, ``"bf16"`` (oneDNN bf16 kernels) and ``"int8"`` (``inference.quantize``): the
dtype names, the CPU's bf16 / int8 capabilities, and the bf16 model wrapper.
"""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from torch import nn

Precision = Literal["fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "int8")
_ALIASES = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "qint8": "int8", "uint8": "int8"}


class UnsupportedDtypeError(ValueError):
    """An inference dtype other than ``"fp32"``, ``"bf16"`` and ``"int8"``."""


class BF16UnsupportedError(RuntimeError):
    """This CPU (or PyTorch build) cannot run oneDNN's bf16 kernels."""


class EmulatedBF16Warning(UserWarning):
    """bf16 runs, but the CPU has no bf16 instructions (``avx512_bf16`` / AMX): it may be slower than fp32."""


def precision_name(dtype: str | torch.dtype) -> str:
    """``"fp32"``, ``"bf16"`` or ``"int8"`` for a name or torch dtype; ``UnsupportedDtypeError`` otherwise."""
    name = str(dtype).lower().removeprefix("torch.")  # torch.bfloat16 -> "bfloat16"
    name = _ALIASES.get(name, name)
    if name not in PRECISIONS:
        raise UnsupportedDtypeError(f"unsupported inference dtype {dtype!r}; choose one of {', '.join(PRECISIONS)} "
                                    "(fp16 has no fast CPU kernels here: use bf16)")
    return name


def cpu_capabilities() -> dict[str, bool]:
    """What this CPU and PyTorch build offer for low precision (the one caller of torch's underscore checks).

    ``mkldnn_bf16``: oneDNN runs bf16 convolutions (natively or emulated on AVX-512); ``native_bf16``: bf16
    instructions (``avx512_bf16`` or AMX); ``amx``: AMX tiles; ``vnni``: int8 dot products (AVX512/AVX-VNNI).
    """
    mkldnn = torch.backends.mkldnn.is_available()
    amx = bool(torch.cpu._is_amx_tile_supported())
    return {
        "mkldnn_bf16": bool(mkldnn and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "native_bf16": bool(torch.cpu._is_avx512_bf16_supported()) or amx,
        "amx": amx,
        "vnni": bool(torch.cpu._is_vnni_supported()),
    }


def require_bf16() -> None:
    """Raise ``BF16UnsupportedError`` (with the fix) when oneDNN cannot run bf16 here; warn when it is emulated."""
    caps = cpu_capabilities()
    if not caps["mkldnn_bf16"]:
        raise BF16UnsupportedError(
            "this CPU / PyTorch build cannot run oneDNN bf16 kernels (torch.ops.mkldnn._is_mkldnn_bf16_supported() "
            "is False; they need AVX-512 or AMX on x86, or a bf16-capable Arm CPU). Use dtype='fp32', or "
            "dtype='int8' (OpenVINO int8 runs on any AVX2 CPU), or run on a CPU with avx512_bf16 / amx_bf16")
    if not caps["native_bf16"]:
        warnings.warn("this CPU has no bf16 instructions (avx512_bf16 / AMX): oneDNN emulates bf16, which is "
                      "usually slower than fp32; prefer dtype='fp32' or 'int8' here", EmulatedBF16Warning, stacklevel=3)


class BF16Inference(nn.Module):
    """Runs ``model`` (bf16 weights, possibly compiled) on images of any float dtype and memory format, cast to bf16
    in ``memory_format`` (one copy, costed in docs/deploy.md), with float32 outputs; ``pretrained_cfg``,
    ``num_classes`` and ``in_chans`` are those of ``source``, the model it was made from.
    """

    def __init__(self, model: nn.Module, memory_format: torch.memory_format = torch.channels_last,
                 source: nn.Module | None = None):
        super().__init__()
        self.model = model
        self.memory_format = memory_format
        src = source if source is not None else model
        for attr in ("pretrained_cfg", "num_classes", "in_chans"):
            if hasattr(src, attr):
                setattr(self, attr, getattr(src, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x.to(dtype=torch.bfloat16, memory_format=self.memory_format))
        return out.float()
