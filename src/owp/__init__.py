"""owp: open-world object proposals.

Find every object in an image, including kinds never labelled in training, with boxes ranked by
a learned objectness score: FCOS-OWP and the two-stage references RPN, OLN and Double-Head
(``create_model``), RPN objectness of any torchvision Faster R-CNN (``rpn_proposals``),
COCO-format datasets with open-world class splits, the embedded synthetic open-world set, and
the open-world evaluator.

The public names are imported on first use (PEP 562), so that ``import owp`` and the
evaluation and data tools do not pay for importing torch and the models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from owp.lazy import lazy_attributes
from owp.version import __version__

_EXPORTS: dict[str, str] = {
    "CocoDetection": "owp.data.dataset",
    "read_coco_json": "owp.data.coco",
    "ClassSplit": "owp.data.splits",
    "SplitSpec": "owp.data.splits",
    "load_split": "owp.data.splits",
    "load": "owp.engine.runs",
    "OwpInputError": "owp.errors",
    "evaluate_detections": "owp.evaluation.detection",
    "evaluate_proposals": "owp.evaluation.proposals",
    "create_model": "owp.models",
    "list_models": "owp.models",
    "rpn_proposals": "owp.models",
    "export_onnx": "owp.export",
    "OnnxProposer": "owp.export",
}
"""Public name -> the module that defines it."""

__all__ = [
    "ClassSplit",
    "create_model",
    "list_models",
    "load",
    "CocoDetection",
    "OwpInputError",
    "SplitSpec",
    "__version__",
    "evaluate_detections",
    "evaluate_proposals",
    "load_split",
    "read_coco_json",
    "rpn_proposals",
    "export_onnx",
    "OnnxProposer",
]

if TYPE_CHECKING:
    from owp.data.coco import read_coco_json
    from owp.data.dataset import CocoDetection
    from owp.data.splits import ClassSplit, SplitSpec, load_split
    from owp.engine.runs import load
    from owp.errors import OwpInputError
    from owp.evaluation.detection import evaluate_detections
    from owp.evaluation.proposals import evaluate_proposals
    from owp.export import OnnxProposer, export_onnx
    from owp.models import create_model, list_models, rpn_proposals


__getattr__, __dir__ = lazy_attributes("owp", _EXPORTS, globals())
