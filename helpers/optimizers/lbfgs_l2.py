"""torch.optim.LBFGS with an L2 term, so every registered optimizer takes ``weight_decay``."""
from __future__ import annotations

import torch


class LBFGSWithDecay(torch.optim.LBFGS):
    """L-BFGS on f(x) + (weight_decay / 2) ||x||^2, with a per-step cap on closure evaluations.

    torch's LBFGS has no ``weight_decay``; the L2 term is added to the loss and gradient
    inside the closure the line search evaluates, so the Wolfe conditions see the
    regularised objective.
    """

    def __init__(self, params, weight_decay: float = 0.0, **kwargs):
        if weight_decay < 0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        super().__init__(params, **kwargs)
        self.weight_decay = weight_decay
        self._max_eval = self.param_groups[0]["max_eval"]

    def limit_evaluations(self, n: int) -> None:
        """Cap the next :meth:`step` at ``n`` closure evaluations, e.g. the oracle budget left.

        torch's strong-Wolfe search is given ``max_ls = max_eval - evaluations so far`` and can
        evaluate ``max_ls + 1`` times, so a step may take ``max_eval + 1`` evaluations: the cap
        is set one below ``n`` (an evaluation that would pass the budget would stop, and undo,
        the whole step: for full-batch L-BFGS that is the whole run). ``n = 1`` leaves room for
        no iteration."""
        self.param_groups[0]["max_eval"] = min(self._max_eval, max(1, int(n) - 1))

    def step(self, closure):
        if not self.weight_decay:
            return super().step(closure)
        params = [p for group in self.param_groups for p in group["params"]]

        @torch.no_grad()
        def regularised():
            with torch.enable_grad():
                loss = closure()
            penalty = sum(p.pow(2).sum() for p in params)
            for p in params:
                if p.grad is not None:
                    p.grad.add_(p, alpha=self.weight_decay)
            return loss + 0.5 * self.weight_decay * penalty

        return super().step(regularised)
