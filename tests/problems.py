"""Small problems with known optima, and a driver that runs any registered optimizer on them.

``fit`` drives an optimizer exactly as :func:`helpers.engine.train.train` does: ``on_epoch_start``
with a full-data mean-gradient closure, ``on_batch`` and fixed batches when the spec needs
them, the engine's learning-rate schedule written into ``param_groups``, ``step(closure)``
with ``closure(create_graph=False)``, and the final iterate read under
``evaluation_weights()`` when the optimizer has it.

Problems (float64, so tolerances measure the optimizer, not rounding):

* ``quadratic``: least squares ``0.5 mean (a_i^T x - b_i)^2 + (l2/2)||x||^2`` with n=256, d=10,
  rows well conditioned; optimum in closed form ``(A^T A/n + l2 I)^{-1} A^T b/n``.
* ``logistic``: multinomial logistic regression (n=300, d=5, 3 classes, with bias)
  ``mean CE + (l2/2)(||W||^2 + ||c||^2)``; optimum from scipy's L-BFGS-B with an analytic
  gradient and a tight tolerance, independent of torch.

The L2 term reaches the optimizer as ``weight_decay`` (torch's coupled form adds ``l2 * w``
to the gradient, i.e. the penalty ``(l2/2)||w||^2``). Optimizers whose decay is decoupled
(AdamW-like) have a different fixed point, so for them ``l2_in_loss=True`` moves the same
penalty into the loss and passes ``weight_decay=0``: the optimum is then the same.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize
from torch import nn

from helpers.problem.data import batch_indices
from helpers.optimizers import get_spec
from helpers.engine.schedules import lr_factor


@dataclass(frozen=True)
class Problem:
    name: str
    make_model: Callable[[], nn.Module]
    x: torch.Tensor
    y: torch.Tensor
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # mean data loss, no penalty
    l2: float
    optimum: torch.Tensor  # flattened parameters in model.parameters() order

    @property
    def n(self) -> int:
        return len(self.y)

    def objective(self, model: nn.Module) -> float:
        with torch.no_grad():
            data = self.loss(model(self.x), self.y)
            return float(data + 0.5 * self.l2 * flat(model).pow(2).sum())

    def objective_at(self, w: torch.Tensor) -> float:
        model = self.make_model()
        torch.nn.utils.vector_to_parameters(w.clone(), model.parameters())
        return self.objective(model)

    @property
    def f_star(self) -> float:
        return self.objective_at(self.optimum)


@dataclass
class FitResult:
    weights: torch.Tensor
    objective: float
    distance: float  # ||w - w*|| / max(1, ||w*||)
    gap: float       # f(w) - f(w*)
    grad_evals: int  # sample-gradient evaluations, as the engine counts them
    steps: int


def flat(model: nn.Module) -> torch.Tensor:
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def _half_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return 0.5 * (out.squeeze(-1) - y).pow(2).mean()


@lru_cache(maxsize=None)
def quadratic(n: int = 256, d: int = 10, l2: float = 1e-2, seed: int = 0) -> Problem:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64)
    x_true = torch.randn(d, generator=g, dtype=torch.float64)
    b = a @ x_true + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    hessian = a.T @ a / n + l2 * torch.eye(d, dtype=torch.float64)
    optimum = torch.linalg.solve(hessian, a.T @ b / n)

    def make_model():
        return nn.Linear(d, 1, bias=False).double()

    return Problem("quadratic", make_model, a, b, _half_mse, l2, optimum)


@lru_cache(maxsize=None)
def logistic(n: int = 300, d: int = 5, k: int = 3, l2: float = 5e-2, seed: int = 1) -> Problem:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = 1.5 * torch.randn(k, d, generator=g, dtype=torch.float64)
    logits = x @ w_true.T + 0.5 * torch.randn(n, k, generator=g, dtype=torch.float64)
    y = logits.argmax(1)
    optimum = _scipy_logistic(x.numpy(), y.numpy(), k, l2)

    def make_model():
        return nn.Linear(d, k).double()

    return Problem("logistic", make_model, x, y, F.cross_entropy, l2, torch.from_numpy(optimum))


def _scipy_logistic(x: np.ndarray, y: np.ndarray, k: int, l2: float) -> np.ndarray:
    """argmin mean CE + (l2/2)||theta||^2 by L-BFGS-B; theta = [W (k x d) row-major, c (k)]."""
    n, d = x.shape
    onehot = np.eye(k)[y]

    def f_and_grad(theta):
        w, c = theta[:k * d].reshape(k, d), theta[k * d:]
        z = x @ w.T + c
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        value = -(onehot * logp).sum() / n + 0.5 * l2 * theta @ theta
        r = (np.exp(logp) - onehot) / n
        grad = np.concatenate([(r.T @ x).ravel(), r.sum(0)]) + l2 * theta
        return value, grad

    result = minimize(f_and_grad, np.zeros(k * d + k), jac=True, method="L-BFGS-B",
                      options={"ftol": 1e-16, "gtol": 1e-12, "maxiter": 10_000})
    if np.linalg.norm(result.jac) > 1e-9:
        raise RuntimeError(f"reference solver did not converge: |grad| = {np.linalg.norm(result.jac)}")
    return result.x


PROBLEMS = {"quadratic": quadratic, "logistic": logistic}


def fit(spec_name: str, problem: Problem, hparams: dict | None = None, epochs: int = 50,
        batch_size: int | str | None = None, schedule: str = "constant",
        schedule_params: dict | None = None, l2_in_loss: bool = False, seed: int = 0) -> FitResult:
    """Train ``problem``'s model with the registered optimizer ``spec_name`` as the engine would.

    ``batch_size`` None takes the spec's own (or 32); ``"full"`` is the whole data set; the
    spec's ``batch_growth`` multiplies it per epoch, as in the engine.
    Runs on one thread: these problems are tiny and intra-op threads only add overhead.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(spec_name, problem, hparams, epochs, batch_size, schedule, schedule_params,
                    l2_in_loss, seed)
    finally:
        torch.set_num_threads(threads)


