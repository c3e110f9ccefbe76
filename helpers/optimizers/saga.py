"""Mini-batch SAGA (Defazio, Bach & Lacoste-Julien 2014) over a fixed partition into batches.

A table keeps, for every batch j of the fixed partition (m batches, sizes n_j summing to N), the
mean gradient g_j(phi_j) from the last time j was visited. With batch j drawn:

    v = (m n_j / N) (g_j(w) - table[j]) + sum_k (n_k / N) table[k]  (+ weight_decay * w),
    w <- w - lr v,   table[j] <- g_j(w)

so E_j[v] (j uniform over the batches) is the full gradient even when the last batch is smaller;
with equal batches this is the textbook v = g_j(w) - table[j] + mean_k table[k]. The batch size
comes from ``closure.batch_size`` (the engine's closures carry it; without it, batches count as
equal).

Lazy start (no extra pass): N and m are those of the batches seen so far, so the first visit of
batch j is a plain SGD step (v = g_j(w)) that fills its entry; once every batch has been seen
this is exactly SAGA. The engine (spec ``needs={"fixed_batches"}``) calls
``on_batch(j, n_batches)`` before every step; outside it, do the same. One closure call (one
mini-batch gradient) per step.

The sparse scenario's state masking leaves the table and its running sum alone (they stay
consistent; the table's entries are gradients at past points).

Memory: n_batches x n_parameters floats; for LeNet-5 (44,426 parameters) at batch 64 on
60,000 images that is 938 x 44,426 x 4 B = 167 MB, at batch 256 42 MB. Larger batches are
recommended.
"""
from __future__ import annotations

import torch

from .registry import OptimizerSpec
from .svrg import check_lr, check_nonnegative


class SAGA(torch.optim.Optimizer):
    """Mini-batch SAGA with a table of per-batch gradients; see the module docstring."""

    unmasked_state = ("table", "table_sum")  # kept consistent: table_sum = sum_j n_j table[j]

    def __init__(self, params, lr: float = 0.05, weight_decay: float = 0.0):
        check_lr(lr)
        check_nonnegative("weight_decay", weight_decay)
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))
        self.n_batches = None
        self.seen = None
        self.sizes = None
        self._batch = None

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def on_batch(self, batch_id: int, n_batches: int) -> None:
        """Engine hook: batch ``batch_id`` of the fixed partition into ``n_batches`` comes next."""
        if self.n_batches is None:
            if not isinstance(n_batches, int) or n_batches < 1:
                raise ValueError(f"Invalid n_batches value: {n_batches!r}")
            self.n_batches = n_batches
            self.seen = torch.zeros(n_batches, dtype=torch.bool)
            self.sizes = torch.zeros(n_batches, dtype=torch.float64)
            for p in self._params():
                self.state[p]["table"] = torch.zeros((n_batches, *p.shape), dtype=p.dtype, device=p.device)
                self.state[p]["table_sum"] = torch.zeros_like(p)
        elif n_batches != self.n_batches:
            raise ValueError(f"SAGA's table has {self.n_batches} batches, got n_batches={n_batches}: "
                             "the batch partition must stay fixed")
        if not 0 <= batch_id < self.n_batches:
            raise ValueError(f"Invalid batch_id {batch_id!r} for {self.n_batches} batches")
        self._batch = batch_id

    @property
    def table_bytes(self) -> int:
        return sum(s["table"].numel() * s["table"].element_size() for s in self.state.values() if "table" in s)

    @torch.no_grad()
    def step(self, closure):
        if closure is None:
            raise ValueError("SAGA needs a closure that evaluates the mini-batch loss and gradient")
        if self._batch is None:
            raise RuntimeError("SAGA needs on_batch(batch_id, n_batches) before each step "
                               "(its spec asks the engine for fixed batches)")
        j, self._batch = self._batch, None
        with torch.enable_grad():
            loss = closure()
        first_visit = not bool(self.seen[j])
        self.seen[j] = True
        self.sizes[j] = float(getattr(closure, "batch_size", 1))
        seen_size = float(self.sizes.sum())
        n_j = float(self.sizes[j])
        scale = int(self.seen.sum()) * n_j / seen_size
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state[p]
                g = p.grad.detach() if p.grad is not None else torch.zeros_like(p)
                table, total = state["table"], state["table_sum"]
                if first_visit:
                    v = g.clone()
                else:
                    v = (g - table[j]).mul_(scale).add_(total, alpha=1.0 / seen_size)
                total.add_(g - table[j], alpha=n_j)
                table[j].copy_(g)
                if group["weight_decay"]:
                    v.add_(p, alpha=group["weight_decay"])
                p.add_(v, alpha=-group["lr"])
        return loss


def _saga(model, **hp):
    return SAGA(model.parameters(), **hp)


SPECS = [
    OptimizerSpec("saga", "noise_reduction", _saga, {"lr": 0.05, "weight_decay": 0.0},
                  {"lr": (1e-3, 0.5, "log")},
                  "mini-batch SAGA (Defazio et al. 2014): v = g_j(w) - table[j] + mean(table)",
                  needs=frozenset({"fixed_batches"}), version=2),
]
