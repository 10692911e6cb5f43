"""Proposal models (``create_model``): FCOS-OWP (:mod:`owp.models.fcos`), the two-stage
references RPN, OLN and Double-Head (:mod:`owp.models.two_stage`) and the non-learned
baselines; every model keeps :class:`~owp.models.contract.ProposalModel`.

The names below are imported on first use (PEP 562), so that importing a submodule does not
build the whole model table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from owp.lazy import lazy_attributes

_EXPORTS: dict[str, str] = {
    "ProposalModel": "owp.models.contract",
    "create_model": "owp.models.registry",
    "list_models": "owp.models.registry",
    "model_config": "owp.models.registry",
    "FCOSOWPConfig": "owp.models.fcos.config",
    "FCOSOWP": "owp.models.fcos.model",
    "RPNConfig": "owp.models.two_stage.rpn",
    "RPNProposer": "owp.models.two_stage.rpn",
    "rpn_proposals": "owp.models.two_stage.rpn",
    "OLN": "owp.models.two_stage.oln",
    "OLNConfig": "owp.models.two_stage.oln",
    "DoubleHeadConfig": "owp.models.two_stage.double_head",
    "DoubleHeadRCNN": "owp.models.two_stage.double_head",
}
"""Public name -> the module that defines it."""

__all__ = [
    "FCOSOWP",
    "OLN",
    "DoubleHeadConfig",
    "DoubleHeadRCNN",
    "FCOSOWPConfig",
    "OLNConfig",
    "ProposalModel",
    "RPNConfig",
    "RPNProposer",
    "create_model",
    "list_models",
    "model_config",
    "rpn_proposals",
]

if TYPE_CHECKING:
    from owp.models.contract import ProposalModel
    from owp.models.fcos.config import FCOSOWPConfig
    from owp.models.fcos.model import FCOSOWP
    from owp.models.registry import create_model, list_models, model_config
    from owp.models.two_stage.double_head import DoubleHeadConfig, DoubleHeadRCNN
    from owp.models.two_stage.oln import OLN, OLNConfig
    from owp.models.two_stage.rpn import RPNConfig, RPNProposer, rpn_proposals


__getattr__, __dir__ = lazy_attributes("owp.models", _EXPORTS, globals())
