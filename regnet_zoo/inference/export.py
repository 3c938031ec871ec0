"""Model export: TorchScript (scripted or traced) and ONNX (``torch.onnx`` dynamo exporter, dynamic batch).

Our models script (``torch.jit.script``) as well as trace; ONNX files are checked against
onnxruntime by ``check_onnx``.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

ONNX_INPUT, ONNX_OUTPUT = "input", "output"
DEFAULT_OPSET = 18
TWO_GB = 2**31


class ExportError(RuntimeError):
    """An exported model does not reproduce the PyTorch outputs."""


def example_input(model: nn.Module, resolution: int = 224, batch: int = 2) -> torch.Tensor:
    """A random (batch, in_chans, resolution, resolution) image batch on the model's device."""
    param = next(model.parameters())
    in_chans = getattr(model, "in_chans", 3)
    return torch.randn(batch, in_chans, resolution, resolution, device=param.device, dtype=param.dtype)


def to_torchscript(model: nn.Module, example: torch.Tensor | None = None,
                   path: str | os.PathLike | None = None, method: str = "script") -> torch.jit.ScriptModule:
    """TorchScript of ``model.eval()``, saved to ``path`` (atomically) if given.

    ``method="script"`` compiles the Python code (keeps the input checks; any input size);
    ``"trace"`` records the ops run on ``example`` (checked on a second batch size), for models
    that do not script.
    """
    if method not in ("script", "trace"):
        raise ValueError(f"method must be 'script' or 'trace', got {method!r}")
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        if method == "script":
            warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support instance-level")
            scripted = torch.jit.script(model)
        else:
            if example is None:
                raise ValueError("method='trace' needs an example input")
            # Python branches on shapes (the stem's input check) are traced as taken for the example
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            other = torch.cat([example, example[:1]])
            scripted = torch.jit.trace(model, example, check_inputs=[(other,)])
    if path is not None:
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        scripted.save(str(tmp))
        os.replace(tmp, path)
    return scripted


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, *, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True) -> Path:
    """Write ``model.eval()`` to ``path`` as ONNX (input "input", output "output"), batch axis dynamic.

    Weights are stored inside the file unless they exceed 2 GB (then in ``path.data`` beside it).
    The file appears only when the export succeeded (written under a temporary name first).
    """
    path = Path(path)
    model = model.eval()
    n_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset, input_names=[ONNX_INPUT],
                                    output_names=[ONNX_OUTPUT], dynamic_shapes=dynamic_shapes, verbose=False)
    external = n_bytes >= TWO_GB
    program.save(str(tmp), external_data=external)
    if external:
        os.replace(tmp.with_name(tmp.name + ".data"), path.with_name(path.name + ".data"))
    os.replace(tmp, path)
    return path


def check_onnx(path: str | os.PathLike, model: nn.Module, inputs: list[torch.Tensor], atol: float = 1e-4) -> float:
    """Run the ONNX file with onnxruntime (CPU) on each input; the max abs difference to ``model``.

    Raises ``ExportError`` when it exceeds ``atol``.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    model = model.eval()
    for x in inputs:
        with torch.no_grad():
            ref = model(x).float().cpu().numpy()
        got = session.run(None, {ONNX_INPUT: x.float().cpu().numpy()})[0]
        if got.shape != ref.shape:
            raise ExportError(f"{path}: onnxruntime output shape {got.shape} != PyTorch {ref.shape} "
                              f"for input {tuple(x.shape)}")
        diff = float(np.abs(got - ref).max())
        worst = max(worst, diff)
        if diff > atol:
            raise ExportError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g} > {atol:g} "
                              f"for input {tuple(x.shape)}")
    return worst
