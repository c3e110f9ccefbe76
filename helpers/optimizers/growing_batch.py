"""Growing batch sizes (dynamic sampling; Byrd, Chin, Nocedal & Wu 2012; Friedlander & Schmidt 2012).

Plain mini-batch SGD (optionally heavy-ball momentum), x <- x - lr g_B, whose batch grows
geometrically: |B_e| = round(b_0 * growth^e) in epoch e (capped at the training-set size),
so the gradient noise shrinks like 1/|B_e| at a constant learning rate and the number of
steps per epoch falls. The engine draws the growing batches (spec ``batch_size`` and
``batch_growth``; a run's ``batch_size``/``batch_growth`` override them); the update is the
stacked :class:`~helpers.optimizers.rules.SGDRule` (torch.optim.SGD for single models).
"""
from __future__ import annotations

from .registry import OptimizerSpec
from .rules import SGDRule
from .torch_builtin import _sgd

SPECS = [
    OptimizerSpec("sgd_growing_batch", "noise_reduction", _sgd,
                  {"lr": 0.05, "momentum": 0.0, "weight_decay": 0.0},
                  {"lr": (1e-3, 0.5, "log")},
                  "SGD with the batch growing 1.5x per epoch from 32 (dynamic sampling)",
                  batch_size=32, batch_growth=1.5, rule=SGDRule),
]
