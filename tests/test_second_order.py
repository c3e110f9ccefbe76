"""Second-order optimizers: their curvature pieces against explicit computations.

Newton-CG's products against torch.autograd.functional's Hessian and Jacobian; K-FAC's
factors against the exact Fisher block of a one-layer model; Shampoo's roots and first step;
AdaHessian's Hutchinson estimate against the known diagonal of a quadratic; bad arguments;
every second-order member on LeNet-5 with the sparsity projection after each step.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from helpers.problem.model import LeNet5, density
from helpers.optimizers import build_optimizer, names
from helpers.optimizers.adahessian import AdaHessian
from helpers.optimizers.kfac import KFAC
from helpers.optimizers.newton_cg import NewtonCG
from helpers.optimizers.shampoo import Shampoo
from helpers.constraints.sparsity import SparsityHook
from helpers.engine.train import make_closure

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")


def _tiny(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    x = torch.randn(7, 3, dtype=torch.float64)
    y = torch.randint(0, 3, (7,))
    return model, x, y


def _as_function(model, loss_of):
    """theta (flat) -> loss_of(model output), for torch.autograd.functional."""
    def f(theta):
        params, start = {}, 0
        for name, p in model.named_parameters():
            params[name] = theta[start:start + p.numel()].view_as(p)
            start += p.numel()
        return loss_of(params)
    return f


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_newton_cg_hessian_vector_product_matches_explicit_hessian():
    model, x, y = _tiny()
    wd = 0.1
    opt = NewtonCG(model.parameters(), curvature="hessian", weight_decay=wd)
    theta = _flat(model)
    hessian = torch.autograd.functional.hessian(_as_function(
        model, lambda ps: F.cross_entropy(functional_call(model, ps, (x,)), y)), theta)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward(create_graph=True)
    grads = [p.grad for p in model.parameters()]
    for seed in range(3):
        v = torch.randn(theta.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
        torch.testing.assert_close(opt.hessian_vector_product(grads, v),
                                   hessian @ v + wd * v, rtol=1e-10, atol=1e-12)
    assert torch.linalg.eigvalsh(hessian).min() < 0  # the tiny tanh net's Hessian is indefinite


def test_newton_cg_gauss_newton_product_matches_explicit_jacobians():
    model, x, y = _tiny(1)
    opt = NewtonCG(model.parameters(), model=model, max_cg_iters=1, adapt_damping=False)
    theta = _flat(model)
    jac = torch.autograd.functional.jacobian(_as_function(
        model, lambda ps: functional_call(model, ps, (x,)).reshape(-1)), theta)
    z = model(x).detach()
    h_out = torch.autograd.functional.hessian(
        lambda out: F.cross_entropy(out.view_as(z), y), z.reshape(-1))
    ggn = jac.T @ h_out @ jac
    assert torch.linalg.eigvalsh(ggn).min() > -1e-12  # positive semidefinite
    opt._probe.keep_output = True
    model.zero_grad()
    F.cross_entropy(model(x), y).backward(create_graph=True)
    opt._probe.keep_output = False
    output, output_grad = opt._probe.output, opt._probe.output_grad
    u = torch.zeros_like(output, requires_grad=True)
    jtu = torch.autograd.grad(output, list(model.parameters()), grad_outputs=u, create_graph=True)
    v = torch.randn(theta.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(opt.gauss_newton_product(jtu, u, output, output_grad, v), ggn @ v,
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("curvature", ["hessian", "gauss_newton"])
def test_newton_cg_step_is_the_damped_newton_step_and_counts_products(curvature):
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()  # convex: Gauss-Newton = Hessian
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,))
    lr, damping, wd = 0.7, 0.3, 0.05
    theta = _flat(model)
    f = _as_function(model, lambda ps: F.cross_entropy(functional_call(model, ps, (x,)), y))
    hessian = torch.autograd.functional.hessian(f, theta) + wd * torch.eye(len(theta), dtype=torch.float64)
    grad = torch.autograd.functional.jacobian(f, theta) + wd * theta
    expected = theta - lr * torch.linalg.solve(hessian + damping * torch.eye(len(theta), dtype=torch.float64), grad)
    opt = NewtonCG(model.parameters(), lr=lr, damping=damping, max_cg_iters=len(theta),
                   cg_tol=1e-14, adapt_damping=False, curvature=curvature, weight_decay=wd, model=model)
    opt.step(make_closure(model, x, y, {"grad": 0}))
    torch.testing.assert_close(_flat(model), expected, rtol=1e-8, atol=1e-10)
    products = opt.oracle_counts["hvp"]
    assert products % len(y) == 0 and 1 <= products // len(y) <= len(theta)


def test_newton_cg_damping_adapts_and_rejects_a_step_that_raises_the_loss():
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    x, y = torch.randn(10, 3, dtype=torch.float64), torch.randint(0, 2, (10,))
    before = _flat(model)
    opt = NewtonCG(model.parameters(), lr=50.0, damping=1e-3, model=model)
    opt.step(make_closure(model, x, y, {"grad": 0}))
    state = opt.state[next(iter(model.parameters()))]
    assert not state["rho"] >= 0.25 and state["damping"] == pytest.approx(1.5e-3)
    torch.testing.assert_close(_flat(model), before)


def _fisher_block(model, x, y):
    """Exact (per-example gradient outer product) Fisher of [W, b] for each example, averaged."""
    rows = []
    for xi, yi in zip(x, y):
        model.zero_grad()
        F.cross_entropy(model(xi[None]), yi[None]).backward()
        g = torch.cat([model.weight.grad, model.bias.grad[:, None]], dim=1).reshape(-1)
        rows.append(torch.outer(g, g))
    return torch.stack(rows).mean(0)


def test_kfac_factors_equal_the_exact_fisher_of_one_example():
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x, y = torch.randn(1, 4, dtype=torch.float64), torch.tensor([2])
    fisher = _fisher_block(model, x, y)
    opt = KFAC(model, fisher="empirical", factor_interval=1)
    opt.step(make_closure(model, x, y, {"grad": 0}))
    state = opt.state[model.weight]
    a_bar = torch.cat([x[0], torch.ones(1, dtype=torch.float64)])
    torch.testing.assert_close(state["A"], torch.outer(a_bar, a_bar))
    # row-major vec of the (out x in+1) gradient: vec(g a^T) = g (x) a, so F = G (x) A
    torch.testing.assert_close(torch.kron(state["G"], state["A"]), fisher)


def test_kfac_factors_of_a_batch_of_one_input_are_exact():
    """Same input, several labels: A = a a^T exactly and A (x) G is the exact empirical Fisher."""
    torch.manual_seed(1)
    model = nn.Linear(4, 3).double()
    x = torch.randn(1, 4, dtype=torch.float64).repeat(6, 1)
    y = torch.tensor([0, 1, 2, 2, 1, 0])
    fisher = _fisher_block(model, x, y)
    opt = KFAC(model, fisher="empirical", factor_interval=1)
    opt.step(make_closure(model, x, y, {"grad": 0}))
    state = opt.state[model.weight]
    torch.testing.assert_close(torch.kron(state["G"], state["A"]), fisher)


def test_kfac_sampled_output_factor_estimates_the_true_fisher():
    """Targets drawn from the model: G -> E_y[g g^T] = diag(p) - p p^T (the true Fisher)."""
    torch.manual_seed(2)
    model = nn.Linear(4, 3).double()
    x = torch.randn(1, 4, dtype=torch.float64).repeat(20_000, 1)
    opt = KFAC(model, fisher="sampled", factor_interval=1)
    opt.step(make_closure(model, x, torch.zeros(len(x), dtype=torch.long), {"grad": 0}))
    with torch.no_grad():
        p = torch.softmax(model(x[:1]), dim=1)[0]
    torch.testing.assert_close(opt.state[model.weight]["G"], torch.diag(p) - torch.outer(p, p),
                               atol=0.02, rtol=0)
    assert opt.oracle_counts["grad"] == len(x)


def test_kfac_conv_factors_reduce_to_linear_ones_and_skip_evaluation():
    torch.manual_seed(3)
    conv, linear = nn.Conv2d(2, 3, 3).double(), nn.Linear(18, 3).double()
    with torch.no_grad():
        linear.weight.copy_(conv.weight.reshape(3, -1))
        linear.bias.copy_(conv.bias)
    x, y = torch.randn(5, 2, 3, 3, dtype=torch.float64), torch.randint(0, 3, (5,))
    conv_model = nn.Sequential(conv, nn.Flatten())
    opts = [KFAC(conv_model, fisher="empirical"), KFAC(linear, fisher="empirical")]
    opts[0].step(make_closure(conv_model, x, y, {"grad": 0}))
    opts[1].step(make_closure(linear, x.reshape(5, -1), y, {"grad": 0}))
    for key in ("A", "G"):
        torch.testing.assert_close(opts[0].state[conv.weight][key], opts[1].state[linear.weight][key])
    recorded = opts[0].state[conv.weight]["A"].clone()
    conv_model.eval()
    conv_model(torch.randn(5, 2, 3, 3, dtype=torch.float64))
    conv_model.train()
    conv_model(torch.randn(5, 2, 3, 3, dtype=torch.float64))
    torch.testing.assert_close(opts[0].state[conv.weight]["A"], recorded)


def test_kfac_update_is_the_damped_kronecker_inverse():
    torch.manual_seed(4)
    model = nn.Linear(4, 3).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    before = _flat(model)
    opt = KFAC(model, lr=1.0, momentum=0.0, damping=0.1, kl_clip=0.0, fisher="empirical",
               pi_correction=True)
    opt.step(make_closure(model, x, y, {"grad": 0}))
    state = opt.state[model.weight]
    a, g = state["A"], state["G"]
    pi = math.sqrt((torch.trace(a) / 5) / (torch.trace(g) / 3))
    damped = torch.kron(g + math.sqrt(0.1) / pi * torch.eye(3, dtype=torch.float64),
                        a + pi * math.sqrt(0.1) * torch.eye(5, dtype=torch.float64))
    grad = torch.cat([model.weight.grad, model.bias.grad[:, None]], dim=1).reshape(-1)
    step = torch.linalg.solve(damped, grad).reshape(3, 5)
    moved = (before - _flat(model))
    torch.testing.assert_close(moved[:12].reshape(3, 4), step[:, :4])
    torch.testing.assert_close(moved[12:], step[:, 4])


def test_shampoo_inverse_root_and_first_step_is_the_polar_factor():
    torch.manual_seed(5)
    matrix = torch.randn(6, 4, dtype=torch.float64)
    spd = matrix @ matrix.T + 0.5 * torch.eye(6, dtype=torch.float64)
    root = Shampoo.inverse_root(spd, 4, 1e-3)
    torch.testing.assert_close(torch.linalg.matrix_power(root, 4) @ (spd + 1e-3 * torch.eye(6, dtype=torch.float64)),
                               torch.eye(6, dtype=torch.float64))
    torch.testing.assert_close(root, root.T)
    weight = nn.Parameter(torch.zeros(5, 3, dtype=torch.float64))
    weight.grad = torch.randn(5, 3, dtype=torch.float64)
    Shampoo([weight], lr=0.1, momentum=0.0, epsilon=1e-12, graft="none").step()
    # (G G^T)^-1/4 G (G^T G)^-1/4 = U V^T: every singular value of the step is lr
    torch.testing.assert_close(torch.linalg.svdvals(weight.detach()),
                               torch.full((3,), 0.1, dtype=torch.float64))


def test_shampoo_sgd_grafting_takes_the_gradient_norm():
    torch.manual_seed(6)
    weight, bias = nn.Parameter(torch.zeros(4, 2, 3, 3)), nn.Parameter(torch.zeros(4))
    weight.grad, bias.grad = torch.randn(4, 2, 3, 3), torch.randn(4)
    Shampoo([weight, bias], lr=0.5, momentum=0.0, graft="sgd").step()
    for p in (weight, bias):
        assert float(p.detach().norm()) == pytest.approx(0.5 * float(p.grad.norm()), rel=1e-5)


def test_adahessian_hutchinson_is_unbiased_for_a_quadratic_diagonal():
    torch.manual_seed(7)
    m = torch.randn(4, 4, dtype=torch.float64)
    q = m @ m.T + torch.diag(torch.arange(1.0, 5.0, dtype=torch.float64))
    x = nn.Parameter(torch.randn(4, dtype=torch.float64))
    grad = torch.autograd.grad(0.5 * x @ q @ x, x, create_graph=True)[0]
    exact = [AdaHessian.hutchinson([x], [grad], [torch.tensor(z, dtype=torch.float64)])[0]
             for z in itertools.product([-1.0, 1.0], repeat=4)]
    torch.testing.assert_close(torch.stack(exact).mean(0), torch.diagonal(q))  # mean over all z
    draws = torch.stack([AdaHessian.hutchinson([x], [grad])[0] for _ in range(4000)])
    torch.testing.assert_close(draws.mean(0), torch.diagonal(q), atol=0.15 * float(q.abs().max()), rtol=0)
    kernel = torch.randn(3, 2, 5, 5)
    averaged = AdaHessian.spatial_average(kernel)
    torch.testing.assert_close(averaged, kernel.abs().mean((2, 3), keepdim=True).expand_as(kernel))


BAD_ARGUMENTS = [
    ("newton_cg", {"damping": -0.5}, "-0.5"), ("newton_cg", {"max_cg_iters": 0}, "0"),
    ("newton_cg", {"cg_tol": -0.25}, "-0.25"), ("newton_cg", {"curvature": "bogus"}, "bogus"),
    ("kfac", {"stat_decay": 1.5}, "1.5"), ("kfac", {"factor_interval": 0}, "factor_interval"),
    ("kfac", {"fisher": "bogus"}, "bogus"), ("kfac", {"damping": -0.5}, "-0.5"),
    ("shampoo", {"epsilon": -0.5}, "-0.5"), ("shampoo", {"graft": "bogus"}, "bogus"),
    ("shampoo", {"update_interval": 0}, "update_interval"), ("shampoo", {"beta2": 1.5}, "1.5"),
    ("adahessian", {"hessian_power": 2.5}, "2.5"), ("adahessian", {"betas": (0.9, 1.5)}, "1.5"),
    ("lbfgs_full", {"weight_decay": -0.5}, "-0.5"),
]


@pytest.mark.parametrize("name, hp, fragment", BAD_ARGUMENTS)
def test_bad_arguments_name_the_value(name, hp, fragment):
    with pytest.raises(ValueError, match=fragment.replace(".", r"\.")):
        build_optimizer(name, nn.Linear(3, 2), **hp)


QUICK = {"newton_cg": {"max_cg_iters": 3}, "lbfgs": {"max_iter": 2}, "lbfgs_full": {"max_iter": 2},
         "kfac": {"factor_interval": 1, "inverse_interval": 2}, "shampoo": {"update_interval": 2}}


@pytest.mark.parametrize("name", names("second_order"))
def test_second_order_members_train_lenet_under_the_sparsity_projection(name, small_data):
    torch.manual_seed(0)
    model = LeNet5()
    opt = build_optimizer(name, model, **QUICK.get(name, {}))
    hook = SparsityHook(model, opt, density=0.6, total_steps=3)
    hook.after_step(-1)
    start = _flat(model)
    counter = {"grad": 0}
    x, y = small_data.train.x[:64], small_data.train.y[:64]
    for step in range(3):
        loss = opt.step(make_closure(model, x, y, counter))
        hook.after_step(step)
        assert math.isfinite(float(loss.detach())) and density(model) <= 0.6
    assert all(bool(torch.isfinite(p).all()) for p in model.parameters())
    assert float((_flat(model) - start).norm()) > 0
    if name in ("newton_cg", "adahessian"):
        assert opt.oracle_counts["hvp"] > 0 and opt.oracle_counts["hvp"] % 64 == 0
