"""Every model keeps :class:`owp.models.contract.ProposalModel`: it builds, satisfies the
Protocol, its parts name real parameters, and its export kind is what the exporter does."""

from __future__ import annotations

import typing
from dataclasses import fields

import pytest
import torch
import torchvision

from owp.errors import OwpInputError
from owp.export.onnx import FCOSPipeline, RPNPipeline, pipeline_for
from owp.export.runtime import OnnxProposer
from owp.models.contract import ProposalModel
from owp.models.registry import create_model, list_models, model_spec
from owp.models.two_stage.torchvision import FasterRCNNProposals, FasterRCNNSourceConfig

# Narrow, small-input variants of every named model (their depth and family stay the name's).
TINY = {"out_channels": 64, "norm_groups": 16, "representation_size": 128, "min_size": 64}
PIPELINES = {"fcos": FCOSPipeline, "rpn": RPNPipeline}
CLASS_MEMBERS = [
    name
    for name, hint in typing.get_type_hints(ProposalModel, include_extras=True).items()
    if typing.get_origin(hint) is typing.ClassVar
]


def tiny(name: str) -> torch.nn.Module:
    known = {f.name for f in fields(model_spec(name).config_type)}
    torch.manual_seed(0)
    return create_model(name, **{k: v for k, v in TINY.items() if k in known}, max_size=96)


@pytest.fixture(scope="module")
def faster_rcnn() -> FasterRCNNProposals:
    detector = torchvision.models.detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    return FasterRCNNProposals(detector, FasterRCNNSourceConfig(source="torchvision:x")).eval()


@pytest.mark.parametrize("name", list(list_models()))
def test_every_model_keeps_the_contract(name):
    model = tiny(name)
    assert isinstance(model, ProposalModel)
    assert model.classifies == (model.config.num_classes is not None)
    assert model.category_ids is None and model.class_names is None
    names = [n for n, _ in model.named_parameters()]
    for part, prefixes in model.PARTS.items():
        if prefixes and (part != "classification" or model.classifies):  # optional heads aside
            assert any(n.startswith(prefixes) for n in names), (name, part, prefixes)
    every_prefix = tuple(p for prefixes in model.PARTS.values() for p in prefixes)
    assert [n for n in names if not n.startswith(every_prefix)] == []
    for loss, parts in model.LOSS_PARTS.items():
        assert set(parts) <= set(model.PARTS), (name, loss)
    for part in model.COMPILED_PARTS:
        assert isinstance(model.get_submodule(part), torch.nn.Module)
    assert model.TORCH and model.training_stats() == {}


@pytest.mark.parametrize("name", list(list_models()))
def test_the_export_kind_is_what_export_does(name):
    model = tiny(name).eval()
    if model.EXPORT_AS is None:
        with pytest.raises(OwpInputError) as refused:
            pipeline_for(model)
        message = str(refused.value)
        assert message == model.EXPORT_REFUSAL and "\n" not in message
        assert "does not export to ONNX" in message
    else:
        scorings = ["rpn"] if model.EXPORT_AS == "rpn" else None
        assert type(pipeline_for(model, scorings=scorings)) is PIPELINES[model.EXPORT_AS]


def test_the_torchvision_faster_rcnn_source_keeps_the_contract(faster_rcnn):
    assert isinstance(faster_rcnn, ProposalModel)
    assert not faster_rcnn.classifies and faster_rcnn.EXPORT_AS == "rpn"
    assert faster_rcnn.transform is faster_rcnn.detector.transform
    assert type(pipeline_for(faster_rcnn)) is RPNPipeline


def test_an_onnx_graph_declares_the_contract_and_refuses_to_export_again():
    assert all(name in vars(OnnxProposer) for name in CLASS_MEMBERS)
    assert not OnnxProposer.TORCH and OnnxProposer.EXPORT_AS is None
    assert OnnxProposer.transform is None and OnnxProposer.COMPILED_PARTS == ()
