"""owp: open-world object proposals.

Find every object in an image, including kinds never labelled in training, with boxes ranked by
a learned objectness score: FCOS-OWP and the two-stage references RPN, OLN and Double-Head
(``create_model``), RPN objectness of any torchvision Faster R-CNN (``rpn_proposals``),
COCO-format datasets with open-world class splits, the embedded synthetic open-world set, and
the open-world evaluator.
"""

from owp.data.coco import CocoDetection, read_coco_json
from owp.data.splits import ClassSplit, SplitSpec, load_split
from owp.engine.runs import load
from owp.errors import OwpInputError
from owp.evaluation.detection import evaluate_detections
from owp.evaluation.proposals import evaluate_proposals
from owp.models import create_model, list_models, rpn_proposals

__version__ = "0.1.0"

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
]
