"""What the training loop drives: K stacked models under a stacked rule, or one module under a
torch.optim optimizer that calls the model itself. Both answer the same calls
(``begin``, ``on_epoch_start``, ``epoch_cost``, ``step_cost``, ``step``, ``after_step``,
``counts``, ``finite``, ``evaluate``, ``density``, ``kill``, ``lr``, ``model``), so
:func:`helpers.engine.train.run` is the one loop for both.
"""
from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from ..constraints.scenarios import get_scenario
from ..optimizers.stacked import lr_column
from ..problem.model import density as model_density
from .graphed_step import CudaGraphs, GraphedStep, wanted
from .stacked_model import (N_CONSTRAINED, evaluate_many, full_gradient, losses_and_grad, per_model_loss,
                            stack_models, to_model, unstack)
from .stacked_sparsity import StackedSparsity


class BudgetSpent(Exception):
    """An oracle call would pass the run's ``grad_budget``; the step is not taken."""


class _Oracle:
    """The engine services of :mod:`helpers.optimizers.stacked` for the current step."""

    def __init__(self, stepper: "StackedStepper"):
        self.stepper = stepper
        self.x = self.y = None
        self.batch_ids, self.n_batches, self.batch_size = None, None, None

    def full_gradient(self, w: torch.Tensor) -> torch.Tensor:
        split = self.stepper.train_split
        self.stepper.charge(len(split))
        with torch.enable_grad():
            return self.stepper.mask(full_gradient(w.detach(), split))

    def batch_gradient(self, w: torch.Tensor) -> torch.Tensor:
        self.stepper.charge(self.batch_size)
        with torch.enable_grad():
            g = losses_and_grad(w.detach(), self.x, self.y, loss_fn=self.stepper.loss_fn)[1]
        return self.stepper.mask(g)


