"""Training recipes as data: which parameters train, and at which learning rate.

A recipe is an ordered list of :class:`Rule` (first match wins) over parameter names. Each rule
names a part of the model by name prefix and gives its learning rate as a multiple of the base
learning rate, or ``None`` to freeze it (DESIGN.md §4). Parameters already frozen by the model
(``trainable_layers``) stay frozen. ``finetune`` and ``frozen`` start from an ``owp`` checkpoint
(``train.init``); every recipe has a ``_fb`` twin with the backbone frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from owp.errors import OwpInputError

CLASSIFICATION = "head.classification_head."
BACKBONE = "backbone."


@dataclass(frozen=True)
class Rule:
    """Parameters named ``prefix...`` train at ``lr_scale`` x the base lr (None: frozen)."""

    prefix: str
    lr_scale: float | None


LOCALIZATION = "head.regression_head."

_BASE_RECIPES: dict[str, tuple[str, tuple[Rule, ...]]] = {
    "owp": (
        "class-agnostic: backbone, box tower, regression and objectness train; "
        "classification frozen",
        (Rule(CLASSIFICATION, None), Rule("", 1.0)),
    ),
    "joint": (
        "everything trains at the base learning rate (classification and objectness together)",
        (Rule("", 1.0),),
    ),
    "finetune": (
        "from an owp checkpoint (--init): classification at the base lr, objectness, "
        "regression and backbone at 0.1x",
        (Rule(CLASSIFICATION, 1.0), Rule("", 0.1)),
    ),
    "frozen": (
        "from an owp checkpoint (--init): localization branches frozen, classification "
        "and backbone train",
        (Rule(LOCALIZATION, None), Rule("", 1.0)),
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
    ``name`` lists the rule prefixes it came from (for logging).
    """
    if recipe not in RECIPES:
        raise OwpInputError(f"unknown recipe {recipe!r}; available: {', '.join(RECIPES)}")
    rules = RECIPES[recipe][1]
    groups: dict[float, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        rule = next(r for r in rules if name.startswith(r.prefix))
        if rule.lr_scale is None:
            parameter.requires_grad_(False)
            continue
        group = groups.setdefault(
            rule.lr_scale, {"params": [], "lr": base_lr * rule.lr_scale, "name": set()}
        )
        group["params"].append(parameter)
        group["name"].add(rule.prefix or "*")
    if not groups:
        raise OwpInputError(f"recipe {recipe!r} leaves no parameter to train in this model")
    return [{**g, "name": ",".join(sorted(g["name"]))} for g in groups.values()]
