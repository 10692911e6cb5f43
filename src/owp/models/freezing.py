"""Freezing a part of a model completely: no gradient, and norm statistics that never move.

``requires_grad=False`` alone does not freeze a ``BatchNorm2d``: in training mode it still
normalises with the statistics of the batch and updates its running mean and variance, so the
"frozen" part's outputs drift while the rest trains. :func:`freeze_batch_norm` replaces every
batch-norm layer whose parameters are all frozen by torchvision's
:class:`~torchvision.ops.misc.FrozenBatchNorm2d` holding the same affine parameters and running
statistics (detectron2's ``FrozenBatchNorm2d.convert_frozen_batchnorm`` rule). The frozen layer
normalises with the running statistics in every mode, so ``model.train()`` cannot wake it up.

The state dict keeps every key except ``num_batches_tracked`` of the converted layers, which a
frozen layer never counts; ``FrozenBatchNorm2d`` drops that key when it loads a checkpoint of
the unconverted model, and ``BatchNorm2d`` fills it in when it loads a converted one, so
checkpoints load either way.
"""

from __future__ import annotations

from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d


def freeze_batch_norm(module: nn.Module) -> int:
    """Replace, in place, each ``BatchNorm2d`` of ``module`` whose parameters all have
    ``requires_grad=False`` by an equivalent ``FrozenBatchNorm2d``; returns how many.

    Layers without affine parameters are left alone (owp's models have none).
    """
    converted = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.BatchNorm2d and child.affine and not child.weight.requires_grad:
                if child.bias.requires_grad:
                    raise ValueError(f"batch norm {name!r} has a frozen weight but a trained bias")
                setattr(parent, name, _frozen_copy(child))
                converted += 1
    return converted


def _frozen_copy(norm: nn.BatchNorm2d) -> FrozenBatchNorm2d:
    frozen = FrozenBatchNorm2d(norm.num_features, eps=norm.eps)
    frozen.to(device=norm.running_mean.device)
    frozen.weight.copy_(norm.weight.detach())
    frozen.bias.copy_(norm.bias.detach())
    frozen.running_mean.copy_(norm.running_mean)
    frozen.running_var.copy_(norm.running_var)
    return frozen
