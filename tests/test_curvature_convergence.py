"""Second-order methods on ill-conditioned problems, where a preconditioner is needed.

Problems (tests/problems.py): ``ill_least_squares`` (one output, Hessian condition number
about 1e4) and ``ill_softmax`` (4 classes with a reference class, no L2); the condition
numbers are asserted below. Optima come from numpy / scipy, not torch.

With exact curvature where the method allows it (full batch; K-FAC's sampled Fisher replaced
by its expectation over the model's classes; AdaHessian's Hutchinson probe replaced by the
exact Hessian diagonal; L-BFGS with its stopping tolerances off) every method reaches
``TIGHT`` = 1e-6 relative distance to the optimum in the stated number of steps, while
gradient descent with its best constant rate stays above ``GD_FLOOR`` = 1e-2 after
``GD_STEPS`` steps, more steps than any method here takes. The stochastic variants (K-FAC's
own sampled Fisher on mini-batches, AdaHessian with its Hutchinson probe) and Shampoo (its
statistics are gradient outer products, not curvature, so it has no exact mode) get their own
tolerances, stated in their rows.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from helpers.optimizers.adahessian import AdaHessian
from helpers.optimizers.kfac import KFAC
from helpers.optimizers.lbfgs_l2 import LBFGSWithDecay
from problems import (ILL_PROBLEMS, column_scales, fit, flat, ill_least_squares, ill_softmax,
                      ill_softmax_hessian)

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")

TIGHT = 1e-6
GD_STEPS = 1000
GD_FLOOR = 1e-2
HUTCHINSON = AdaHessian.hutchinson


def exact_diagonal(params, grads, probes=None):
    """The exact Hessian diagonal through AdaHessian's own product: unit probes e_j give e_j (H e_j)."""
    diagonal = [torch.zeros_like(p) for p in params]
    for i, p in enumerate(params):
        for j in range(p.numel()):
            unit = [torch.zeros_like(q) for q in params]
            unit[i].view(-1)[j] = 1.0
            diagonal[i] += HUTCHINSON(params, grads, unit)[i]
    return diagonal


def expected_fisher_pass(self):
    """K-FAC's sampled pass with the draw replaced by its expectation: every class c as target,
    weighted by sqrt(p_c), so sum_c p_c Ds Ds^T is the exact Fisher output factor."""
    args, kwargs = self._inputs
    with torch.enable_grad():
        self._recording = True
        try:
            logits = self.model(*args, **kwargs)
        finally:
            self._recording = False
        probs = torch.softmax(logits.detach(), dim=1)
        layers = [m for m in self.layers if m in self._seen]
        per_class = {m: [] for m in layers}
        for c in range(probs.shape[1]):
            target = torch.full((len(probs),), c)
            loss = (probs[:, c].sqrt() * F.cross_entropy(logits, target, reduction="none")).sum()
            grads = torch.autograd.grad(loss, [self._seen[m]["s"] for m in layers], retain_graph=True)
            for m, g in zip(layers, grads):
                per_class[m].append(g.detach())
    for m in layers:
        self._seen[m]["ds"] = torch.cat(per_class[m])


def lbfgs_exact(problem, steps=10, max_iter=50, history_size=50):
    """Full-batch L-BFGS (strong Wolfe) with its gradient and change tolerances at 0."""
    torch.manual_seed(0)
    model = problem.make_model()
    opt = LBFGSWithDecay(model.parameters(), lr=1.0, max_iter=max_iter, history_size=history_size,
                         line_search_fn="strong_wolfe", tolerance_grad=0.0, tolerance_change=0.0)

    def closure():
        opt.zero_grad()
        loss = problem.loss(model(problem.x), problem.y)
        loss.backward()
        return loss

    for _ in range(steps):
        opt.step(closure)
    return float((flat(model) - problem.optimum).norm() / problem.optimum.norm())


def gradient_descent(problem, lr: float, steps: int) -> float:
    """Plain full-batch gradient descent at a constant rate; relative distance at the end."""
    torch.manual_seed(0)
    model = problem.make_model()
    params = list(model.parameters())
    with torch.no_grad():
        for _ in range(steps):
            with torch.enable_grad():
                grads = torch.autograd.grad(problem.loss(model(problem.x), problem.y), params)
            for p, g in zip(params, grads):
                p.sub_(g, alpha=lr)
    return float((flat(model) - problem.optimum).norm() / problem.optimum.norm())


def hessian_of(problem) -> np.ndarray:
    if problem.name == "ill_softmax":
        return ill_softmax_hessian()
    return (problem.x.T @ problem.x / problem.n).numpy()


def test_problems_are_ill_conditioned_with_stationary_reference_optima():
    assert float(column_scales(8)[0]) == pytest.approx(1e-2) and float(column_scales(8)[-1]) == 1.0
    for make in ILL_PROBLEMS.values():
        problem = make()
        eigenvalues = np.linalg.eigvalsh(hessian_of(problem))
        assert eigenvalues[0] > 0
        assert 5e3 < eigenvalues[-1] / eigenvalues[0] < 2e5, problem.name
        model = problem.make_model()
        torch.nn.utils.vector_to_parameters(problem.optimum.clone(), model.parameters())
        grads = torch.autograd.grad(problem.loss(model(problem.x), problem.y), list(model.parameters()))
        assert torch.cat([g.flatten() for g in grads]).norm() < 1e-9, problem.name


