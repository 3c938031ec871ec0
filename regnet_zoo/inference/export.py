"""Model export: TorchScript (scripted or traced), ONNX (``torch.onnx`` dynamo exporter, dynamic batch; int8
by ONNX Runtime's ``quantize_static``) and OpenVINO IR.

Our models script (``torch.jit.script``) as well as trace; ONNX files carry the model's preprocessing
(``pretrained_cfg``) in their metadata and are checked against onnxruntime by ``check_onnx``. Files
appear only once complete (``regnet_zoo.fileio.atomic_write``).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from regnet_zoo.fileio import atomic_write

ONNX_INPUT, ONNX_OUTPUT = "input", "output"
DEFAULT_OPSET = 18
TWO_GB = 2**31  # protobuf's limit on one serialized ONNX file
# pretrained_cfg keys written to the ONNX metadata_props (the preprocessing a deployment must repeat)
ONNX_METADATA_KEYS = ("architecture", "num_classes", "input_size", "mean", "std", "interpolation", "crop_pct",
                      "crop_mode", "tag", "license")
EXPORT_EXTRA_HINT = "pip install 'regnet-zoo[export]'"


class ExportError(RuntimeError):
    """An export failed, or the exported model does not reproduce the PyTorch outputs."""


class ExportDependencyError(ExportError):
    """A package that export or checking needs (onnx, onnxscript, onnxruntime) is missing or broken."""


def require_packages(*names: str, purpose: str) -> None:
    """Import ``names``; raise ``ExportDependencyError`` naming the missing ones and the install command."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    if missing:
        raise ExportDependencyError(f"{purpose} needs {', '.join(names)}; missing or broken: {'; '.join(missing)}. "
                                    f"Install them with: {EXPORT_EXTRA_HINT}")


def model_label(model: nn.Module) -> str:
    """The model's architecture name (``pretrained_cfg``) or, failing that, its class name."""
    return str(getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__)


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
    that do not script. A failure raises ``ExportError`` naming the model and the method.
    """
    if method not in ("script", "trace"):
        raise ValueError(f"method must be 'script' or 'trace', got {method!r}")
    if method == "trace" and example is None:
        raise ValueError("method='trace' needs an example input")
    model = model.eval()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
            if method == "script":
                warnings.filterwarnings("ignore", message="The TorchScript type system doesn't support instance-level")
                scripted = torch.jit.script(model)
            else:
                # Python branches on shapes (the stem's input check) are traced as taken for the example
                warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
                other = torch.cat([example, example[:1]])
                scripted = torch.jit.trace(model, example, check_inputs=[(other,)])
    except Exception as err:
        hint = "; try method='trace' (--torchscript-method trace)" if method == "script" else ""
        raise ExportError(f"TorchScript {method} of {model_label(model)} failed: {_describe(err)}{hint}") from err
    if path is not None:
        atomic_write(path, lambda tmp: scripted.save(tmp))
    return scripted


def onnx_metadata(model: nn.Module) -> dict[str, str]:
    """The ONNX ``metadata_props`` of ``model``: its ``pretrained_cfg`` preprocessing, strings as they are,
    other values JSON (``input_size`` "[3, 224, 224]", ``mean`` "[0.485, 0.456, 0.406]", ``crop_pct`` "0.875").
    """
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    if getattr(model, "num_classes", None) is not None:
        cfg["num_classes"] = model.num_classes
    out = {}
    for key in ONNX_METADATA_KEYS:
        value = cfg.get(key)
        if value is not None:
            out[key] = value if isinstance(value, str) else json.dumps(list(value) if isinstance(value, tuple)
                                                                       else value)
    return out


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, *, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True, external_data: bool | None = None,
                metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model.eval()`` to ``path`` as ONNX (input "input", output "output"), batch axis dynamic.

    Args:
        external_data: store the weights in ``<path>.data`` beside the file; default: when they reach
            2 GB (e.g. regnety_128gf / 256gf), where one ONNX file cannot hold them.
        metadata: extra ``metadata_props``; the model's ``pretrained_cfg`` preprocessing
            (``onnx_metadata``) is always written.

    The file (and its ``.data``) appears only when the export succeeded: everything is written into a
    temporary folder beside ``path`` under the final names, so the data file the model refers to is the
    one that ends up beside it; the data is moved first, the model last (``atomic_write``); leftovers are
    removed on failure. A missing ``onnxscript`` / ``onnx`` or an exporter failure raises ``ExportError``.
    """
    require_packages("onnx", "onnxscript", purpose="ONNX export")
    path = Path(path)
    model = model.eval()
    n_bytes = sum(p.numel() * p.element_size() for p in model.state_dict().values())
    if external_data is None:
        external_data = n_bytes >= TWO_GB
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                        input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                                        dynamic_shapes=dynamic_shapes, verbose=False)
    except ImportError as err:
        raise ExportDependencyError(f"ONNX export of {model_label(model)}: torch.onnx could not import a package "
                                    f"({err}). Install the exporter's packages with: {EXPORT_EXTRA_HINT}") from err
    except Exception as err:
        raise ExportError(f"ONNX export of {model_label(model)} failed in torch.onnx.export (opset {opset}, "
                          f"input {tuple(example.shape)}): {_describe(err)}") from err
    program.model.metadata_props.update({**onnx_metadata(model), **(metadata or {})})
    try:
        return _save_staged(path, lambda main: program.save(str(main), external_data=external_data))
    except OSError:
        raise
    except Exception as err:
        raise ExportError(f"saving the ONNX export of {model_label(model)} to {path} failed: "
                          f"{_describe(err)}") from err


