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
this is exactly SAGA. :class:`SAGARule` is the stacked rule (one table per model, service
``fixed_batches``: the engine names each model's batch); :class:`SAGA` its torch.optim wrapper
(call ``on_batch(j, n_batches)`` before every step, as the engine does). One mini-batch gradient
per step.

The sparse scenario's state masking leaves the table and its running sum alone (they stay
consistent; the table's entries are gradients at past points).

Memory: n_batches x n_parameters floats; for LeNet-5 (44,426 parameters) at batch 64 on
60,000 images that is 938 x 44,426 x 4 B = 167 MB, at batch 256 42 MB. Larger batches are
recommended.
"""
from __future__ import annotations

import torch

from .registry import OptimizerSpec
from .rule_optimizer import RuleOptimizer
from .stacked import StackedRule
from .svrg import check_lr, check_nonnegative


class SAGARule(StackedRule):
    """SAGA over K models, each with its own table ``[K, n_batches, N]``; see the module docstring."""
    hyperparameters = {"lr": 0.05, "weight_decay": 0.0}
    needs = frozenset({"fixed_batches"})
    unmasked_state = ("table_sum",)  # kept consistent with the table: table_sum = sum_j n_j table[j]

    def __init__(self, hparams, p):
        super().__init__(hparams, p)
        self.wd, self.decay = self.weight_decay, self.any("weight_decay")
        self.total = self.add_state("table_sum", p)
        self.table = self.seen = self.sizes = None

    @classmethod
    def check(cls, h):
        check_lr(h["lr"])
        check_nonnegative("weight_decay", h["weight_decay"])

    def _allocate(self, p, n_batches) -> None:
        if not isinstance(n_batches, int) or n_batches < 1:
            raise ValueError(f"Invalid n_batches value: {n_batches!r}")
        self.table = torch.zeros((self.k, n_batches, p.shape[1]), dtype=p.dtype, device=p.device)
        self.seen = torch.zeros((self.k, n_batches), dtype=torch.bool, device=p.device)
        self.sizes = torch.zeros((self.k, n_batches), dtype=torch.float64, device=p.device)

    def _batch_ids(self, oracle) -> torch.Tensor:
        ids = getattr(oracle, "batch_ids", None)
        if ids is None:
            raise RuntimeError("SAGA needs the batch id of every step (on_batch(batch_id, n_batches); "
                               "its spec asks the engine for fixed batches)")
        ids = torch.as_tensor(ids, device=self.device).reshape(-1)
        if self.table is None:
            self._allocate(self.total, oracle.n_batches)
        elif oracle.n_batches != self.table.shape[1]:
            raise ValueError(f"SAGA's table has {self.table.shape[1]} batches, got n_batches="
                             f"{oracle.n_batches}: the batch partition must stay fixed")
        if not bool(((ids >= 0) & (ids < self.table.shape[1])).all()):
            raise ValueError(f"Invalid batch_id {ids.tolist()!r} for {self.table.shape[1]} batches")
        return ids

    def step(self, p, g, lr, oracle=None):
        ids = self._batch_ids(oracle)
        rows = torch.arange(self.k, device=self.device)
        n_j = float(oracle.batch_size or 1)
        first = ~self.seen[rows, ids]
        self.seen[rows, ids] = True
        self.sizes[rows, ids] = n_j
        seen_size = self.sizes.sum(1, keepdim=True)
        scale = (self.seen.sum(1, keepdim=True).double() * n_j / seen_size).to(p.dtype)
        diff = g - self.table[rows, ids]
        v = torch.where(first.view(-1, 1), g, diff * scale + self.total / seen_size.to(p.dtype))
        self.total.add_(diff * n_j)
        self.table[rows, ids] = g
        if self.decay:
            v = v + self.wd * p
        p.sub_(lr.to(p.dtype) * v)
        self.steps += 1

    @torch.no_grad()
    def reset(self, i):
        super().reset(i)
        if self.table is not None:
            self.table[i].zero_()
            self.seen[i] = False
            self.sizes[i] = 0.0


class SAGA(RuleOptimizer):
    """Mini-batch SAGA (torch.optim wrapper of :class:`SAGARule`): ``lr``, ``weight_decay``."""
    rule_class = SAGARule

    def __init__(self, params, lr: float = 0.05, weight_decay: float = 0.0):
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay))

    def on_batch(self, batch_id: int, n_batches: int) -> None:
        rule = self._rule()
        if rule.table is not None and n_batches != rule.table.shape[1]:
            raise ValueError(f"SAGA's table has {rule.table.shape[1]} batches, got n_batches={n_batches}: "
                             "the batch partition must stay fixed")
        super().on_batch(batch_id, n_batches)

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        if "table" not in self.state[self._params()[0]]:
            offset = 0
            for p in self._params():
                self.state[p]["table"] = self.rule.table[0, :, offset:offset + p.numel()].view(-1, *p.shape)
                offset += p.numel()
        return loss

    @property
    def table_bytes(self) -> int:
        table = self.rule.table if self.rule is not None else None
        return 0 if table is None else table.numel() * table.element_size()


def _saga(model, **hp):
    return SAGA(model.parameters(), **hp)


SPECS = [
    OptimizerSpec("saga", "noise_reduction", _saga, {"lr": 0.05, "weight_decay": 0.0},
                  {"lr": (1e-3, 0.5, "log")},
                  "mini-batch SAGA (Defazio et al. 2014): v = g_j(w) - table[j] + mean(table)",
                  needs=frozenset({"fixed_batches"}), version=2, rule=SAGARule),
]
