"""Deployment tools: BN folding, channels_last, torch.compile, TorchScript and ONNX export."""

from regnet_zoo.inference.export import (
    ExportDependencyError,
    ExportError,
    check_onnx,
    example_input,
    export_onnx,
    onnx_metadata,
    to_torchscript,
)
from regnet_zoo.inference.fuse import BNFusionError, batchnorm_layers, fuse_bn
from regnet_zoo.inference.optimize import compile_model, optimize_for_inference, to_channels_last

__all__ = ["BNFusionError", "ExportDependencyError", "ExportError", "batchnorm_layers", "check_onnx", "compile_model",
           "example_input", "export_onnx", "fuse_bn", "onnx_metadata", "optimize_for_inference", "to_channels_last",
           "to_torchscript"]
