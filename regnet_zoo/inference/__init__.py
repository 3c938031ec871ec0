"""Deployment tools: BN folding, channels_last, bf16 / int8, torch.compile, TorchScript and ONNX export."""

from regnet_zoo.inference.calibration import CalibrationError, calibration_batches
from regnet_zoo.inference.export import (
    ExportDependencyError,
    ExportError,
    check_onnx,
    export_onnx,
    onnx_metadata,
    to_torchscript,
)
from regnet_zoo.inference.fuse import BNFusionError, batchnorm_layers, fuse_bn
from regnet_zoo.inference.optimize import FrozenCompiled, compile_model, optimize_for_inference, to_channels_last
from regnet_zoo.inference.precision import (
    PRECISIONS,
    BF16Inference,
    BF16UnsupportedError,
    EmulatedBF16Warning,
    UnsupportedDtypeError,
    cpu_capabilities,
    require_bf16,
)
from regnet_zoo.inference.quantize import (
    QuantizationDependencyError,
    QuantizationError,
    QuantizedArtifactError,
    QuantizedModel,
    load_quantized,
    quantize_model,
    read_metadata,
    save_quantized,
)

__all__ = ["PRECISIONS", "BF16Inference", "BF16UnsupportedError", "BNFusionError", "CalibrationError",
           "EmulatedBF16Warning", "ExportDependencyError", "ExportError", "FrozenCompiled",
           "QuantizationDependencyError", "QuantizationError", "QuantizedArtifactError", "QuantizedModel",
           "UnsupportedDtypeError", "batchnorm_layers", "calibration_batches", "check_onnx", "compile_model",
           "cpu_capabilities", "export_onnx", "fuse_bn", "load_quantized", "onnx_metadata",
           "optimize_for_inference", "quantize_model", "read_metadata", "require_bf16", "save_quantized",
           "to_channels_last", "to_torchscript"]
