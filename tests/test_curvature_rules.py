"""Each curvature update rule against a hand computation that a plausible bug would break.

K-FAC's convolution factors on a layer with many output locations (stride and padding), over
several steps of the running average; Shampoo's exponent for 1-D parameters and its Adam-graft
bias correction; AdaHessian's decoupled weight decay and its use of the Hessian diagonal on
a problem whose diagonal spans 1e-2..1e2; Newton-CG's damping decrease, CG warm start and
negative-curvature branches. ``tools/mutants/mutations.py`` lists the bug each test catches.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from helpers.engine.train import make_closure
from helpers.optimizers.adahessian import AdaHessian
from helpers.optimizers.kfac import KFAC
from helpers.optimizers.newton_cg import NewtonCG
from helpers.optimizers.shampoo import Shampoo

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")

DOUBLE = torch.float64


# ---------------------------------------------------------------- K-FAC on a convolution

def _conv_net(seed=0):
    torch.manual_seed(seed)
    conv = nn.Conv2d(2, 3, kernel_size=3, stride=2, padding=1).double()
    return conv, nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4).double())


def _explicit_conv_factors(conv, model, x, y):
    """KFC factors (Grosse & Martens 2016) by loops over output locations, no unfold:
    A = sum_{n,t} a_t a_t^T / (N T) with a_t the (channel, row, column) patch and a trailing 1,
    G = sum_{n,t} Ds_t Ds_t^T / N with Ds = d(per-example loss)/d(conv output)."""
    n = len(x)
    padded = F.pad(x, (1, 1, 1, 1))
    locations = [(r, c) for r in range(4) for c in range(4)]
    patches = torch.cat([torch.cat([padded[:, :, 2 * r:2 * r + 3, 2 * c:2 * c + 3].reshape(n, -1),
                                    torch.ones(n, 1, dtype=DOUBLE)], dim=1) for r, c in locations])
    a = patches.T @ patches / (n * len(locations))
    s = conv(x)
    loss = F.cross_entropy(model[1:](s), y, reduction="sum")  # sum of per-example losses
    ds = torch.autograd.grad(loss, s)[0]                       # (N, C, H, W): per-example Ds
    g = sum(ds[:, :, r, c].T @ ds[:, :, r, c] for r, c in locations)
    return a.detach(), (g / n).detach()


def test_kfac_conv_factors_with_many_locations_follow_the_running_average():
    conv, model = _conv_net()
    decay = 0.6
    opt = KFAC(model, lr=0.05, momentum=0.0, stat_decay=decay, factor_interval=1, inverse_interval=1,
               kl_clip=0.0, fisher="empirical")
    generator = torch.Generator().manual_seed(1)
    expected_a = expected_g = None
    for step in range(3):
        x = torch.randn(5, 2, 7, 7, dtype=DOUBLE, generator=generator)
        y = torch.randint(0, 4, (5,), generator=generator)
        a, g = _explicit_conv_factors(conv, model, x, y)
        if step == 0:
            expected_a, expected_g = a, g
        else:
            expected_a = decay * expected_a + (1 - decay) * a
            expected_g = decay * expected_g + (1 - decay) * g
        opt.step(make_closure(model, x, y, {"grad": 0}))
        state = opt.state[conv.weight]
        torch.testing.assert_close(state["A"], expected_a, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(state["G"], expected_g, rtol=1e-10, atol=1e-12)
    assert float((expected_a - a).abs().max()) > 1e-3  # the average differs from the last batch


def test_kfac_conv_step_is_the_kronecker_preconditioned_gradient():
    conv, model = _conv_net(2)
    x = torch.randn(4, 2, 7, 7, dtype=DOUBLE, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 3])
    a, g = _explicit_conv_factors(conv, model, x, y)
    before = torch.cat([conv.weight.detach().reshape(3, -1), conv.bias.detach()[:, None]], dim=1)
    opt = KFAC(model, lr=0.5, momentum=0.0, damping=0.01, pi_correction=False, kl_clip=0.0,
               fisher="empirical")
    opt.step(make_closure(model, x, y, {"grad": 0}))
    grad = torch.cat([conv.weight.grad.reshape(3, -1), conv.bias.grad[:, None]], dim=1)
    root = math.sqrt(0.01)
    expected = before - 0.5 * torch.linalg.solve(g + root * torch.eye(3, dtype=DOUBLE), grad) @ \
        torch.linalg.inv(a + root * torch.eye(19, dtype=DOUBLE))
    after = torch.cat([conv.weight.detach().reshape(3, -1), conv.bias.detach()[:, None]], dim=1)
    torch.testing.assert_close(after, expected, rtol=1e-9, atol=1e-12)


def test_kfac_kl_clip_and_momentum_follow_ba_et_al():
    """nu = min(1, sqrt(kappa / (lr^2 sum V.grad))) scales the preconditioned steps (Ba, Grosse &
    Martens 2017); momentum as torch.optim.SGD; a parameter outside Linear/Conv2d takes V = grad."""
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(4, 3), nn.PReLU()).double()
    linear, prelu = model[0], model[1]
    x, y = torch.randn(8, 4, dtype=DOUBLE), torch.randint(0, 3, (8,))
    lr, kappa, mu, damping = 0.3, 1e-4, 0.9, 0.1
    opt = KFAC(model, lr=lr, momentum=mu, damping=damping, kl_clip=kappa, fisher="empirical",
               pi_correction=False, factor_interval=100, inverse_interval=100)
    buffers, steps = None, []
    for _ in range(2):
        before = [p.detach().clone() for p in (linear.weight, linear.bias, prelu.weight)]
        opt.step(make_closure(model, x, y, {"grad": 0}))
        state = opt.state[linear.weight]
        root = math.sqrt(damping)
        grad = torch.cat([linear.weight.grad, linear.bias.grad[:, None]], dim=1)
        v = torch.linalg.solve(state["G"] + root * torch.eye(3, dtype=DOUBLE), grad) @ \
            torch.linalg.inv(state["A"] + root * torch.eye(5, dtype=DOUBLE))
        nu = min(1.0, math.sqrt(kappa / (lr ** 2 * float((v * grad).sum()))))
        update = [nu * v[:, :4], nu * v[:, 4], prelu.weight.grad.clone()]
        buffers = update if buffers is None else [mu * b + u for b, u in zip(buffers, update)]
        steps.append(nu)
        for p, old, b in zip((linear.weight, linear.bias, prelu.weight), before, buffers):
            torch.testing.assert_close(p.detach(), old - lr * b, rtol=1e-9, atol=1e-12)
    assert all(nu < 1 for nu in steps)


# ---------------------------------------------------------------- Shampoo

def _inverse_root(matrix: np.ndarray, p: int, eps: float) -> np.ndarray:
    """(matrix + eps I)^(-1/p) by scipy, independent of Shampoo's eigh."""
    return np.real(scipy.linalg.fractional_matrix_power(matrix + eps * np.eye(len(matrix)), -1.0 / p))