class StackedStepper:
    """K models as rows of one tensor, updated by the optimizer's stacked rule.

    ``graphs``: a :mod:`~helpers.engine.graphed_step` backend that replays the steps of a
    capturable rule (default: CUDA graphs where :func:`~helpers.engine.graphed_step.wanted`).
    """

    def __init__(self, configs, nets, data, spec, total_steps: int, loss_fn=per_model_loss, graphs=None):
        first = configs[0]
        self.k = len(configs)
        self.train_split = data.train
        self.p = stack_models(nets).to(device=data.device, dtype=data.train.x.dtype)
        hparams = [c.effective_hparams for c in configs]
        self.base_lr = lr_column([h["lr"] for h in hparams], self.p)
        self.factor = 1.0
        self.factor_now = torch.ones((), dtype=torch.float64, device=self.p.device)
        self.rule = spec.rule(hparams, self.p)
        scenario = get_scenario(first.scenario)
        self.sparsity = (StackedSparsity(scenario, first.sparsity_strategy, total_steps)
                         if scenario.sparse else None)
        self.alive = torch.ones(self.k, 1, dtype=torch.float64, device=self.p.device)
        self.budget = first.grad_budget
        self.grad_evals = 0
        self.loss_fn = loss_fn
        self.oracle = _Oracle(self)
        self.snapshots: list[torch.Tensor | None] = [None] * self.k
        if graphs is None and wanted(self.p.device):
            graphs = CudaGraphs()
        capturable = self.rule.capturable and not self.rule.needs
        self.graphed = GraphedStep(self._gradient_step, graphs) if graphs is not None and capturable else None

    def charge(self, samples: int) -> None:
        if self.budget is not None and self.grad_evals + samples > self.budget:
            raise BudgetSpent
        self.grad_evals += samples

    def mask(self, g: torch.Tensor) -> torch.Tensor:
        return self.sparsity.mask_gradient(g) if self.sparsity is not None else g

    def begin(self) -> None:
        if self.sparsity is not None:
            self.sparsity.after_step(-1, self.p, self.rule.masked_state())
        self.rule.start(self.p)

    def counts(self) -> tuple[int, int]:
        return self.grad_evals, 0

    def epoch_cost(self, n: int) -> int:
        return self.rule.epoch_cost(n)

    def step_cost(self, batch_size: int, n: int) -> int:
        return self.rule.step_cost(batch_size, n)

    def on_epoch_start(self) -> None:
        with torch.no_grad():
            self.rule.on_epoch_start(self.p, self.oracle)

    def step(self, x, y, factor: float, batch_ids: list[int], n_batches: int) -> torch.Tensor:
        o = self.oracle
        o.x, o.y, o.batch_ids, o.n_batches, o.batch_size = x, y, batch_ids, n_batches, y.shape[1]
        self.factor = factor
        self.factor_now.fill_(factor)
        if not getattr(self.rule, "uses_gradient", True):
            # e.g. SARAH's step from a fresh full gradient: the batch loss only, no gradient
            with torch.no_grad():
                losses = self.loss_fn(unstack(self.p), x, y) / y.shape[1]
                self.rule.step(self.p, torch.zeros_like(self.p), self.rate(), o)
            return losses
        self.charge(y.shape[1])
        if self.graphed is not None:
            fixed_mask = self.sparsity is not None and self.sparsity.fixed
            return self.graphed((tuple(x.shape), fixed_mask), (x, y))
        return self._gradient_step(x, y)

    def _gradient_step(self, x, y) -> torch.Tensor:
        """The batch losses and gradient at ``p``, then the rule's step (what a graph captures)."""
        losses, g = losses_and_grad(self.p, x, y, loss_fn=self.loss_fn)
        with torch.no_grad():
            self.rule.step(self.p, self.mask(g) * self.alive.to(g.dtype), self.rate(), self.oracle)
        return losses

    def rate(self) -> torch.Tensor:
        """``[K, 1]``: each model's scheduled learning rate (zero for a diverged model)."""
        return self.base_lr * self.factor_now * self.alive

    def after_step(self, step: int) -> None:
        if self.sparsity is not None:
            self.sparsity.after_step(step, self.p, self.rule.masked_state())

    def lr(self, i: int) -> float:
        return float(self.base_lr[i]) * self.factor

    def finite(self) -> list[bool]:
        return torch.isfinite(self.p).all(1).tolist()

    @torch.no_grad()
    def evaluated_weights(self) -> torch.Tensor:
        w = self.rule.evaluation_weights(self.p)
        if self.sparsity is not None and w is not self.p:
            w = self.sparsity.restrict(w)
        return w

    @torch.no_grad()
    def evaluate(self, rows: list[int], split, per_sample: bool) -> dict[int, dict]:
        """Metrics of the evaluated weights of ``rows`` (and their fc1+fc2 density)."""
        if not rows:
            return {}
        w = self.evaluated_weights()[rows]
        nonzero = torch.count_nonzero(w[:, :N_CONSTRAINED], dim=1).tolist()
        out = {}
        for i, metrics, nz in zip(rows, evaluate_many(w, split, per_sample), nonzero):
            out[i] = {**metrics, "density": nz / N_CONSTRAINED}
        return out

    def density(self, i: int) -> float:
        return int(torch.count_nonzero(self.p[i, :N_CONSTRAINED])) / N_CONSTRAINED

    @torch.no_grad()
    def kill(self, i: int) -> None:
        """Keep model i's weights; let its row idle at zero (cheap, finite)."""
        self.snapshots[i] = self.p[i].clone()
        self.p[i].zero_()
        self.rule.reset(i)
        self.alive[i] = 0.0

    def model(self, i: int, into: torch.nn.Module | None = None) -> torch.nn.Module:
        row = self.snapshots[i] if self.snapshots[i] is not None else self.p[i].detach()
        if into is None:
            return to_model(row)
        with torch.no_grad():
            for name, q in to_model(row).named_parameters():
                into.get_parameter(name).copy_(q)
        return into


def make_closure(model, x, y, counter: dict, weight: float = 1.0, limit=None):
    """closure(create_graph=False): zero grads, loss on (x, y), backward; counts sample gradients.
    ``limit()`` (optional) gives the oracle calls left; a call that would pass it raises BudgetSpent."""
    def closure(create_graph: bool = False):
        if limit is not None and len(y) > limit():
            raise BudgetSpent
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y) * weight
        loss.backward(create_graph=create_graph)
        counter["grad"] += len(y)
        return loss
    closure.batch_size = len(y)
    return closure


def full_gradient_closure(model, split, counter: dict, chunk: int = 10_000, limit=None):
    """A closure evaluating the mean gradient over the whole split (chunked; counts N)."""
    def closure(create_graph: bool = False):
        if limit is not None and len(split) > limit():
            raise BudgetSpent
        model.zero_grad(set_to_none=False)
        total = 0.0
        for start in range(0, len(split), chunk):
            x, y = split.x[start:start + chunk], split.y[start:start + chunk]
            loss = F.cross_entropy(model(x), y, reduction="sum") / len(split)
            loss.backward()
            total += float(loss.detach())
        counter["grad"] += len(split)
        return torch.tensor(total)
    return closure


