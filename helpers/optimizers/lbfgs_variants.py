"""Full-batch L-BFGS (the large-batch stochastic variant is ``lbfgs`` in torch_builtin)."""
from __future__ import annotations

from .lbfgs_l2 import LBFGSWithDecay
from .registry import OptimizerSpec


def _lbfgs_full(model, lr, history_size, max_iter, weight_decay):
    return LBFGSWithDecay(model.parameters(), lr=lr, history_size=history_size, max_iter=max_iter,
                          line_search_fn="strong_wolfe", weight_decay=weight_decay)


SPECS = [
    OptimizerSpec("lbfgs_full", "second_order", _lbfgs_full,
                  {"lr": 1.0, "history_size": 20, "max_iter": 20, "weight_decay": 0.0},
                  {"lr": (0.1, 1.0, "log"), "history_size": [10, 20, 50]},
                  "full-batch L-BFGS with strong-Wolfe line search: each step (one per epoch) "
                  "runs up to max_iter iterations on all training images",
                  batch_size="full", decays=False, version=2),
]
