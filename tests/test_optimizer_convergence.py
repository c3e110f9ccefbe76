"""Every registered optimizer converges to an independently known optimum; bad arguments fail.

Table-driven over ``helpers.optimizers.names()``, so an optimizer added later is covered by
the ``DEFAULT`` row until its owner adds its own. A row sets the hyperparameters (merged over
the spec's defaults), epochs, batch size, learning-rate schedule (as the engine applies it)
and the tolerance on ``||w - w*|| / max(1, ||w*||)`` at the end of the budget.

Tolerances: ``DETERMINISTIC_TOL`` for full-batch methods (they converge to w* itself);
``STOCHASTIC_TOL`` for mini-batch methods, which reach w* only as the step size decays, so
their rows use the engine's ``linear`` decay to zero; ``BATCH_ONE_TOL`` for one-sample
steps, whose noise needs more steps than the time limit allows to average out. The start is
about 1 (relative) away from w*. Decoupled weight decay (AdamW-like: ``x <- x - lr wd x - lr u``) has a different
fixed point from the L2-regularised objective, so rows with ``l2_in_loss`` put the penalty
into the loss (``weight_decay=0``) and the optimum is the same.
"""
from __future__ import annotations

import pytest
import torch

from helpers.optimizers import build_optimizer, get_spec, names
from problems import PROBLEMS, fit

DETERMINISTIC_TOL = 1e-4
STOCHASTIC_TOL = 3e-2
BATCH_ONE_TOL = 8e-2

DEFAULT = dict(hparams={}, epochs=30, batch_size=64, schedule="linear", tol=STOCHASTIC_TOL)
MINIBATCH = dict(epochs=30, batch_size=64, schedule="linear", tol=STOCHASTIC_TOL)
FULL_BATCH = dict(batch_size="full", schedule="constant", tol=DETERMINISTIC_TOL)

# name -> settings; a key named after a problem overrides settings for that problem only
# (the logistic problem is flatter, L ~ 0.35 against ~1.35, so plain steps can be longer).
TABLE = {
    "sgd": dict(MINIBATCH, hparams={"lr": 0.5}, logistic=dict(hparams={"lr": 2.0})),
    "sgd_basic": dict(hparams={"lr": 0.1}, epochs=4, batch_size=1, schedule="linear",
                      tol=BATCH_ONE_TOL, logistic=dict(hparams={"lr": 0.2})),
    "gd": dict(FULL_BATCH, hparams={"lr": 0.7}, epochs=100, logistic=dict(hparams={"lr": 3.0})),
    "heavy_ball": dict(MINIBATCH, hparams={"lr": 0.05}, logistic=dict(hparams={"lr": 0.2})),
    "nesterov": dict(MINIBATCH, hparams={"lr": 0.05}, logistic=dict(hparams={"lr": 0.2})),
    "adam": dict(MINIBATCH, hparams={"lr": 0.1}),
    "adamw": dict(MINIBATCH, hparams={"lr": 0.1}, l2_in_loss=True),
    "nadam": dict(MINIBATCH, hparams={"lr": 0.1}),
    "radam": dict(MINIBATCH, hparams={"lr": 0.3, "betas": (0.9, 0.99)}),
    "lbfgs": dict(FULL_BATCH, hparams={}, epochs=5),
    # second order: full-batch Newton-CG with little damping converges quadratically;
    # AdaHessian's weight decay is decoupled, like AdamW's
    "lbfgs_full": dict(FULL_BATCH, hparams={}, epochs=5),
    "newton_cg": dict(FULL_BATCH, hparams={"damping": 0.01, "cg_tol": 1e-4}, epochs=6),
    # K-FAC's sampled Fisher draws from a softmax: on the one-output quadratic that is a
    # one-class softmax with a zero output factor (damping alone would precondition), so the
    # quadratic row uses the empirical Fisher; the multi-class logistic row keeps the default
    "kfac": dict(MINIBATCH, hparams={"lr": 0.03},
                 quadratic=dict(hparams={"lr": 0.1, "fisher": "empirical"})),
    "shampoo": dict(MINIBATCH, hparams={"lr": 0.03}),
    "adahessian": dict(MINIBATCH, hparams={"lr": 0.3}, l2_in_loss=True),
    # schedule-free: the point is no schedule, so a constant rate; x is what is measured
    "sgd_schedulefree": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.5},
                             logistic=dict(hparams={"lr": 2.0})),
    "adamw_schedulefree": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.1},
                               l2_in_loss=True, logistic=dict(hparams={"lr": 0.2})),
    "lookahead_adam": dict(MINIBATCH, hparams={"lr": 0.1}, logistic=dict(hparams={"lr": 0.2})),
    "lookahead_sgd": dict(MINIBATCH, hparams={"lr": 0.05}, logistic=dict(hparams={"lr": 0.2})),
    # variance reduction converges to w* at a constant step; averaging replaces the decay
    "svrg": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.3}, tol=DETERMINISTIC_TOL,
                 logistic=dict(hparams={"lr": 2.0})),
    "sarah": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.3}, tol=DETERMINISTIC_TOL,
                  logistic=dict(hparams={"lr": 2.0})),
    "saga": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.3}, tol=DETERMINISTIC_TOL,
                 logistic=dict(hparams={"lr": 2.0})),
    "sgd_growing_batch": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.5},
                              logistic=dict(hparams={"lr": 2.0})),
    "sgd_polyak": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.05},
                       logistic=dict(hparams={"lr": 0.2})),
    "sgd_ema": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.05, "ema_decay": 0.9}),
    "sgd_swa": dict(MINIBATCH, schedule="constant", hparams={"lr": 0.05, "swa_every": 2},
                    logistic=dict(hparams={"lr": 0.2, "swa_every": 2})),
}

