"""Training recipes as data: which parameters train, and at which learning rate.

The learning rate over the run is :func:`owp.engine.schedule.lr_scheduler`'s (linear warm-up,
then steps; the base learning rate scaled with the batch size by
:func:`owp.engine.schedule.scaled_lr`).

A recipe is an ordered list of :class:`Rule` (first match wins) over parameter names. Each rule
names a part of the model — ``backbone``, ``classification`` or ``localization``, which every model
maps to parameter-name prefixes in its ``PARTS``, or ``None`` for every parameter — and gives its
learning rate as a multiple of the base learning rate, or ``None`` to freeze it
(docs/reference/models.md, 'What "frozen" and "ignored" mean'). On FCOS-OWP ``classification`` is
the classification tower and logits and ``localization`` the box tower with regression and
objectness; on two-stage models localization is the RPN and the box-regression branches,
classification the class scores (none for the class-agnostic RPN and OLN). A fourth part,
``objectness``, is FCOS-OWP's objectness branches alone (inside localization); the ``objectness``
recipe trains only them. Parameters already frozen by the model (``trainable_layers``) stay frozen.
``finetune`` and ``frozen`` start from an ``owp`` checkpoint (``train.init``); each of those four
recipes has a ``_fb`` twin with the backbone frozen.

A frozen part is frozen completely (docs/reference/models.md, 'What "frozen" and "ignored" mean'):

* its parameters get ``requires_grad=False`` and no optimizer group;
* its batch-norm layers become ``FrozenBatchNorm2d``
  (:func:`~owp.models.freezing.freeze_batch_norm`), so their running statistics stay fixed
  across ``model.train()``;
* a loss computed by a frozen part is not backpropagated at all (:func:`trained_losses`):
  otherwise, e.g., the focal loss of ``owp``'s frozen classifier would still train the trunk
  through the features it reads. Each model names the parts behind each of its losses in
  ``LOSS_PARTS``; a loss trains only when none of those parts is frozen. Once
  :func:`parameter_groups` has applied the recipe, the model itself returns the other losses
  detached (a forward hook): still there to log, but summing every loss, as a torchvision
  training loop does, sends them no gradient. The trainer leaves them out of its total too.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from owp.errors import OwpInputError
from owp.models.freezing import freeze_batch_norm

PARTS: tuple[str, ...] = ("backbone", "classification", "localization", "objectness")
CLASSIFICATION, LOCALIZATION, BACKBONE = "classification", "localization", "backbone"
OBJECTNESS = "objectness"
"""The objectness branches alone (FCOS-OWP's centerness and IoU convs, inside localization);
only the ``objectness`` recipe names it."""


@dataclass(frozen=True)
class Rule:
    """Parameters of model part ``part`` (``None``: any) train at ``lr_scale`` x the base lr
    (``lr_scale=None``: frozen)."""

    part: str | None
    lr_scale: float | None


_BASE_RECIPES: dict[str, tuple[str, tuple[Rule, ...]]] = {
    "owp": (
        "class-agnostic: backbone, box tower, regression and objectness train; "
        "classification frozen",
        (Rule(CLASSIFICATION, None), Rule(None, 1.0)),
    ),
    "joint": (
        "everything trains at the base learning rate (classification and objectness together)",
        (Rule(None, 1.0),),
    ),
    "finetune": (
        "from an owp checkpoint (--init): classification at the base lr, objectness, "
        "regression and backbone at 0.1x",
        (Rule(CLASSIFICATION, 1.0), Rule(None, 0.1)),
    ),
    "frozen": (
        "from an owp checkpoint (--init): localization branches frozen, classification "
        "and backbone train",
        (Rule(LOCALIZATION, None), Rule(None, 1.0)),
    ),
}

RECIPES: dict[str, tuple[str, tuple[Rule, ...]]] = {
    **_BASE_RECIPES,
    **{
        f"{name}_fb": (f"{name} with the backbone frozen", (Rule(BACKBONE, None), *rules))
        for name, (_, rules) in _BASE_RECIPES.items()
    },
    "objectness": (
        "only the objectness branches train (e.g. a new IoU branch on a pretrained detector, "
        "train.init: torchvision:NAME); everything else frozen",
        (Rule(OBJECTNESS, 1.0), Rule(None, None)),
    ),
}
"""Every recipe; ``<name>_fb`` is ``<name>`` with the backbone frozen."""


def list_recipes() -> dict[str, str]:
    """Recipe name -> one-line description."""
    return {name: description for name, (description, _) in RECIPES.items()}


def frozen_parts(recipe: str) -> frozenset[str]:
    """The model parts (of :data:`PARTS`) that ``recipe`` freezes."""
    return frozenset(rule.part for rule in _rules(recipe) if rule.lr_scale is None and rule.part)


def trained_losses(model: nn.Module, recipe: str) -> frozenset[str]:
    """Names of the losses of ``model`` that ``recipe`` backpropagates: those whose
    ``LOSS_PARTS`` include no frozen part (the backbone is shared, so it is never one of them).
    """
    frozen = frozen_parts(recipe)
    present = _present_parts(model)
    return frozenset(
        name
        for name, parts in model.LOSS_PARTS.items()
        if present.issuperset(parts) and not frozen.intersection(parts)
    )


def _present_parts(model: nn.Module) -> set[str]:
    """The parts that hold parameters in this model (a class-agnostic head has no classifier)."""
    names = [name for name, _ in model.named_parameters()]
    prefixes = model.PARTS
    return {
        part
        for part in PARTS
        if prefixes.get(part) and any(n.startswith(tuple(prefixes[part])) for n in names)
    }


def _rules(recipe: str) -> tuple[Rule, ...]:
    if recipe not in RECIPES:
        raise OwpInputError(f"unknown recipe {recipe!r}; available: {', '.join(RECIPES)}")
    return RECIPES[recipe][1]


def parameter_groups(model: nn.Module, recipe: str, base_lr: float) -> list[dict]:
    """Optimizer parameter groups for ``recipe``; freezes the parts it freezes, in place.

    Frozen parameters get ``requires_grad=False`` and their batch norms become
    ``FrozenBatchNorm2d`` (see the module docstring). Returns one group per distinct learning
    rate, each ``{"params", "lr", "name"}`` where ``name`` lists the model parts it came from
    (for logging).
    """
    rules = _rules(recipe)
    prefixes = {part: tuple(model.PARTS.get(part, ())) for part in PARTS}
    groups: dict[float, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        rule = next(r for r in rules if r.part is None or name.startswith(prefixes[r.part]))
        if rule.lr_scale is None:
            parameter.requires_grad_(False)
            continue
        group = groups.setdefault(
            rule.lr_scale, {"params": [], "lr": base_lr * rule.lr_scale, "name": set()}
        )
        group["params"].append(parameter)
        group["name"].add(rule.part or "*")
    if not groups:
        raise OwpInputError(f"recipe {recipe!r} leaves no parameter to train in this model")
    trained = trained_losses(model, recipe)
    if not trained:
        raise OwpInputError(f"recipe {recipe!r} leaves no loss to train in this model")
    freeze_batch_norm(model)
    _detach_untrained_losses(model, trained)
    return [{**g, "name": ",".join(sorted(g["name"]))} for g in groups.values()]


# The loss hook of the recipe applied last to each model (a new recipe replaces it).
_LOSS_HOOKS: weakref.WeakKeyDictionary[nn.Module, RemovableHandle] = weakref.WeakKeyDictionary()


def _detach_untrained_losses(model: nn.Module, trained: frozenset[str]) -> None:
    """Make ``model``'s training forward return every loss outside ``trained`` detached.

    A forward hook on the model (replacing the hook of a recipe applied before): it acts on
    the loss dict of a training-mode forward and leaves eval outputs alone.
    """
    previous = _LOSS_HOOKS.pop(model, None)
    if previous is not None:
        previous.remove()

    def detach(module: nn.Module, inputs: Any, output: Any) -> Any:
        if not (module.training and isinstance(output, dict)):
            return output
        return {
            name: value.detach() if name not in trained and isinstance(value, Tensor) else value
            for name, value in output.items()
        }

    _LOSS_HOOKS[model] = model.register_forward_hook(detach)