def test_gradient_descent_with_its_best_rate_misses_the_tolerance():
    problem = ill_least_squares()
    hessian = hessian_of(problem)
    values, vectors = np.linalg.eigh(hessian)
    torch.manual_seed(0)
    start = flat(problem.make_model()).numpy()
    error = vectors.T @ (start - problem.optimum.numpy())
    rates = np.linspace(1e-3, 2.0, 4000)[:, None] / values[-1]  # every convergent constant rate
    distances = np.linalg.norm((1 - rates * values) ** GD_STEPS * error, axis=1)
    best = distances.min() / float(problem.optimum.norm())
    assert best > GD_FLOOR, best

    softmax = ill_softmax()
    values = np.linalg.eigvalsh(hessian_of(softmax))
    for lr in (2 / (values[-1] + values[0]), 1 / values[-1]):
        distance = gradient_descent(softmax, float(lr), GD_STEPS)
        assert GD_FLOOR < distance < 1.5, (lr, distance)


FULL = dict(batch_size="full", schedule="constant")
KFAC_EXACT = {"lr": 1.0, "momentum": 0.0, "damping": 1e-10, "stat_decay": 0.0, "factor_interval": 1,
              "inverse_interval": 1, "kl_clip": 0.0}
ADAHESSIAN_FULL = {"lr": 1.0, "betas": (0.5, 0.999), "eps": 1e-12}

# (name, problem, fit settings, tolerance, exact-curvature patch)
ROWS = [
    ("newton_cg", "ill_least_squares", dict(FULL, hparams={"damping": 1e-6, "cg_tol": 1e-10, "max_cg_iters": 40}, epochs=8), TIGHT, None),
    ("newton_cg", "ill_softmax", dict(FULL, hparams={"damping": 1e-6, "cg_tol": 1e-10, "max_cg_iters": 40}, epochs=8), TIGHT, None),
    ("newton_cg", "ill_softmax", dict(FULL, hparams={"damping": 1e-6, "cg_tol": 1e-10, "max_cg_iters": 40, "curvature": "hessian"}, epochs=8), TIGHT, None),
    ("kfac", "ill_softmax", dict(FULL, hparams=KFAC_EXACT, epochs=60), TIGHT, "fisher"),
    ("adahessian", "ill_least_squares", dict(FULL, hparams=ADAHESSIAN_FULL, epochs=150), TIGHT, "diagonal"),
    ("adahessian", "ill_softmax", dict(FULL, hparams=ADAHESSIAN_FULL, epochs=150), TIGHT, "diagonal"),
    # stochastic variants: K-FAC's one-draw sampled Fisher on the full batch, then on
    # mini-batches of 100 with running factors and a linear decay; AdaHessian's Hutchinson probe
    ("kfac", "ill_softmax", dict(FULL, hparams=KFAC_EXACT, epochs=60), TIGHT, None),
    ("kfac", "ill_softmax", dict(hparams=dict(KFAC_EXACT, stat_decay=0.95, damping=1e-8), epochs=10,
                                 batch_size=100, schedule="linear"), 3e-2, None),
    ("adahessian", "ill_least_squares", dict(FULL, hparams=ADAHESSIAN_FULL, epochs=150), 1e-4, None),
    # Shampoo: gradient statistics, no curvature; momentum, running statistics
    ("shampoo", "ill_least_squares", dict(FULL, hparams={"lr": 0.1, "momentum": 0.9, "beta2": 0.99, "epsilon": 1e-12,
                                                        "update_interval": 1, "graft": "none"}, epochs=200), 1e-4, None),
]


@pytest.mark.parametrize("name, problem_name, settings, tol, patch", ROWS,
                         ids=[f"{r[0]}-{r[1]}-{r[4] or 'own'}-{i}" for i, r in enumerate(ROWS)])
def test_second_order_method_reaches_the_tolerance(name, problem_name, settings, tol, patch, monkeypatch):
    if patch == "diagonal":
        monkeypatch.setattr(AdaHessian, "hutchinson", staticmethod(exact_diagonal))
    elif patch == "fisher":
        monkeypatch.setattr(KFAC, "_sampled_pass", expected_fisher_pass)
    result = fit(name, ILL_PROBLEMS[problem_name](), **settings)
    assert result.distance <= tol, f"{name} on {problem_name}: distance {result.distance:.3g} > {tol:g}"


@pytest.mark.parametrize("problem_name", sorted(ILL_PROBLEMS))
def test_lbfgs_with_its_tolerances_off_reaches_the_tolerance(problem_name):
    distance = lbfgs_exact(ILL_PROBLEMS[problem_name]())
    assert distance <= TIGHT, distance