def _fit(spec_name, problem, hparams, epochs, batch_size, schedule, schedule_params, l2_in_loss,
         seed) -> FitResult:
    spec = get_spec(spec_name)
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = problem.make_model()
    penalty = problem.l2 if l2_in_loss else 0.0
    hp = {**(hparams or {}), "weight_decay": 0.0 if l2_in_loss else problem.l2}
    optimizer = spec.build(model, **hp)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    counter = {"grad": 0}

    def objective_on(x, y):
        loss = problem.loss(model(x), y)
        if penalty:
            loss = loss + 0.5 * penalty * sum(p.pow(2).sum() for p in model.parameters())
        return loss

    def make_closure(x, y):
        def closure(create_graph: bool = False):
            model.zero_grad(set_to_none=False)
            loss = objective_on(x, y)
            loss.backward(create_graph=create_graph)
            counter["grad"] += len(y)
            return loss
        closure.batch_size = len(y)  # as the engine's closures (SAGA weights its table by it)
        return closure

    full_closure = make_closure(problem.x, problem.y)
    n = problem.n
    base = batch_size if batch_size is not None else (spec.batch_size or 32)
    base = n if base == "full" else min(int(base), n)
    growth = float(spec.batch_growth or 1.0)
    sizes = [min(n, round(base * growth ** e)) for e in range(epochs)]
    total_steps = sum(math.ceil(n / size) for size in sizes)
    fixed = batch_indices(n, sizes[0], generator) if "fixed_batches" in spec.needs else None
    step = 0
    for epoch in range(epochs):
        if hasattr(optimizer, "on_epoch_start"):
            optimizer.on_epoch_start(full_closure)
        if fixed is not None:
            order = torch.randperm(len(fixed), generator=generator)
            batches = [(int(i), fixed[i]) for i in order]
        else:
            batches = list(enumerate(batch_indices(n, sizes[epoch], generator)))
        for batch_id, index in batches:
            factor = lr_factor(schedule, step / total_steps, **(schedule_params or {}))
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            if hasattr(optimizer, "on_batch"):
                optimizer.on_batch(batch_id, len(batches))
            loss = optimizer.step(make_closure(problem.x[index], problem.y[index]))
            step += 1
            if loss is not None and not math.isfinite(float(torch.as_tensor(loss).detach())):
                break
    evaluation = getattr(optimizer, "evaluation_weights", None)
    if evaluation is not None:
        with evaluation():
            weights = flat(model)
    else:
        weights = flat(model)
    extra = getattr(optimizer, "oracle_counts", {}) or {}
    objective = problem.objective_at(weights)
    distance = float((weights - problem.optimum).norm() / max(1.0, float(problem.optimum.norm())))
    return FitResult(weights, objective, distance, objective - problem.f_star,
                     counter["grad"] + int(extra.get("grad", 0)), step)
