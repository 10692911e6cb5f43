"""Training recipes as data: which parameters train, and at which learning rate.

A recipe is an ordered list of :class:`Rule` (first match wins) over parameter names. Each rule
names a part of the model — ``backbone``, ``classification`` or ``localization``, which every
model maps to parameter-name prefixes in its ``PARTS``, or ``None`` for every parameter — and
gives its learning rate as a multiple of the base learning rate, or ``None`` to freeze it
(DESIGN.md §4). On FCOS-OWP ``classification`` is the classification tower and logits and
``localization`` the box tower with regression and objectness; on two-stage models
localization is the RPN and the box-regression branches, classification the class scores
(none for the class-agnostic RPN and OLN). Parameters already frozen by the model
(``trainable_layers``) stay frozen. ``finetune`` and ``frozen`` start from an ``owp`` checkpoint
(``train.init``); every recipe has a ``_fb`` twin with the backbone frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from owp.errors import OwpInputError

PARTS: tuple[str, ...] = ("backbone", "classification", "localization")
CLASSIFICATION, LOCALIZATION, BACKBONE = "classification", "localization", "backbone"


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
}
"""Every recipe; ``<name>_fb`` is ``<name>`` with the backbone frozen."""


def list_recipes() -> dict[str, str]:
    """Recipe name -> one-line description."""
    return {name: description for name, (description, _) in RECIPES.items()}


def parameter_groups(model: nn.Module, recipe: str, base_lr: float) -> list[dict]:
    """Optimizer parameter groups for ``recipe``; frozen parameters get ``requires_grad=False``.

    Returns one group per distinct learning rate, each ``{"params", "lr", "name"}`` where
    ``name`` lists the model parts it came from (for logging).
    """
    if recipe not in RECIPES:
        raise OwpInputError(f"unknown recipe {recipe!r}; available: {', '.join(RECIPES)}")
    rules = RECIPES[recipe][1]
    model_parts = getattr(model, "PARTS", {})
    prefixes = {part: tuple(model_parts.get(part, ())) for part in PARTS}
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
    return [{**g, "name": ",".join(sorted(g["name"]))} for g in groups.values()]