def _save_staged(path: Path, save: Callable[[Path], None]) -> Path:
    """Run ``save(main)`` in a temporary folder beside ``path``, then move its files in under their names.

    ``save`` writes the main file (``main`` has ``path``'s name) and any side files it refers to by name
    (ONNX external data, an OpenVINO ``.bin``); the side files are moved first and the main file last
    (``atomic_write``), so ``path`` appears only when complete; on failure nothing is left behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    moved: list[Path] = []
    try:
        save(staging / path.name)
        for f in sorted(staging.iterdir()):
            if f.name != path.name:
                moved.append(atomic_write(path.parent / f.name, lambda tmp, f=f: os.replace(f, tmp)))
        atomic_write(path, lambda tmp: os.replace(staging / path.name, tmp))
    except BaseException:
        for f in moved:
            f.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def check_onnx(path: str | os.PathLike, model: nn.Module, inputs: list[torch.Tensor], atol: float = 1e-4) -> float:
    """Run the ONNX file with onnxruntime (CPU) on each input; the max abs difference to ``model``.

    Raises ``ExportError`` when it exceeds ``atol`` (``ExportDependencyError`` without onnxruntime).
    """
    require_packages("onnxruntime", purpose="checking an ONNX file")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return _max_abs_diff(path, "onnxruntime", lambda a: session.run(None, {ONNX_INPUT: a})[0], model, inputs, atol)


def _max_abs_diff(path: str | os.PathLike, runtime: str, run: Callable[[np.ndarray], np.ndarray], model: nn.Module,
                  inputs: list[torch.Tensor], atol: float) -> float:
    """Max abs difference of ``run`` (an exported model on float32 arrays) to ``model.eval()`` over ``inputs``.

    Raises ``ExportError`` on an output shape mismatch or a difference above ``atol``.
    """
    worst = 0.0
    model = model.eval()
    for x in inputs:
        with torch.no_grad():
            ref = model(x).float().cpu().numpy()
        got = run(x.float().cpu().numpy())
        if got.shape != ref.shape:
            raise ExportError(f"{path}: {runtime} output shape {got.shape} != PyTorch {ref.shape} "
                              f"for input {tuple(x.shape)}")
        diff = float(np.abs(got - ref).max())
        worst = max(worst, diff)
        if diff > atol:
            raise ExportError(f"{path}: {runtime} differs from PyTorch by {diff:.3g} > {atol:g} "
                              f"for input {tuple(x.shape)}")
    return worst


class _Reader:
    """ONNX Runtime ``CalibrationDataReader`` protocol over a list of image batches."""

    def __init__(self, batches: list[torch.Tensor]):
        self._batches = iter([{ONNX_INPUT: b.float().cpu().numpy()} for b in batches])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # part of the protocol; one pass is all quantize_static makes
        pass


def quantize_onnx(src: str | os.PathLike, dst: str | os.PathLike, calibration: list[torch.Tensor]) -> Path:
    """INT8 static quantization of the ONNX file ``src`` into ``dst`` with ONNX Runtime's public API.

    ``quant_pre_process`` (shape inference, graph optimisation), then ``quantize_static``: QDQ format,
    int8 weights symmetric per output channel, uint8 activations per tensor with min/max ranges of the
    ``calibration`` batches (float32 NCHW images preprocessed as for the model). ``dst`` appears only
    when complete; ``ExportError`` when quantization fails, ``ExportDependencyError`` without onnxruntime.
    """
    require_packages("onnx", "onnxruntime", purpose="ONNX int8 quantization")
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise ValueError("quantize_onnx needs at least one calibration batch")
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}.", suffix=".tmp", dir=dst.parent))
    try:
        pre, out = staging / "pre.onnx", staging / dst.name
        try:
            quant_pre_process(str(src), str(pre))
            quantize_static(str(pre), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as err:
            raise ExportError(f"ONNX Runtime could not quantize {src}: {_describe(err)}") from err
        atomic_write(dst, lambda tmp: os.replace(out, tmp))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dst


def export_openvino(model: nn.Module, path: str | os.PathLike, example: torch.Tensor) -> Path:
    """Write ``model.eval()`` as OpenVINO IR: ``path`` (``.xml``, the graph) and ``path.with_suffix(".bin")``.

    Batch axis dynamic, C x H x W of ``example``; float32 weights (not compressed to fp16). Both files are
    saved into a temporary folder beside ``path`` and moved in, the ``.bin`` first and the ``.xml`` last;
    nothing is left on failure. ``ExportError`` when OpenVINO cannot convert the model;
    ``ExportDependencyError`` without OpenVINO (``pip install 'regnet-zoo[quant]'``).
    """
    try:
        import openvino as ov
    except ImportError as err:
        raise ExportDependencyError(f"OpenVINO export needs openvino ({err}); install it with: "
                                    "pip install 'regnet-zoo[quant]'") from err
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR path ends in .xml, got {path}")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ov_model = ov.convert_model(model.eval(), example_input=example,
                                        input=[ov.PartialShape([-1, *example.shape[1:]])])
    except Exception as err:
        raise ExportError(f"OpenVINO cannot convert {model_label(model)}: {_describe(err)}") from err
    return _save_staged(path, lambda main: ov.save_model(ov_model, str(main), compress_to_fp16=False))


def check_openvino(path: str | os.PathLike, model: nn.Module, inputs: list[torch.Tensor], atol: float = 1e-4) -> float:
    """Run the IR at ``path`` with OpenVINO (CPU, f32) on each input; the max abs difference to ``model``.

    Raises ``ExportError`` when it exceeds ``atol``.
    """
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return _max_abs_diff(path, "OpenVINO", lambda a: compiled(a)[0], model, inputs, atol)


def _describe(err: BaseException) -> str:
    """``Type: first line`` of an exception and of its root cause (exporter messages run to pages)."""
    def line(e: BaseException) -> str:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"

    root, seen = err, {id(err)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        root = nxt
        seen.add(id(root))
    return line(err) + (f" (caused by {line(root)})" if root is not err else "")
