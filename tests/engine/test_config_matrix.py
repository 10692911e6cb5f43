"""The configuration space, not only the presets: every option that changes the graph or the
targets, on every model family, through the trainer's own step.

Each case builds a tiny model (ResNet-18 trunk, 16-32 channel heads, 96-128 px inputs) through
:class:`owp.engine.trainer.Trainer`, takes two SGD steps on generated images (one with a crowd
box) and one eval forward, and asserts:

* every loss is finite;
* what the recipe freezes is bit-identical after the steps (parameters and batch-norm
  statistics), and every parameter the recipe trains changes unless no trained loss reaches it;
* under ``frozen_fb`` the localization outputs for a fixed image do not move;
* the eval output follows the model contract (owp.models.contract).

The full product of the options is large, so a covering subset is drawn: every value of every
option appears in some case, and the rest are random cases, all from one seed (printed; set
``OWP_MATRIX_SEED`` to draw another). Invalid combinations must be refused by ``create_model``
(or by the recipe) with a ``ValueError``.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
from typing import Any

import pytest
import torch

from owp.config import ModelConfig, RunConfig, TrainConfig
from owp.engine.recipes import RECIPES
from owp.engine.trainer import Trainer
from owp.models.registry import create_model

SEED = int(os.environ.get("OWP_MATRIX_SEED", "20261201"))
RANDOM_CASES_PER_FAMILY = 2

# ``frozen`` freezes localization: a class-agnostic model has nothing left (tested below).
CLASS_AGNOSTIC_RECIPES = [r for r in RECIPES if not r.startswith("frozen")]
TWO_STAGE_RECIPES = [r for r in RECIPES if r != "objectness"]  # FCOS-OWP's branches only

_FCOS_BASE = {
    "out_channels": 16,
    "norm_groups": 4,
    "num_convs": 1,
    "min_size": 96,
    "max_size": 96,
    "pre_nms_top_n": 200,
    "unknown_mask_thresh": 0.3,
}
_RCNN_BASE = {
    "out_channels": 16,
    "representation_size": 32,
    "min_size": 128,
    "max_size": 128,
    "rpn_batch_size_per_image": 32,
    "box_batch_size_per_image": 16,
    "rpn_pre_nms_top_n_train": 100,
    "rpn_post_nms_top_n_train": 50,
    "rpn_pre_nms_top_n_test": 100,
    "rpn_post_nms_top_n_test": 50,
}

# Per family: the model name, fixed options, and each graph/target option with its values.
FAMILIES: dict[str, tuple[str, dict[str, Any], dict[str, list[Any]]]] = {
    "fcos": (
        "fcos_owp_tiny",
        _FCOS_BASE,
        {
            "num_classes": [None, 3],
            "objectness": [("centerness",), ("iou",), ("centerness", "iou")],
            "conditional": [False, True],
            "objectness_samples": ["center", "foreground", "all"],
            "unknown_mask": [None, "pixel", "area"],
            "scoring": ["centerness", "iou", "geomean", "cls*centerness", "cls*iou"],
            "backbone_norm": ["batch", "frozen"],
            "trainable_layers": [None, 2],
            "recipe": list(RECIPES),
        },
    ),
    "rpn": (
        "rpn_tiny",
        _RCNN_BASE,
        {
            "roi_heads": [False, True],
            "scoring": ["rpn", "roi"],
            "backbone_norm": ["batch", "frozen"],
            "trainable_layers": [None, 2],
            "recipe": [r for r in CLASS_AGNOSTIC_RECIPES if r in TWO_STAGE_RECIPES],
        },
    ),
    "oln": (
        "oln_tiny",
        _RCNN_BASE,
        {
            "scoring": ["oln", "rpn", "iou"],
            "backbone_norm": ["batch", "frozen"],
            "trainable_layers": [None, 2],
            "recipe": [r for r in CLASS_AGNOSTIC_RECIPES if r in TWO_STAGE_RECIPES],
        },
    ),
    "double_head": (
        "double_head_tiny",
        {**_RCNN_BASE, "num_classes": 3, "conv_channels": 16},
        {
            "complementary": [False, True],
            "scoring": ["cls", "rpn", "roi"],
            "backbone_norm": ["batch", "frozen"],
            "trainable_layers": [None, 2],
            "recipe": TWO_STAGE_RECIPES,
        },
    ),
}

_NEEDS = {"centerness": {"centerness"}, "iou": {"iou"}, "geomean": {"centerness", "iou"}}


def model_is_valid(family: str, options: dict[str, Any]) -> bool:
    """The spec of which model options go together (docs/reference/models.md), written
    independently."""
    if family == "fcos":
        scoring, classes = options["scoring"], options["num_classes"]
        branch = scoring.removeprefix("cls*")
        if scoring.startswith("cls*") and classes is None:
            return False
        if not _NEEDS[branch] <= set(options["objectness"]):
            return False
        # Masking decides with the IoU branch by default and masks the classification loss.
        return not options["unknown_mask"] or (
            classes is not None and "iou" in options["objectness"]
        )
    if family == "rpn":
        return options["scoring"] != "roi" or options["roi_heads"]
    return True


def recipe_trains_something(family: str, options: dict[str, Any]) -> bool:
    """A recipe must leave a loss to train: ``frozen`` freezes localization, and only a
    classifier is left (FCOS-OWP with classes, Double-Head); ``objectness`` trains FCOS-OWP's
    objectness branches, which the two-stage models do not have."""
    if options["recipe"] == "objectness":
        return family == "fcos"
    if not options["recipe"].startswith("frozen"):
        return True
    return family == "double_head" or (family == "fcos" and options["num_classes"] is not None)


def _cases() -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """(valid cases, invalid model option sets), drawn with :data:`SEED`."""
    rng = random.Random(SEED)
    valid, invalid = [], []
    for family, (_, _, space) in FAMILIES.items():
        keys = list(space)
        every = [
            dict(zip(keys, values, strict=True)) for values in itertools.product(*space.values())
        ]
        good = [
            o for o in every if model_is_valid(family, o) and recipe_trains_something(family, o)
        ]
        bad = [o for o in every if not model_is_valid(family, o)]
        # Greedy cover: each pick holds the most (option, value) pairs not seen yet (random
        # among the best), until every value of every option is in some case.
        uncovered = {(k, repr(v)) for o in good for k, v in o.items()}
        never = {(k, repr(v)) for k, values in space.items() for v in values} - uncovered
        assert not never, f"{family}: no valid case holds {sorted(never)}"
        chosen: list[dict] = []
        while uncovered:
            gain = [len(uncovered & {(k, repr(v)) for k, v in o.items()}) for o in good]
            best = max(gain)
            pick = rng.choice([o for o, g in zip(good, gain, strict=True) if g == best])
            chosen.append(pick)
            uncovered -= {(k, repr(v)) for k, v in pick.items()}
        chosen += rng.sample(good, RANDOM_CASES_PER_FAMILY)
        valid += [(family, o) for o in chosen]
        invalid += [(family, o) for o in rng.sample(bad, min(len(bad), 6))]
    return valid, invalid


VALID, INVALID = _cases()
print(f"configuration matrix: seed {SEED}, {len(VALID)} cases, {len(INVALID)} invalid")


def _case_id(case: tuple[str, dict]) -> str:
    family, options = case
    return family + ":" + ",".join(f"{k}={v}" for k, v in options.items())


def _split(options: dict[str, Any]) -> tuple[dict, str]:
    model_options = {k: v for k, v in options.items() if k != "recipe"}
    return model_options, options["recipe"]


def _trainer(family: str, options: dict[str, Any], tmp_path) -> Trainer:
    name, fixed, _ = FAMILIES[family]
    model_options, recipe = _split(options)
    config = RunConfig(
        model=ModelConfig(name=name, options={**fixed, **model_options}),
        train=TrainConfig(
            recipe=recipe,
            batch_size=2,
            base_lr=0.16,
            warmup_iters=0,
            amp=False,
            device="cpu",
            seed=0,
        ),
    )
    return Trainer(config, tmp_path, progress=False)


def _batch(num_classes: int | None) -> tuple[list[torch.Tensor], list[dict]]:
    generator = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 96, 112, generator=generator) for _ in range(2)]
    labels = num_classes or 1
    targets = [
        {
            "boxes": torch.tensor(
                [[8.0, 10.0, 60.0, 70.0], [50.0, 30.0, 90.0, 60.0], [0.0, 60.0, 40.0, 95.0]]
            ),
            "labels": torch.tensor([0, 1 % labels, 2 % labels]),
            "ignore": torch.tensor([False, False, True]),  # a crowd box
        },
        {
            "boxes": torch.tensor([[20.0, 20.0, 100.0, 90.0]]),
            "labels": torch.tensor([labels - 1]),
            "ignore": torch.tensor([False]),
        },
    ]
    return images, targets


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


# Double-Head-Ext's cross terms: under a recipe that freezes one of the two branches, the
# trainable half of a cross term has no trained loss left to reach it.
_CROSS_TERM_PARAMETERS = (
    "roi_heads.box_predictor.bbox_pred_fc.",
    "roi_heads.box_predictor.cls_score_conv.",
)


@pytest.mark.parametrize("case", VALID, ids=_case_id)
def test_two_steps_change_exactly_what_the_recipe_trains(case, tmp_path):
    family, options = case
    trainer = _trainer(family, options, tmp_path)
    model = trainer.model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert {id(p) for n, p in model.named_parameters() if n in trainable} == in_optimizer
    # Nothing frozen is a trainable BatchNorm2d: frozen norms became FrozenBatchNorm2d.
    for name, module in model.named_modules():
        if type(module) is torch.nn.BatchNorm2d:
            assert module.weight.requires_grad, f"{name}: frozen but still a BatchNorm2d"

    images, targets = _batch(getattr(model.config, "num_classes", None))
    before_outputs = _localization_outputs(model, images[0])
    before = _snapshot(model)
    model.train()
    for _ in range(2):
        losses = trainer.run_step(images, targets)
        assert losses and all(torch.isfinite(v) for v in losses.values()), losses
        assert set(losses) <= set(model.LOSS_PARTS)
    after = _snapshot(model)
    model.train()  # a later train() call must not wake a frozen norm either
    assert all(
        type(m) is not torch.nn.BatchNorm2d or m.weight.requires_grad for m in model.modules()
    )

    changed = {k for k in before if not torch.equal(before[k], after[k])}
    parameters = dict(model.named_parameters())
    assert changed & parameters.keys() <= trainable, sorted(changed - trainable)[:5]
    # Every trainable parameter is reached by a trained loss (its gradient may be exactly zero
    # on this batch, e.g. an FPN level that no box is assigned to) except the trainable half of
    # a Double-Head cross term whose loss the recipe drops; frozen ones get no gradient at all.
    unreached = sorted(n for n in trainable if parameters[n].grad is None)
    if unreached:
        assert options.get("complementary"), unreached[:5]
        assert all(n.startswith(_CROSS_TERM_PARAMETERS) for n in unreached), unreached[:5]
    assert all(parameters[n].grad is None for n in parameters.keys() - trainable)
    assert {n for n in trainable - changed if parameters[n].grad is None} == set(unreached)
    if unreached:
        assert not set(unreached) & changed
    # Batch statistics move only in the trainable norm layers; frozen ones keep theirs.
    for key in changed - parameters.keys():
        owner = key.rsplit(".", 1)[0]
        assert f"{owner}.weight" in trainable, f"buffer {key} of a frozen layer changed"

    model.eval()
    with torch.no_grad():
        output = model([images[0]])[0]
    _check_contract(output, model, images[0])
    if options["recipe"] == "frozen_fb":
        # Trunk and localization frozen: the class-agnostic proposals do not move.
        after_outputs = _localization_outputs(model, images[0])
        assert torch.equal(after_outputs["boxes"], before_outputs["boxes"])
        assert torch.equal(after_outputs["objectness"], before_outputs["objectness"])


def _localization_outputs(model: torch.nn.Module, image: torch.Tensor) -> dict:
    """Eval outputs under a scoring that reads no classifier (the model's own otherwise)."""
    config = model.postprocess_config
    # Double-Head's "roi" is its classifier's best foreground probability.
    roi_of_a_classifier = config.scoring == "roi" and model.config.num_classes is not None
    if config.scoring.startswith("cls") or roi_of_a_classifier:
        if hasattr(model.config, "objectness"):
            agnostic = "iou" if "iou" in model.config.objectness else "centerness"
        else:
            agnostic = "rpn"
        model.postprocess_config = dataclasses.replace(config, scoring=agnostic)
    model.eval()
    try:
        with torch.no_grad():
            return model([image])[0]
    finally:
        model.postprocess_config = config


def _check_contract(output: dict, model: torch.nn.Module, image: torch.Tensor) -> None:
    boxes = output["boxes"]
    k = boxes.shape[0]
    assert boxes.shape == (k, 4) and boxes.dtype == torch.float32
    assert output["scores"].shape == (k,) and output["objectness"].shape == (k,)
    assert k <= model.postprocess_config.post_nms_top_n
    height, width = image.shape[-2:]
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= width).all()
    assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= height).all()
    assert (
        output["scores"][:-1] >= output["scores"][1:]
    ).all() or model.postprocess_config.classifying
    if model.postprocess_config.classifying:
        assert "labels" in output
    if getattr(model.config, "num_classes", None) is None:
        assert "labels" not in output and "class_scores" not in output
    if "labels" in output:  # a classifying model's labels index its classes
        assert output["labels"].shape == (k,) and output["labels"].dtype == torch.int64
        assert output["class_scores"].shape == (k,)
        assert (output["labels"] >= 0).all() and (output["labels"] < model.config.num_classes).all()


