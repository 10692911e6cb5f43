"""Proposal models: FCOS-OWP (``create_model``) and the non-learned baselines."""

from owp.models.factory import create_model, list_models, model_config
from owp.models.fcos import FCOSOWP, FCOSOWPConfig

__all__ = ["FCOSOWP", "FCOSOWPConfig", "create_model", "list_models", "model_config"]