class ModuleStepper:
    """One LeNet-5 module under a torch.optim optimizer (methods that call the model themselves).

    Oracle budget: the optimizer may declare ``step_cost(batch_size, n)`` / ``epoch_cost(n)``;
    otherwise a step is predicted to cost what the last step of that batch size cost (the batch
    size for the first), an epoch start (``on_epoch_start``) a full pass. Every gradient call
    is also guarded (:class:`BudgetSpent`), and so is every curvature product of an optimizer
    with an ``oracle_guard`` (Newton-CG): a step stopped that way is undone (the parameters go
    back to their values before it; the calls it made stay counted); ``limit_evaluations``
    (L-BFGS) is told what is left.
    """
    k = 1

    def __init__(self, config, net, data, spec, total_steps: int):
        self.train_split = data.train
        self.net = net.to(device=data.device, dtype=data.train.x.dtype)
        self.optimizer = spec.build(self.net, **config.effective_hparams)
        for group in self.optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.hook = get_scenario(config.scenario).hook(self.net, self.optimizer, total_steps,
                                                       config.sparsity_strategy)
        self.budget = config.grad_budget
        self.counter = {"grad": 0}
        self.last_cost: dict[int, int] = {}
        if hasattr(self.optimizer, "oracle_guard"):
            self.optimizer.oracle_guard = self._guard

    def _guard(self, calls: int) -> None:
        """Raise BudgetSpent before ``calls`` oracle calls that would pass the budget."""
        if self.budget is not None and calls > self.left():
            raise BudgetSpent

    def counts(self) -> tuple[int, int]:
        extra = getattr(self.optimizer, "oracle_counts", {}) or {}
        return self.counter["grad"] + int(extra.get("grad", 0)), int(extra.get("hvp", 0))

    def left(self) -> float:
        return float("inf") if self.budget is None else self.budget - sum(self.counts())

    def begin(self) -> None:
        if self.hook is not None:
            self.hook.after_step(-1)

    def epoch_cost(self, n: int) -> int:
        if not hasattr(self.optimizer, "on_epoch_start"):
            return 0
        declared = getattr(self.optimizer, "epoch_cost", None)
        return declared(n) if declared is not None else n

    def step_cost(self, batch_size: int, n: int) -> int:
        declared = getattr(self.optimizer, "step_cost", None)
        if declared is not None:
            return declared(batch_size, n)
        if hasattr(self.optimizer, "limit_evaluations"):
            return batch_size  # the step is cut to what is left
        return self.last_cost.get(batch_size, batch_size)

    def on_epoch_start(self) -> None:
        if hasattr(self.optimizer, "on_epoch_start"):
            self.optimizer.on_epoch_start(full_gradient_closure(self.net, self.train_split, self.counter,
                                                                limit=self.left))

    def step(self, x, y, factor: float, batch_ids: list[int], n_batches: int) -> torch.Tensor:
        x, y = x[0], y[0]
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * factor
        if hasattr(self.optimizer, "on_batch"):
            self.optimizer.on_batch(batch_ids[0], n_batches)
        if self.budget is not None and hasattr(self.optimizer, "limit_evaluations"):
            self.optimizer.limit_evaluations(int(self.left()) // len(y))
        before = sum(self.counts())
        saved = [p.detach().clone() for p in self.net.parameters()] if self.budget is not None else None
        try:
            loss = self.optimizer.step(make_closure(self.net, x, y, self.counter, limit=self.left))
        except BudgetSpent:
            with torch.no_grad():
                for p, s in zip(self.net.parameters(), saved):
                    p.copy_(s)
            raise
        self.last_cost[len(y)] = sum(self.counts()) - before
        return loss.detach().reshape(1)

    def after_step(self, step: int) -> None:
        if self.hook is not None:
            self.hook.after_step(step)

    def lr(self, i: int) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def finite(self) -> list[bool]:
        return [all(bool(torch.isfinite(p).all()) for p in self.net.parameters())]

    def evaluate(self, rows: list[int], split, per_sample: bool) -> dict[int, dict]:
        from .train import evaluate
        if not rows:
            return {}
        with getattr(self.optimizer, "evaluation_weights", nullcontext)():
            metrics = evaluate(self.net, split, per_sample)
            metrics["density"] = model_density(self.net)
        return {0: metrics}

    def density(self, i: int) -> float:
        return model_density(self.net)

    def kill(self, i: int) -> None:
        pass

    def model(self, i: int, into=None) -> torch.nn.Module:
        return self.net