FIT_KEYS = ("hparams", "epochs", "batch_size", "schedule", "schedule_params", "l2_in_loss")


def row(name: str, problem: str) -> dict:
    entry = TABLE.get(name, {})
    return {**DEFAULT, **{k: v for k, v in entry.items() if k not in PROBLEMS},
            **entry.get(problem, {})}


def test_table_names_are_registered():
    stale = sorted(set(TABLE) - set(names()))
    assert not stale, f"convergence table rows for unregistered optimizers: {stale}"


@pytest.mark.parametrize("problem_name", sorted(PROBLEMS))
@pytest.mark.parametrize("name", names())
def test_converges_to_known_optimum(name, problem_name):
    problem = PROBLEMS[problem_name]()
    settings = row(name, problem_name)
    result = fit(name, problem, **{k: settings[k] for k in FIT_KEYS if k in settings})
    detail = (f"{name} on {problem_name}: distance {result.distance:.3g} (tol {settings['tol']:g}), "
              f"objective gap {result.gap:.3g}, {result.grad_evals} sample gradients")
    assert torch.isfinite(result.weights).all(), detail
    assert result.distance <= settings["tol"], detail
    assert result.gap >= -1e-9, "iterate beats the reference optimum: " + detail


def test_reference_optima_are_stationary():
    for make in PROBLEMS.values():
        problem = make()
        model = problem.make_model()
        torch.nn.utils.vector_to_parameters(problem.optimum.clone(), model.parameters())
        loss = problem.loss(model(problem.x), problem.y)
        loss = loss + 0.5 * problem.l2 * sum(p.pow(2).sum() for p in model.parameters())
        grads = torch.autograd.grad(loss, list(model.parameters()))
        assert torch.cat([g.flatten() for g in grads]).norm() < 1e-8, problem.name


def _model():
    return torch.nn.Linear(3, 2)


@pytest.mark.parametrize("name", names())
def test_negative_lr_is_rejected(name):
    if "lr" not in get_spec(name).defaults:
        pytest.skip(f"{name} has no lr hyperparameter")
    with pytest.raises(ValueError, match="-0.125"):
        build_optimizer(name, _model(), lr=-0.125)


@pytest.mark.parametrize("name", names())
def test_negative_weight_decay_is_rejected(name):
    assert "weight_decay" in get_spec(name).defaults, f"{name} must accept weight_decay"
    with pytest.raises(ValueError, match="-0.125"):
        build_optimizer(name, _model(), weight_decay=-0.125)


def test_unknown_optimizer_lists_known_names():
    with pytest.raises(ValueError) as info:
        build_optimizer("nope", _model())
    message = str(info.value)
    assert "nope" in message
    assert all(n in message for n in names())


def test_unknown_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="bogus"):
        build_optimizer("sgd", _model(), bogus=1.0)
