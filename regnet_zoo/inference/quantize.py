"""INT8 post-training static quantization (OpenVINO + NNCF: the fastest int8 RegNets measured, ``docs/deploy.md``,
"Low precision") and its artefact folder: ``model.xml`` + ``model.bin`` (IR) and ``quantization.json``
(preprocessing, calibration, versions, the model files' sha256), written last.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from regnet_zoo.inference.calibration import calibration_batches
from regnet_zoo.inference.export import (
    ExportError,
    describe,
    model_label,
    preprocessing,
    require_packages,
    save_staged,
    to_openvino,
)
from regnet_zoo.inference.fuse import fuse_bn
from regnet_zoo.weights.files import file_sha256

ARTIFACT_FORMAT = "regnet-zoo-quantized"
ARTIFACT_VERSION = 1
METADATA_FILE, MODEL_XML, MODEL_BIN = "quantization.json", "model.xml", "model.bin"
BACKEND = "openvino-nncf"
Preset = Literal["performance", "mixed"]
ActivationRange = Literal["minmax", "mean_minmax"]


class QuantizationError(RuntimeError):
    """The quantizer cannot handle this model (conversion or calibration failed, or not a classifier)."""


class QuantizationDependencyError(QuantizationError):
    """OpenVINO or NNCF is missing."""


class QuantizedArtifactError(ValueError):
    """A folder that is not a complete, intact quantized artefact."""


def require_quant(*names: str) -> None:
    """Import ``names``; ``QuantizationDependencyError`` naming the missing ones and the install command."""
    require_packages(*names, purpose="int8 quantization", error=QuantizationDependencyError, extra="quant")


def backend_versions() -> dict[str, str]:
    """Versions of the packages a quantized model depends on ("unknown" where not installed)."""
    out = {"torch": torch.__version__}
    for dist in ("regnet-zoo", "openvino", "nncf"):
        try:
            out[dist.replace("-", "_")] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist.replace("-", "_")] = "unknown"
    return out


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """``FileExistsError`` for an artefact in ``out_dir`` without ``overwrite``; ``NotADirectoryError`` for a file."""
    if (out_dir / METADATA_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a quantized model; pass overwrite=True (--overwrite) "
                              "or choose another folder")
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a folder")


class QuantizedModel(nn.Module):
    """An int8 OpenVINO model as a module: (N, C, H, W) float images -> (N, num_classes) float32 logits.

    Any batch size, H x W as calibrated (``metadata["input"]["shape"]``); on the CPU with ``threads`` threads
    (None: all cores). Layers left in floating point run in ``inference_precision`` (None: OpenVINO's
    default, bf16 where the CPU has it; ``"f32"`` forces f32). One infer request: one instance per thread.
    ``pretrained_cfg`` holds the preprocessing, ``metadata`` everything ``save_quantized`` writes.
    """

    def __init__(self, ov_model: Any, metadata: Mapping[str, Any], threads: int | None = None,
                 inference_precision: Literal["f32", "bf16"] | None = None):
        super().__init__()
        import openvino as ov

        self.ov_model = ov_model
        self.metadata = dict(metadata)
        self.pretrained_cfg = dict(self.metadata.get("pretrained_cfg", {}))
        if "num_classes" in self.pretrained_cfg:
            self.num_classes = self.pretrained_cfg["num_classes"]
        config = {"PERFORMANCE_HINT": "LATENCY", **({"INFERENCE_NUM_THREADS": int(threads)} if threads else {}),
                  **({"INFERENCE_PRECISION_HINT": inference_precision} if inference_precision else {})}
        self.compiled = ov.Core().compile_model(ov_model, "CPU", config)
        self.inference_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        self._request = self.compiled.create_infer_request()
        self.input_shape = tuple(self.metadata.get("input", {}).get("shape", ()))
        self.in_chans = self.input_shape[1] if len(self.input_shape) == 4 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or (self.input_shape and tuple(x.shape[1:]) != tuple(self.input_shape[1:])):
            raise ValueError(f"this quantized model takes (N, {', '.join(map(str, self.input_shape[1:]))}) float "
                             f"images, got {tuple(x.shape)}; quantize again with calibration images of that size "
                             "to serve another resolution")
        out = self._request.infer({0: x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy()})[0]
        return torch.from_numpy(out.copy())  # the request's output buffer is reused by the next call

    def extra_repr(self) -> str:
        return (f"backend={self.metadata.get('backend')}, architecture={self.pretrained_cfg.get('architecture')}, "
                f"input={self.input_shape}, inference_precision={self.inference_precision}")


def quantize_model(model: nn.Module, calibration: Any, *, num_images: int = 300, batch_size: int = 32,
                   preset: Preset = "performance", activation_range: ActivationRange = "minmax",
                   fast_bias_correction: bool = True, threads: int | None = None,
                   inference_precision: Literal["f32", "bf16"] | None = None,
                   calibration_name: str | None = None) -> QuantizedModel:
    """INT8 static quantization of ``model`` (eval mode) calibrated on ``calibration``.

    Args:
        calibration: any source of ``calibration_batches`` (tensor, loader, DataModule, image folder,
            ``"digits"``), preprocessed as the model expects; not the images you measure accuracy on.
        num_images: calibration images (NNCF's ``subset_size``); 300 is NNCF's default.
        preset: ``"performance"`` (symmetric activations) or ``"mixed"`` (asymmetric activations).
        activation_range: ``"minmax"``, the calibration images' extremes (nothing clipped), or NNCF's default
            ``"mean_minmax"``, the mean of each image's extremes (less accurate here: docs/deploy.md).
        fast_bias_correction: NNCF's bias correction of the quantized convolutions.
        threads, inference_precision: of the returned model (``QuantizedModel``).
        calibration_name: how the metadata names the source (default: the path, or its type).

    Raises ``QuantizationDependencyError`` without OpenVINO/NNCF, ``CalibrationError`` for a bad source,
    ``QuantizationError`` when the model cannot be converted or quantized, or is not a one-output classifier.
    """
    if preset not in ("performance", "mixed"):
        raise ValueError(f"preset must be 'performance' or 'mixed', got {preset!r}")
    if activation_range not in ("minmax", "mean_minmax"):
        raise ValueError(f"activation_range must be 'minmax' or 'mean_minmax', got {activation_range!r}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"quantize_model needs an nn.Module, got {type(model).__name__}")
    require_quant("openvino", "nncf")
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    batches = calibration_batches(calibration, model, num_images=num_images, batch_size=batch_size)
    images = torch.cat(batches)
    label = model_label(model)
    try:
        ov_model = to_openvino(fuse_bn(model, strict=False).cpu().float(), images[:1])
    except ExportError as err:
        raise QuantizationError(f"{err}. Use dtype='bf16' or 'fp32' for this model") from err
    if len(ov_model.outputs) != 1:
        raise QuantizationError(f"{label} returns {len(ov_model.outputs)} outputs; int8 quantization here takes a "
                                "classifier with one output (not a features_only model)")
    dataset = nncf.Dataset([images[i:i + 1].numpy() for i in range(len(images))])
    try:
        ranges = RangeEstimatorParametersSet.MINMAX if activation_range == "minmax" else None
        advanced = AdvancedQuantizationParameters(**({"activations_range_estimator_params": ranges} if ranges else {}))
        quantized = nncf.quantize(ov_model, dataset, subset_size=len(images), fast_bias_correction=fast_bias_correction,
                                  preset=nncf.QuantizationPreset(preset), advanced_parameters=advanced)
    except Exception as err:
        raise QuantizationError(f"NNCF could not quantize {label}: {describe(err)}") from err
    if calibration_name is None:
        calibration_name = os.fspath(calibration) if isinstance(calibration, (str, os.PathLike)) else \
            type(calibration).__name__
    metadata = {
        "format": ARTIFACT_FORMAT, "format_version": ARTIFACT_VERSION, "backend": BACKEND, "dtype": "int8",
        "architecture": label, "pretrained_cfg": preprocessing(model),
        "input": {"name": ov_model.inputs[0].get_any_name(), "shape": [-1, *images.shape[1:]], "layout": "NCHW",
                  "dtype": "float32"},
        "calibration": {"source": calibration_name, "num_images": len(images),
                        "preset": preset, "activation_range": activation_range,
                        "fast_bias_correction": fast_bias_correction,
                        "weights": "int8 symmetric per output channel",
                        "activations": "8-bit per tensor" + (" asymmetric" if preset == "mixed" else " symmetric")},
        "versions": backend_versions(),
    }
    return QuantizedModel(quantized, metadata, threads=threads, inference_precision=inference_precision)


def save_quantized(qmodel: QuantizedModel, out_dir: str | os.PathLike, metadata: Mapping[str, Any] | None = None,
                   *, overwrite: bool = False) -> Path:
    """Write ``qmodel`` to the folder ``out_dir`` (by ``save_staged``, the metadata last); returns the folder.
    ``metadata`` adds to (and overrides) ``qmodel.metadata``, e.g. ``{"accuracy": {"top1": 0.97, ...}}``."""
    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite)
    import openvino as ov

    meta = {**qmodel.metadata, **(metadata or {})}

    def save(main: Path) -> None:
        ov.save_model(qmodel.ov_model, str(main.with_name(MODEL_XML)), compress_to_fp16=False)
        meta["files"] = {name: file_sha256(main.with_name(name)) for name in (MODEL_XML, MODEL_BIN)}
        main.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    save_staged(out_dir / METADATA_FILE, save)
    qmodel.metadata = meta
    return out_dir


def read_metadata(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``quantization.json`` of an artefact folder; ``QuantizedArtifactError`` if absent or not ours."""
    path = Path(out_dir) / METADATA_FILE
    if not path.is_file():
        raise QuantizedArtifactError(f"{out_dir} is not a quantized model: {METADATA_FILE} is missing "
                                     "(write one with save_quantized / regnet-zoo quantize)")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise QuantizedArtifactError(f"{path} is unreadable: {err}") from err
    if not isinstance(meta, dict) or meta.get("format") != ARTIFACT_FORMAT:
        raise QuantizedArtifactError(f"{path} is not regnet-zoo quantization metadata (format {ARTIFACT_FORMAT!r})")
    if meta.get("format_version", 0) > ARTIFACT_VERSION:
        raise QuantizedArtifactError(f"{path} has format version {meta['format_version']}, newer than this "
                                     f"regnet-zoo reads ({ARTIFACT_VERSION}); upgrade regnet-zoo")
    return meta


def load_quantized(out_dir: str | os.PathLike, *, threads: int | None = None, verify: bool = True,
                   inference_precision: Literal["f32", "bf16"] | None = None) -> QuantizedModel:
    """The ``QuantizedModel`` saved in ``out_dir`` (files checked against their sha256 unless ``verify=False``)."""
    require_quant("openvino")
    import openvino as ov

    out_dir = Path(out_dir)
    meta = read_metadata(out_dir)
    for name, digest in meta.get("files", {}).items():
        path = out_dir / name
        if not path.is_file():
            raise QuantizedArtifactError(f"{out_dir}: {name} is missing; save the model again")
        if verify and file_sha256(path) != digest:
            raise QuantizedArtifactError(f"{path}: sha256 differs from {METADATA_FILE} (a partial or changed "
                                         "file); save the model again")
    try:
        ov_model = ov.Core().read_model(str(out_dir / MODEL_XML))
    except Exception as err:
        raise QuantizedArtifactError(f"OpenVINO cannot read {out_dir / MODEL_XML}: {describe(err)}") from err
    return QuantizedModel(ov_model, meta, threads=threads, inference_precision=inference_precision)

