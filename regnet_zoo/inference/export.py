"""Model export, each checked against PyTorch: TorchScript (scripted or traced), ONNX (``torch.onnx`` dynamo
exporter, dynamic batch, the preprocessing in its metadata; int8 by ONNX Runtime's ``quantize_static``) and
OpenVINO IR. Files appear only once complete (``regnet_zoo.fileio.atomic_write``, ``save_staged``).
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

import torch
from torch import nn

from regnet_zoo.fileio import atomic_write

ONNX_INPUT, ONNX_OUTPUT = "input", "output"
DEFAULT_OPSET = 18
TWO_GB = 2**31  # protobuf's limit on one serialized ONNX file
# pretrained_cfg keys a deployment needs (the preprocessing it must repeat, and the labels); ONNX omits the labels
PREPROCESSING_KEYS = ("architecture", "num_classes", "input_size", "mean", "std", "interpolation", "crop_pct",
                      "crop_mode", "label_names", "tag", "license")
ONNX_METADATA_KEYS = tuple(k for k in PREPROCESSING_KEYS if k != "label_names")


class ExportError(RuntimeError):
    """An export failed, or the exported model does not reproduce the PyTorch outputs."""


class ExportDependencyError(ExportError):
    """A package that export or checking needs (onnx, onnxscript, onnxruntime, openvino) is missing or broken."""


def require_packages(*names: str, purpose: str, error: type[Exception] = ExportDependencyError,
                     extra: str = "export") -> None:
    """Import ``names``; raise ``error`` naming the missing ones and how to install ``regnet-zoo[extra]``."""
    missing = []
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            missing.append(f"{name} ({err})")
    if missing:
        raise error(f"{purpose} needs {', '.join(names)}; missing or broken: {'; '.join(missing)}. "
                    f"Install them with: pip install 'regnet-zoo[{extra}]'")


def model_label(model: nn.Module) -> str:
    """The model's architecture name (``pretrained_cfg``) or, failing that, its class name."""
    return str(getattr(model, "pretrained_cfg", {}).get("architecture") or type(model).__name__)


def preprocessing(model: nn.Module, keys: tuple[str, ...] = PREPROCESSING_KEYS) -> dict[str, Any]:
    """JSON-ready ``keys`` of the model's ``pretrained_cfg`` (and its ``num_classes``); tuples become lists."""
    cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", None) or {})
    if getattr(model, "num_classes", None) is not None:
        cfg["num_classes"] = model.num_classes
    return {k: list(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k] for k in keys if cfg.get(k) is not None}


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
        raise ExportError(f"TorchScript {method} of {model_label(model)} failed: {describe(err)}{hint}") from err
    if path is not None:
        atomic_write(path, lambda tmp: scripted.save(tmp))
    return scripted


def onnx_metadata(model: nn.Module) -> dict[str, str]:
    """The ONNX ``metadata_props`` of ``model``: its ``pretrained_cfg`` preprocessing, strings as they are,
    other values JSON (``input_size`` "[3, 224, 224]", ``mean`` "[0.485, 0.456, 0.406]", ``crop_pct`` "0.875").
    """
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in preprocessing(model, ONNX_METADATA_KEYS).items()}


