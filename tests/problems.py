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

Ill-conditioned problems (for methods that use curvature; condition numbers checked in
tests/test_curvature_convergence.py):

* ``ill_least_squares``: ``0.5 mean (a_i^T x - b_i)^2`` (n=400, d=8, no L2, one output); the
  columns of a Gaussian design scaled from 1e-2 to 1 (log-spaced), so the Hessian ``A^T A/n``
  has a condition number of about 1e4; optimum by ``numpy.linalg.lstsq``.
* ``ill_softmax``: multinomial logistic regression (n=400, d=6, 4 classes, with bias, no L2)
  on features scaled the same way, the last class as reference (its logit fixed at 0, so the
  optimum is unique without an L2 term); optimum from scipy's ``trust-exact`` with an
  analytic gradient and Hessian, independent of torch.

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


def column_scales(d: int) -> torch.Tensor:
    """Log-spaced column scales from 1e-2 to 1: squared, they spread the curvature over 1e4."""
    return torch.logspace(-2, 0, d, dtype=torch.float64)


@lru_cache(maxsize=None)
def ill_least_squares(n: int = 400, d: int = 8, seed: int = 3) -> Problem:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=torch.float64) * column_scales(d)
    x_true = torch.randn(d, generator=g, dtype=torch.float64) / column_scales(d)
    b = a @ x_true + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    optimum = np.linalg.lstsq(a.numpy(), b.numpy(), rcond=None)[0]

    def make_model():
        return nn.Linear(d, 1, bias=False).double()

    return Problem("ill_least_squares", make_model, a, b, _half_mse, 0.0, torch.from_numpy(optimum))


class ReferenceLogit(nn.Module):
    """Appends a zero logit: class k-1 is the reference, so the softmax has no shift null space."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cat([z, z.new_zeros(z.shape[0], 1)], dim=1)


@lru_cache(maxsize=None)
def ill_softmax(n: int = 400, d: int = 6, k: int = 4, seed: int = 4) -> Problem:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    w_true = 0.3 * torch.randn(k, d, generator=g, dtype=torch.float64)
    logits = z @ w_true.T + torch.randn(n, k, generator=g, dtype=torch.float64)
    y = logits.argmax(1)
    x = z * column_scales(d)
    optimum = _scipy_reference_softmax(x.numpy(), y.numpy(), k)

    def make_model():
        return nn.Sequential(nn.Linear(d, k - 1), ReferenceLogit()).double()

    return Problem("ill_softmax", make_model, x, y, F.cross_entropy, 0.0, torch.from_numpy(optimum))


def _reference_index(k: int, d: int) -> list[int]:
    """Positions of [W (k-1 x d), c (k-1)] inside the full [W (k x d), c (k)] vector."""
    return [a * d + i for a in range(k - 1) for i in range(d)] + [k * d + a for a in range(k - 1)]


def _scipy_reference_softmax(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """argmin mean CE with class k-1's logit fixed at 0, by scipy's trust-exact (analytic
    gradient and Hessian); theta = [W (k-1 x d) row-major, c (k-1)]."""
    n, d = x.shape
    onehot = np.eye(k)[y]
    index = _reference_index(k, d)

    def embed(theta):
        full = np.zeros(k * d + k)
        full[index] = theta
        return full

    def f_and_grad(theta):
        full = embed(theta)
        z = x @ full[:k * d].reshape(k, d).T + full[k * d:]
        z = z - z.max(1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        r = (np.exp(logp) - onehot) / n
        return -(onehot * logp).sum() / n, np.concatenate([(r.T @ x).ravel(), r.sum(0)])[index]

    def hessian(theta):
        return softmax_hessian(x, y, k, 0.0, embed(theta))[np.ix_(index, index)]

    result = minimize(f_and_grad, np.zeros(len(index)), jac=True, method="trust-exact", hess=hessian,
                      options={"gtol": 1e-13, "maxiter": 1000})
    if np.linalg.norm(result.jac) > 1e-9:
        raise RuntimeError(f"reference solver did not converge: |grad| = {np.linalg.norm(result.jac)}")
    return result.x


def ill_softmax_hessian(theta: np.ndarray | None = None) -> np.ndarray:
    """The exact Hessian of ``ill_softmax`` (numpy) at ``theta`` (default: the optimum)."""
    problem = ill_softmax()
    x, y = problem.x.numpy(), problem.y.numpy()
    k, d = 4, x.shape[1]
    theta = problem.optimum.numpy() if theta is None else theta
    full = np.zeros(k * d + k)
    full[_reference_index(k, d)] = theta
    index = _reference_index(k, d)
    return softmax_hessian(x, y, k, 0.0, full)[np.ix_(index, index)]


def softmax_hessian(x: np.ndarray, y: np.ndarray, k: int, l2: float, theta: np.ndarray) -> np.ndarray:
    """Hessian of mean CE + (l2/2)||theta||^2 in numpy; theta = [W (k x d) row-major, c (k)]."""
    n, d = x.shape
    w, c = theta[:k * d].reshape(k, d), theta[k * d:]
    z = x @ w.T + c
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    xb = np.hstack([x, np.ones((n, 1))])
    curvature = np.einsum("na,nb->nab", p, -p) + np.einsum("na,ab->nab", p, np.eye(k))
    full = np.einsum("nab,ni,nj->aibj", curvature, xb, xb).reshape(k * (d + 1), k * (d + 1)) / n
    order = [a * (d + 1) + i for a in range(k) for i in range(d)] + [a * (d + 1) + d for a in range(k)]
    return full[np.ix_(order, order)] + l2 * np.eye(k * (d + 1))


PROBLEMS = {"quadratic": quadratic, "logistic": logistic}
ILL_PROBLEMS = {"ill_least_squares": ill_least_squares, "ill_softmax": ill_softmax}


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