@pytest.mark.parametrize("case", INVALID, ids=_case_id)
def test_invalid_model_options_are_refused_when_built(case):
    family, options = case
    name, fixed, _ = FAMILIES[family]
    model_options, _ = _split(options)
    with pytest.raises(ValueError, match="scoring|unknown_mask|num_classes|roi"):
        create_model(name, **{**fixed, **model_options})


def test_a_recipe_that_leaves_no_loss_is_refused(tmp_path):
    from owp.errors import OwpInputError

    with pytest.raises(OwpInputError, match="leaves no loss to train"):
        _trainer(
            "fcos", {"num_classes": None, "objectness": ("iou",), "recipe": "frozen"}, tmp_path
        )
    with pytest.raises(OwpInputError, match="leaves no (loss|parameter) to train"):
        _trainer("oln", {"recipe": "frozen_fb"}, tmp_path)
    with pytest.raises(OwpInputError, match="leaves no (loss|parameter) to train"):
        _trainer("rpn", {"recipe": "frozen"}, tmp_path)


def test_the_matrix_covers_every_option_value():
    for family, (_, _, space) in FAMILIES.items():
        cases = [o for f, o in VALID if f == family]
        for key, values in space.items():
            seen = {repr(o[key]) for o in cases}
            assert seen == {repr(v) for v in values}, (family, key, seen)
