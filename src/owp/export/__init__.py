"""ONNX export of a model's whole proposal pipeline (:mod:`owp.export.onnx`) and running the
exported files with ONNX Runtime (:mod:`owp.export.runtime`)."""

from owp.export.onnx import export_onnx
from owp.export.runtime import OnnxProposer

__all__ = ["OnnxProposer", "export_onnx"]