def export_onnx(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, *, opset: int = DEFAULT_OPSET,
                dynamic_batch: bool = True, external_data: bool | None = None,
                metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model.eval()`` to ``path`` as ONNX (input "input", output "output"), batch axis dynamic.

    Args:
        external_data: store the weights in ``<path>.data`` beside the file; default: when they reach
            2 GB (e.g. regnety_128gf / 256gf), where one ONNX file cannot hold them.
        metadata: extra ``metadata_props``; the model's ``pretrained_cfg`` preprocessing
            (``onnx_metadata``) is always written.

    Written by ``save_staged``. A missing ``onnxscript`` / ``onnx`` or an exporter failure raises ``ExportError``.
    """
    require_packages("onnx", "onnxscript", purpose="ONNX export")
    path = Path(path)
    model = model.eval()
    if external_data is None:
        external_data = sum(p.numel() * p.element_size() for p in model.state_dict().values()) >= TWO_GB
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},) if dynamic_batch else None
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                        input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
                                        dynamic_shapes=dynamic_shapes, verbose=False)
    except ImportError as err:
        raise ExportDependencyError(f"ONNX export of {model_label(model)}: torch.onnx could not import a package "
                                    f"({err}). Install them with: pip install 'regnet-zoo[export]'") from err
    except Exception as err:
        raise ExportError(f"ONNX export of {model_label(model)} failed in torch.onnx.export (opset {opset}, "
                          f"input {tuple(example.shape)}): {describe(err)}") from err
    program.model.metadata_props.update({**onnx_metadata(model), **(metadata or {})})
    try:
        return save_staged(path, lambda main: program.save(str(main), external_data=external_data))
    except OSError:
        raise
    except Exception as err:
        raise ExportError(f"saving the ONNX export of {model_label(model)} to {path} failed: "
                          f"{describe(err)}") from err


def save_staged(path: Path, save: Callable[[Path], None]) -> Path:
    """Run ``save(main)`` in a temporary folder inside ``path.parent``, then move its files in under their names.

    ``save`` writes the main file (``main`` has ``path``'s name) and any side files it refers to by name
    (ONNX external data, an OpenVINO ``.bin``); the side files are moved first (in name order) and the
    main file last (``atomic_write``), so ``path`` appears only when complete. On failure nothing is
    left behind: neither the files moved so far nor a folder this call created.
    """
    created = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    moved: list[Path] = []
    try:
        save(staging / path.name)
        for f in sorted(staging.iterdir(), key=lambda f: (f.name == path.name, f.name)):
            moved.append(atomic_write(path.parent / f.name, lambda tmp, f=f: os.replace(f, tmp)))
    except BaseException:
        for f in moved:
            f.unlink(missing_ok=True)
        shutil.rmtree(path.parent if created else staging, ignore_errors=True)
        raise
    shutil.rmtree(staging, ignore_errors=True)
    return path


def onnx_runner(path: str | os.PathLike) -> Callable[[torch.Tensor], torch.Tensor]:
    """The ONNX file as a function of image tensors (onnxruntime, CPU; float32 in and out)."""
    require_packages("onnxruntime", purpose="checking an ONNX file")
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {ONNX_INPUT: x.float().cpu().numpy()})[0])


def check_onnx(path: str | os.PathLike, model: nn.Module, inputs: list[torch.Tensor], atol: float = 1e-4) -> float:
    """Max abs difference of the ONNX file run by onnxruntime (CPU) to ``model`` on ``inputs``; ``ExportError`` when
    it exceeds ``atol`` (``ExportDependencyError`` without onnxruntime)."""
    return _max_abs_diff(path, "onnxruntime", onnx_runner(path), model, inputs, atol)


def check_openvino(path: str | os.PathLike, model: nn.Module, inputs: list[torch.Tensor], atol: float = 1e-4) -> float:
    """``check_onnx`` for the OpenVINO IR at ``path`` (CPU plugin, f32)."""
    import openvino as ov

    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return _max_abs_diff(path, "OpenVINO", lambda x: torch.from_numpy(compiled(x.float().cpu().numpy())[0]), model,
                         inputs, atol)


def check_torchscript(path: str | os.PathLike, model: nn.Module, inputs: list[torch.Tensor],
                      atol: float = 1e-4) -> float:
    """``check_onnx`` for the TorchScript file at ``path``."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=FutureWarning)
        loaded = torch.jit.load(str(path))
    return _max_abs_diff(path, "TorchScript", loaded, model, inputs, atol)


def _max_abs_diff(path: str | os.PathLike, runtime: str, run: Callable[[torch.Tensor], torch.Tensor],
                  model: nn.Module, inputs: list[torch.Tensor], atol: float) -> float:
    """Max abs difference of ``run`` (an exported model) to ``model.eval()`` over ``inputs`` (at most ``atol``)."""
    worst = 0.0
    model = model.eval()
    for x in inputs:
        with torch.no_grad():
            ref, got = model(x).float().cpu(), run(x).float().cpu()
        if got.shape != ref.shape:
            raise ExportError(f"{path}: {runtime} output shape {tuple(got.shape)} != PyTorch {tuple(ref.shape)} "
                              f"for input {tuple(x.shape)}")
        worst = max(worst, diff := float((got - ref).abs().max()))
        if diff > atol:
            raise ExportError(f"{path}: {runtime} differs from PyTorch by {diff:.3g} > {atol:g} "
                              f"for input {tuple(x.shape)}")
    return worst


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol (``get_next``: a feed, then None) over image batches."""

    def __init__(self, batches: list[torch.Tensor]):
        self._batches = iter([{ONNX_INPUT: b.float().cpu().numpy()} for b in batches])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._batches, None)


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

    def save(out: Path) -> None:
        pre = out.with_name(".pre.onnx")
        try:
            quant_pre_process(str(src), str(pre))
            quantize_static(str(pre), str(out), _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        except Exception as err:
            raise ExportError(f"ONNX Runtime could not quantize {src}: {describe(err)}") from err
        finally:
            pre.unlink(missing_ok=True)
    return save_staged(Path(dst), save)


def export_openvino(model: nn.Module, path: str | os.PathLike, example: torch.Tensor) -> Path:
    """Write ``to_openvino(model, example)`` as OpenVINO IR by ``save_staged``: ``path`` (``.xml``, the graph) and
    ``path.with_suffix(".bin")`` (float32 weights, not compressed to fp16)."""
    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"an OpenVINO IR path ends in .xml, got {path}")
    ov_model = to_openvino(model, example)
    import openvino as ov

    return save_staged(path, lambda main: ov.save_model(ov_model, str(main), compress_to_fp16=False))


def to_openvino(model: nn.Module, example: torch.Tensor) -> Any:
    """``openvino.convert_model`` of ``model.eval()``: batch axis dynamic, C x H x W of ``example``; ``ExportError``
    when OpenVINO cannot convert it."""
    require_packages("openvino", purpose="OpenVINO export", extra="quant")
    import openvino as ov

    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about the stem's input check
            return ov.convert_model(model.eval(), example_input=example,
                                    input=[ov.PartialShape([-1, *example.shape[1:]])])
    except Exception as err:
        raise ExportError(f"OpenVINO cannot convert {model_label(model)}: {describe(err)}") from err


def describe(err: BaseException) -> str:
    """``Type: first line`` of an exception and of its root cause (exporter messages run to pages)."""
    def line(e: BaseException) -> str:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
        return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"

    root, seen = err, {id(err)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        root = nxt
        seen.add(id(root))
    return line(err) + (f" (caused by {line(root)})" if root is not err else "")