def test_shampoo_one_dimensional_parameter_uses_the_inverse_square_root():
    """Order-1 case of Gupta et al. 2018: P = (sum g g^T + eps I)^(-1/2) g, checked on step 2,
    where the direction is no longer parallel to g and no grafting resets the length."""
    bias = nn.Parameter(torch.zeros(4, dtype=DOUBLE))
    opt = Shampoo([bias], lr=0.3, momentum=0.0, epsilon=1e-3, update_interval=1, graft="none")
    g1, g2 = (torch.tensor(v, dtype=DOUBLE) for v in ([1.0, -2.0, 0.5, 3.0], [0.2, 1.0, -1.5, 0.4]))
    bias.grad = g1.clone()
    opt.step()
    first = bias.detach().clone()
    bias.grad = g2.clone()
    opt.step()
    h1 = np.outer(g1, g1)
    expected_first = -0.3 * _inverse_root(h1, 2, 1e-3) @ g1.numpy()
    expected = expected_first - 0.3 * _inverse_root(h1 + np.outer(g2, g2), 2, 1e-3) @ g2.numpy()
    np.testing.assert_allclose(first.numpy(), expected_first, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(bias.detach().numpy(), expected, rtol=1e-9, atol=1e-12)


def test_shampoo_adam_graft_uses_the_bias_corrected_second_moment():
    weight = nn.Parameter(torch.zeros(3, 2, dtype=DOUBLE))
    opt = Shampoo([weight], lr=0.1, momentum=0.0, epsilon=1e-4, update_interval=1, graft="adam")
    grads = [torch.tensor([[1.0, -2.0], [0.5, 0.3], [-1.0, 2.5]], dtype=DOUBLE),
             torch.tensor([[0.1, 0.4], [-3.0, 1.0], [0.2, -0.2]], dtype=DOUBLE)]
    left, right, v = np.zeros((3, 3)), np.zeros((2, 2)), np.zeros((3, 2))
    expected = np.zeros((3, 2))
    for t, grad in enumerate(grads, start=1):
        weight.grad = grad.clone()
        opt.step()
        g = grad.numpy()
        left, right = left + g @ g.T, right + g.T @ g
        direction = _inverse_root(left, 4, 1e-4) @ g @ _inverse_root(right, 4, 1e-4)
        v = 0.999 * v + 0.001 * g * g
        v_hat = v / (1 - 0.999 ** t)
        length = np.linalg.norm(g / (np.sqrt(v_hat) + 1e-8))
        expected -= 0.1 * direction * length / np.linalg.norm(direction)
        np.testing.assert_allclose(weight.detach().numpy(), expected, rtol=1e-8, atol=1e-12)


# ---------------------------------------------------------------- AdaHessian

def _diagonal_quadratic():
    """f(x) = 1/2 sum h_i x_i^2 - b.x with h from 1e-2 to 1e2: Hutchinson is exact (z*h*z = h)."""
    h = torch.logspace(-2, 2, 5, dtype=DOUBLE)
    b = torch.tensor([1.0, -0.5, 2.0, 0.3, -1.0], dtype=DOUBLE)
    x = nn.Parameter(torch.tensor([0.5, 1.0, -2.0, 0.7, 0.1], dtype=DOUBLE))

    def closure(create_graph=False):
        x.grad = None
        loss = 0.5 * (h * x * x).sum() - b @ x
        loss.backward(create_graph=create_graph)
        return loss
    return h, b, x, closure


def test_adahessian_step_divides_by_the_hessian_diagonal_and_decays_decoupled():
    h, b, x, closure = _diagonal_quadratic()
    lr, wd, (beta1, beta2), eps = 0.4, 0.1, (0.9, 0.99), 1e-4
    opt = AdaHessian([x], lr=lr, betas=(beta1, beta2), eps=eps, weight_decay=wd)
    theta = x.detach().clone()
    m = v = torch.zeros(5, dtype=DOUBLE)
    for t in (1, 2, 3):
        grad = h * theta - b
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * h * h
        denom = (v / (1 - beta2 ** t)).sqrt() + eps
        theta = theta * (1 - lr * wd) - lr * (m / (1 - beta1 ** t)) / denom
        opt.step(closure)
        torch.testing.assert_close(x.detach(), theta, rtol=1e-12, atol=1e-14)
    assert float(opt.state[x]["exp_hessian_diag_sq"].max() / opt.state[x]["exp_hessian_diag_sq"].min()) > 1e6


def test_adahessian_weight_decay_alone_shrinks_toward_zero():
    x = nn.Parameter(torch.tensor([2.0, -3.0], dtype=DOUBLE))

    def flat(create_graph=False):
        x.grad = None
        loss = 0.5 * (x * x).sum() * 0.0
        loss.backward(create_graph=create_graph)
        return loss
    AdaHessian([x], lr=0.1, weight_decay=0.5).step(flat)
    torch.testing.assert_close(x.detach(), torch.tensor([2.0, -3.0], dtype=DOUBLE) * (1 - 0.05))


# ---------------------------------------------------------------- Newton-CG

def _least_squares(seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(4, 1, bias=False).double()
    a = torch.randn(30, 4, dtype=DOUBLE) * torch.tensor([1.0, 0.5, 0.2, 0.1], dtype=DOUBLE)
    target = torch.randn(30, dtype=DOUBLE)

    def closure(create_graph=False):
        model.zero_grad(set_to_none=False)
        loss = 0.5 * (model(a).squeeze(1) - target).pow(2).mean()
        loss.backward(create_graph=create_graph)
        return loss
    closure.batch_size = 30
    hessian = a.T @ a / 30
    return model, a, target, closure, hessian


def test_newton_cg_decreases_damping_when_the_model_predicts_the_decrease():
    """On a quadratic the Gauss-Newton model is exact up to damping: rho = 1 + (damping term) > 3/4."""
    model, a, target, closure, hessian = _least_squares()
    damping = 0.05
    w = model.weight.detach().reshape(-1).clone()
    grad = a.T @ (a @ w - target) / 30
    d = -torch.linalg.solve(hessian + damping * torch.eye(4, dtype=DOUBLE), grad)
    f = lambda v: float(0.5 * (a @ v - target).pow(2).mean())
    model_change = float(grad @ d + 0.5 * d @ (hessian + damping * torch.eye(4, dtype=DOUBLE)) @ d)
    rho = (f(w + d) - f(w)) / model_change
    opt = NewtonCG(model.parameters(), lr=1.0, damping=damping, max_cg_iters=4, cg_tol=1e-12, model=model)
    opt.step(closure)
    state = opt.state[model.weight]
    assert rho > 0.75
    assert state["rho"] == pytest.approx(rho, rel=1e-9)
    assert state["damping"] == pytest.approx(damping * 2 / 3, rel=1e-12)
    torch.testing.assert_close(model.weight.detach().reshape(-1), w + d, rtol=1e-9, atol=1e-12)


def test_newton_cg_keeps_damping_between_the_thresholds():
    """f(t) = exp(t) - 2t from t = 0: the curvature grows along the step, 1/4 <= rho <= 3/4."""
    theta = nn.Parameter(torch.zeros(1, dtype=DOUBLE))

    def closure(create_graph=False):
        theta.grad = None
        loss = (torch.exp(theta) - 2 * theta).sum()
        loss.backward(create_graph=create_graph)
        return loss
    damping = 0.01
    d = 1 / (1 + damping)  # g = -1, H = 1
    rho = (math.exp(d) - 2 * d - 1) / (-d + 0.5 * d * d * (1 + damping))
    assert 0.25 < rho < 0.75
    opt = NewtonCG([theta], lr=1.0, damping=damping, curvature="hessian")
    opt.step(closure)
    state = opt.state[theta]
    assert state["rho"] == pytest.approx(rho, rel=1e-9)
    assert state["damping"] == damping
    assert float(theta.detach()) == pytest.approx(d, rel=1e-12)


def test_newton_cg_warm_start_begins_from_the_scaled_previous_direction():
    model, a, target, closure, hessian = _least_squares(2)
    opt = NewtonCG(model.parameters(), lr=0.5, damping=0.1, max_cg_iters=1, cg_warm_start=0.5,
                   adapt_damping=False, model=model)
    opt.step(closure)
    first = opt.state[model.weight]["direction"].clone()
    before = model.weight.detach().reshape(-1).clone()
    products = opt.oracle_counts["hvp"]
    opt.step(closure)
    # one product, spent on A x0: no CG iteration is left, so the step is x0 = 0.5 d_prev
    torch.testing.assert_close(opt.state[model.weight]["direction"], 0.5 * first)
    torch.testing.assert_close(model.weight.detach().reshape(-1), before + 0.5 * 0.5 * first)
    assert opt.oracle_counts["hvp"] - products == 30


def test_newton_cg_warm_started_cg_solves_the_damped_system():
    model, a, target, closure, hessian = _least_squares(3)
    damping = 0.1
    opt = NewtonCG(model.parameters(), lr=0.5, damping=damping, max_cg_iters=6, cg_tol=1e-13,
                   cg_warm_start=0.9, adapt_damping=False, model=model)
    opt.step(closure)
    w = model.weight.detach().reshape(-1).clone()
    grad = a.T @ (a @ w - target) / 30
    expected = -torch.linalg.solve(hessian + damping * torch.eye(4, dtype=DOUBLE), grad)
    opt.step(closure)
    torch.testing.assert_close(opt.state[model.weight]["direction"], expected, rtol=1e-8, atol=1e-12)


def test_newton_cg_starts_cold_after_a_rejected_step():
    """A rejected step leaves no direction to warm-start from: the next CG starts at 0 (its
    first product is a CG iteration, not A x0 with x0 = 0) and moves."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(10, 3, dtype=DOUBLE), torch.randint(0, 2, (10,))
    closure = make_closure(model, x, y, {"grad": 0})
    opt = NewtonCG(model.parameters(), lr=50.0, damping=1e-3, max_cg_iters=1, cg_warm_start=0.5, model=model)
    before = [p.detach().clone() for p in model.parameters()]
    opt.step(closure)
    assert not opt.state[model.weight]["rho"] >= 0.25
    assert all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))
    opt.param_groups[0]["lr"] = 0.1
    opt.step(closure)
    assert not all(torch.equal(p.detach(), b) for p, b in zip(model.parameters(), before))


def _indefinite(q, c, start):
    theta = nn.Parameter(torch.tensor(start, dtype=DOUBLE))
    q, c = torch.tensor(q, dtype=DOUBLE), torch.tensor(c, dtype=DOUBLE)

    def closure(create_graph=False):
        theta.grad = None
        loss = 0.5 * theta @ q @ theta + c @ theta
        loss.backward(create_graph=create_graph)
        return loss
    return theta, q, c, closure


def test_newton_cg_negative_curvature_on_the_first_direction_takes_steepest_descent():
    theta, q, c, closure = _indefinite([[1.0, 0.0], [0.0, -2.0]], [0.1, 0.0], [0.0, 1.0])
    grad = (q @ theta + c).detach()
    assert float(grad @ q @ grad) < 0
    opt = NewtonCG([theta], lr=0.25, damping=0.0, max_cg_iters=5, curvature="hessian", adapt_damping=False)
    opt.step(closure)
    torch.testing.assert_close(theta.detach(), torch.tensor([0.0, 1.0], dtype=DOUBLE) - 0.25 * grad)


def test_newton_cg_negative_curvature_later_keeps_the_last_iterate():
    theta, q, c, closure = _indefinite([[2.0, 1.0], [1.0, -3.0]], [1.0, 0.0], [0.0, 0.0])
    grad = (q @ theta + c).detach()  # (1, 0): positive curvature along -g, negative after it
    assert float(grad @ q @ grad) > 0
    opt = NewtonCG([theta], lr=1.0, damping=0.0, max_cg_iters=5, curvature="hessian", adapt_damping=False)
    opt.step(closure)
    first_iterate = -(grad @ grad) / (grad @ q @ grad) * grad
    torch.testing.assert_close(theta.detach(), first_iterate)
    assert opt.oracle_counts["hvp"] == 2
