"""Proposal models (``create_model``): FCOS-OWP, the two-stage references (RPN, OLN,
Double-Head) and the non-learned baselines."""

from owp.models.double_head import DoubleHeadConfig, DoubleHeadRCNN
from owp.models.factory import create_model, list_models, model_config
from owp.models.fcos import FCOSOWP, FCOSOWPConfig
from owp.models.oln import OLN, OLNConfig
from owp.models.rpn import RPNConfig, RPNProposer, rpn_proposals

__all__ = [
    "FCOSOWP",
    "OLN",
    "DoubleHeadConfig",
    "DoubleHeadRCNN",
    "FCOSOWPConfig",
    "OLNConfig",
    "RPNConfig",
    "RPNProposer",
    "create_model",
    "list_models",
    "model_config",
    "rpn_proposals",
]
