"""Noise-reduction family: estimator unbiasedness and variance, hand-computed steps (SVRG/SARAH
with momentum and decay, SAGA's table, Lookahead), averaging, growing batches, and every stacked
rule's model k of a K = 4 run against the same model alone."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.engine.config import RunConfig
from helpers.optimizers.averaging import AveragedSGD
from helpers.optimizers.saga import SAGA
from helpers.optimizers.sarah import SARAH
from helpers.optimizers.svrg import SVRG
from helpers.engine.train import train

N, D, C, B = 256, 8, 3, 16  # samples, features, classes, batch size -> 16 fixed batches
WD = 1e-1


pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=gen, dtype=torch.float64)
    true = torch.randn(D, C, generator=gen, dtype=torch.float64)
    y = (x @ true + 0.5 * torch.randn(N, C, generator=gen, dtype=torch.float64)).argmax(1)
    return x, y


def _model(seed=1):
    torch.manual_seed(seed)
    return nn.Linear(D, C).double()


def _closure(model, x, y):
    def closure(create_graph=False):
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss
    return closure


def _batches(x, y):
    return [(x[i:i + B], y[i:i + B]) for i in range(0, N, B)]


def _flat_grad(model, x, y):
    _closure(model, x, y)()
    return torch.cat([p.grad.reshape(-1).clone() for p in model.parameters()])


def _flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def _set(model, flat):
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat, model.parameters())


def _optimum(x, y):
    """Minimiser of the mean cross-entropy + (WD/2)||w||^2, by L-BFGS to machine precision."""
    model = _model()
    opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12,
                            tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y) + WD / 2 * sum(p.pow(2).sum() for p in model.parameters())
        loss.backward()
        return loss
    opt.step(closure)
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach()


def _estimates(opt, model, x, y):
    return torch.stack([_flat(opt.estimate(_closure(model, xb, yb))[1]) for xb, yb in _batches(x, y)])


def test_svrg_estimator_is_exactly_unbiased_and_step_counts_two_batches():
    x, y = _problem()
    model = _model()
    opt = SVRG(model.parameters(), lr=0.1)
    opt.on_epoch_start(_closure(model, x, y))
    w = torch.nn.utils.parameters_to_vector(model.parameters()).detach()
    _set(model, w + 0.3 * torch.randn_like(w))
    v = _estimates(opt, model, x, y)
    assert torch.allclose(v.mean(0), _flat_grad(model, x, y), atol=1e-12)
    assert (v - v.mean(0)).norm() > 1e-3  # the estimates do differ from batch to batch
    calls = []
    closure = _closure(model, *_batches(x, y)[0])
    opt.step(lambda create_graph=False: calls.append(1) or closure())
    assert len(calls) == 2


def test_sarah_estimator_is_unbiased_after_a_restart_and_recursive_after():
    x, y = _problem()
    model = _model()
    opt = SARAH(model.parameters(), lr=0.5)
    opt.on_epoch_start(_closure(model, x, y))
    g0 = _flat_grad(model, x, y)
    w0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    opt.step(None)  # the full-gradient step w1 = w0 - lr v0 uses no mini-batch
    w1 = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    assert torch.allclose(w1, w0 - 0.5 * g0, atol=1e-12)
    v = _estimates(opt, model, x, y)
    g1 = _flat_grad(model, x, y)
    assert torch.allclose(v.mean(0), g1, atol=1e-12)
    xb, yb = _batches(x, y)[3]
    opt.step(_closure(model, xb, yb))
    v1 = v[3]
    g2 = _flat_grad(model, x, y)
    v = _estimates(opt, model, x, y)
    assert torch.allclose(v.mean(0), g2 - g1 + v1, atol=1e-12)


def _loss_and_grad(w, x, y):
    """Mean cross-entropy and its gradient at the flat weights w (a fresh model)."""
    model = _model()
    _set(model, w)
    loss = _closure(model, x, y)()
    return loss.item(), _flat([p.grad for p in model.parameters()])


def _w(model):
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


LR, MOMENTUM = 0.3, 0.8


def test_svrg_with_momentum_and_decay_matches_a_hand_computed_run():
    """v_t = g_B(w_t) - g_B(w~) + mu + wd w_t; buf = momentum buf + v_t (buf_0 = v_0);
    w <- w - lr buf; snapshot w~ = w_t every 3 steps (buffer kept); each step returns the batch
    loss at w_t."""
    x, y = _problem()
    batches = _batches(x, y)
    model = _model()
    opt = SVRG(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD, snapshot_every=3)
    opt.on_epoch_start(_closure(model, x, y))
    w = _w(model)
    buf = None
    for t in range(7):
        if t % 3 == 0:
            snapshot, mu = w.clone(), _loss_and_grad(w, x, y)[1]
        xb, yb = batches[t]
        loss, g = _loss_and_grad(w, xb, yb)
        v = g - _loss_and_grad(snapshot, xb, yb)[1] + mu + WD * w
        buf = v if buf is None else MOMENTUM * buf + v
        w = w - LR * buf
        reported = opt.step(_closure(model, xb, yb))
        assert reported.item() == pytest.approx(loss, rel=1e-12)
        assert torch.allclose(_w(model), w, rtol=1e-10, atol=1e-12), t
        assert torch.allclose(_flat([opt.state[p]["momentum_buffer"] for p in model.parameters()]), buf,
                              rtol=1e-10, atol=1e-12)
        assert torch.allclose(_flat([opt.state[p]["snapshot"] for p in model.parameters()]), snapshot)


def test_sarah_with_momentum_and_decay_matches_a_hand_computed_run():
    """Restart every 3 steps: v_0 = grad f(w_0) (reported loss: the full-data loss at w_0);
    then v_t = g_B(w_t) - g_B(w_{t-1}) + v_{t-1} (reported loss: the batch loss at w_t);
    d = v_t + wd w_t; buf = momentum buf + d (buf_0 = d_0, kept across restarts); w <- w - lr buf."""
    x, y = _problem()
    batches = _batches(x, y)
    model = _model()
    opt = SARAH(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD, snapshot_every=3)
    opt.on_epoch_start(_closure(model, x, y))
    w, previous, v, buf = _w(model), None, None, None
    for t in range(7):
        xb, yb = batches[t]
        if t % 3 == 0:
            loss, v = _loss_and_grad(w, x, y)
        else:
            loss, g = _loss_and_grad(w, xb, yb)
            v = g - _loss_and_grad(previous, xb, yb)[1] + v
        d = v + WD * w
        buf = d if buf is None else MOMENTUM * buf + d
        previous, w = w, w - LR * buf
        reported = opt.step(_closure(model, xb, yb))
        assert reported.item() == pytest.approx(loss, rel=1e-12), t
        assert torch.allclose(_w(model), w, rtol=1e-10, atol=1e-12), t
        state = [opt.state[p] for p in model.parameters()]
        assert torch.allclose(_flat([s["v"] for s in state]), v, rtol=1e-10, atol=1e-12)
        assert torch.allclose(_flat([s["previous"] for s in state]), previous)
        assert torch.allclose(_flat([s["momentum_buffer"] for s in state]), buf, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [SVRG, SARAH])
def test_estimators_stay_unbiased_when_the_projection_masks_state(cls):
    """The sparse scenario zeroes per-entry state where it prunes; the estimator's anchor (SVRG's
    snapshot and mu, SARAH's v and previous point) must stay whole, so E_B[v] is still the full
    gradient (SARAH: right after its full-gradient step)."""
    from helpers.constraints.sparsity import mask_state_
    x, y = _problem()
    model = _model()
    opt = cls(model.parameters(), lr=0.3, momentum=0.5)
    opt.on_epoch_start(_closure(model, x, y))
    opt.step(_closure(model, *_batches(x, y)[0]))
    mask = torch.rand(model.weight.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    with torch.no_grad():
        model.weight.masked_fill_(~mask, 0)
    mask_state_(opt, [model.weight], [mask])
    assert float(opt.state[model.weight]["momentum_buffer"][~mask].abs().sum()) == 0
    v = _estimates(opt, model, x, y)
    assert torch.allclose(v.mean(0), _flat_grad(model, x, y), atol=1e-12)


@pytest.mark.parametrize("cls", [SVRG, SARAH])
def test_variance_is_far_below_sgd_near_the_optimum(cls):
    x, y = _problem()
    w_star = _optimum(x, y)
    model = _model()
    gen = torch.Generator().manual_seed(5)
    _set(model, w_star + 1e-2 * torch.randn(w_star.shape, generator=gen, dtype=torch.float64))
    opt = cls(model.parameters(), lr=0.05)
    opt.on_epoch_start(_closure(model, x, y))
    if cls is SARAH:
        opt.step(None)
    else:
        _set(model, w_star + 1e-2 * torch.randn(w_star.shape, generator=gen, dtype=torch.float64))
    full = _flat_grad(model, x, y)
    sgd = torch.stack([_flat_grad(model, xb, yb) for xb, yb in _batches(x, y)])
    var_sgd = (sgd - full).pow(2).sum(1).mean()
    var_vr = (_estimates(opt, model, x, y) - full).pow(2).sum(1).mean()
    assert var_vr < 1e-3 * var_sgd


def _epochs(opt, model, x, y, epochs, hooks=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    batches = _batches(x, y)
    for _ in range(epochs):
        if hooks and hasattr(opt, "on_epoch_start"):
            opt.on_epoch_start(_closure(model, x, y))
        for j in torch.randperm(len(batches), generator=gen).tolist():
            if hasattr(opt, "on_batch"):
                opt.on_batch(j, len(batches))
            opt.step(_closure(model, *batches[j]))


@pytest.mark.parametrize("cls", [SVRG, SARAH, SAGA])
def test_variance_reduction_converges_linearly_at_a_constant_step(cls):
    x, y = _problem()
    w_star = _optimum(x, y)
    model = _model()
    _epochs(cls(model.parameters(), lr=0.5, weight_decay=WD), model, x, y, 30)
    error = (torch.nn.utils.parameters_to_vector(model.parameters()) - w_star).norm()
    sgd_model = _model()
    _epochs(torch.optim.SGD(sgd_model.parameters(), lr=0.5, weight_decay=WD), sgd_model, x, y, 30)
    sgd_error = (torch.nn.utils.parameters_to_vector(sgd_model.parameters()) - w_star).norm()
    assert error < 1e-5 and sgd_error > 1e-2


def test_svrg_snapshot_every_m_steps_reevaluates_the_full_gradient():
    x, y = _problem()
    model = _model()
    opt = SVRG(model.parameters(), lr=0.1, snapshot_every=5)
    full_calls = []
    full = _closure(model, x, y)
    opt.on_epoch_start(lambda create_graph=False: full_calls.append(1) or full())
    for xb, yb in _batches(x, y):
        opt.step(_closure(model, xb, yb))
    assert len(full_calls) == 1 + (len(_batches(x, y)) - 1) // 5
    with pytest.raises(RuntimeError, match="snapshot"):
        SVRG(_model().parameters(), lr=0.1).step(_closure(model, x, y))


def _sized(closure, xb):
    closure.batch_size = len(xb)  # as the engine's closures carry it
    return closure


def test_saga_table_semantics():
    x, y = _problem()
    model = _model()
    lr = 0.1
    opt = SAGA(model.parameters(), lr=lr)
    batches = _batches(x, y)
    with pytest.raises(RuntimeError, match="on_batch"):
        opt.step(_sized(_closure(model, *batches[0]), batches[0][0]))
    order = [5, 2, 9, 0, 1, 3, 4, 6, 7, 8, 10, 11, 12, 13, 14, 15]
    visited = {}
    for k, j in enumerate(order):
        w = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        g = _flat_grad(model, *batches[j])
        opt.on_batch(j, len(batches))
        opt.step(_sized(_closure(model, *batches[j]), batches[j][0]))
        step = (w - torch.nn.utils.parameters_to_vector(model.parameters())).detach() / lr
        if k < 3:  # first visits are plain SGD steps
            assert torch.allclose(step, g, atol=1e-12)
        visited[j] = g
    table = torch.stack([_flat([s["table"][j] for s in opt.state.values()]) for j in range(16)])
    assert torch.allclose(table, torch.stack([visited[j] for j in range(16)]), atol=1e-12)
    assert torch.allclose(_flat([s["table_sum"] for s in opt.state.values()]), B * table.sum(0), atol=1e-12)
    j = 9
    g = _flat_grad(model, *batches[j])
    expected = g - table[j] + table.mean(0)
    w = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    opt.on_batch(j, len(batches))
    opt.step(_sized(_closure(model, *batches[j]), batches[j][0]))
    step = (w - torch.nn.utils.parameters_to_vector(model.parameters())).detach() / lr
    assert torch.allclose(step, expected, atol=1e-12)
    assert opt.table_bytes == 16 * (D * C + C) * 8
    with pytest.raises(ValueError, match="fixed"):
        opt.on_batch(0, 17)


def test_saga_step_with_unequal_batches_by_hand():
    """Six batches of 40 and one of 16 (N = 256, m = 7), all visited once; then on batch j:
    v = (m n_j / N)(g_j(w) - table[j]) + sum_k (n_k / N) table[k], for the short and a full batch."""
    x, y = _problem()
    model = _model()
    lr = 0.1
    opt = SAGA(model.parameters(), lr=lr)
    bounds = list(range(0, N, 40)) + [N]
    parts = [(x[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:])]
    sizes = torch.tensor([len(xb) for xb, _ in parts], dtype=torch.float64)
    table = {}
    for j in [3, 6, 0, 5, 1, 4, 2]:
        table[j] = _flat_grad(model, *parts[j])
        opt.on_batch(j, len(parts))
        opt.step(_sized(_closure(model, *parts[j]), parts[j][0]))
    for j in (6, 2):
        mean = sum(sizes[k] / N * table[k] for k in range(len(parts)))
        g = _flat_grad(model, *parts[j])
        expected = len(parts) * sizes[j] / N * (g - table[j]) + mean
        w = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        opt.on_batch(j, len(parts))
        opt.step(_sized(_closure(model, *parts[j]), parts[j][0]))
        step = (w - torch.nn.utils.parameters_to_vector(model.parameters())).detach() / lr
        assert torch.allclose(step, expected, atol=1e-12), j
        table[j] = g


def test_saga_table_sum_stays_the_tables_sum_under_state_masking():
    """The sparse projection zeroes per-entry optimizer state where it prunes; SAGA's running
    sum must stay sum_j n_j table[j] (the table itself is not per entry), else the mean term is
    biased for every weight that re-enters the support."""
    from helpers.constraints.sparsity import mask_state_
    x, y = _problem()
    model = _model()
    opt = SAGA(model.parameters(), lr=0.1)
    batches = _batches(x, y)
    for j in [3, 1, 4, 1, 5]:
        opt.on_batch(j, len(batches))
        closure = _closure(model, *batches[j])
        closure.batch_size = B
        opt.step(closure)
    mask = torch.ones_like(model.weight, dtype=torch.bool)
    mask[0] = False
    mask_state_(opt, [model.weight], [mask])
    state = opt.state[model.weight]
    assert torch.allclose(state["table_sum"], B * state["table"].sum(0), atol=1e-12)


@pytest.mark.parametrize("sized", [True, False])
def test_saga_weights_unequal_batches_by_size(sized):
    """With a short last batch SAGA reaches w* only when each entry is weighted by its batch size
    (closure.batch_size); counted as equal batches it converges to a biased point."""
    x, y = _problem()
    w_star = _optimum(x, y)
    model = _model()
    opt = SAGA(model.parameters(), lr=0.5, weight_decay=WD)
    bounds = list(range(0, N, 40)) + [N]  # six batches of 40 and one of 16
    gen = torch.Generator().manual_seed(0)
    for _ in range(80):
        for j in torch.randperm(len(bounds) - 1, generator=gen).tolist():
            closure = _closure(model, x[bounds[j]:bounds[j + 1]], y[bounds[j]:bounds[j + 1]])
            if sized:
                closure.batch_size = bounds[j + 1] - bounds[j]
            opt.on_batch(j, len(bounds) - 1)
            opt.step(closure)
    error = (torch.nn.utils.parameters_to_vector(model.parameters()) - w_star).norm()
    assert (error < 1e-6) if sized else (error > 1e-3)


@pytest.mark.parametrize("average", ["polyak", "ema", "swa"])
def test_averaging_matches_a_manual_average_and_restores_the_weights(average):
    x, y = _problem()
    model = _model()
    opt = AveragedSGD(model.parameters(), lr=0.2, momentum=0.9, average=average, start_epoch=1.0,
                      ema_decay=0.9, swa_every=3)
    batches = _batches(x, y)
    iterates = []
    for epoch in range(2):
        opt.on_epoch_start(None)
        for j in range(len(batches)):
            opt.on_batch(j, len(batches))
            opt.step(_closure(model, *batches[j]))
            iterates.append(torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone())
    tail = iterates[len(batches) - 1:]  # progress >= 1 epoch: from the last iterate of epoch 0
    if average == "polyak":
        expected = torch.stack(tail).mean(0)
    elif average == "swa":
        expected = torch.stack(tail[::3]).mean(0)
    else:
        expected = tail[0]
        for w in tail[1:]:
            expected = 0.9 * expected + 0.1 * w
    live = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    with opt.evaluation_weights():
        inside = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    assert torch.allclose(inside, expected, atol=1e-12)
    assert not torch.allclose(inside, live)
    assert torch.equal(torch.nn.utils.parameters_to_vector(model.parameters()), live)


def test_averaged_weights_keep_the_live_support_and_start_late():
    model = _model()
    opt = AveragedSGD(model.parameters(), lr=0.1, average="polyak", start_epoch=3.0)
    x, y = _problem()
    opt.on_epoch_start(None)
    opt.on_batch(0, 1)
    opt.step(_closure(model, x, y))
    live = model.weight.detach().clone()
    with opt.evaluation_weights():  # nothing averaged yet: the live weights
        assert torch.equal(model.weight, live)
    opt = AveragedSGD(model.parameters(), lr=0.1, average="polyak")
    for _ in range(3):
        opt.step(_closure(model, x, y))
    with torch.no_grad():
        model.weight[0].zero_()  # a projection zeroed this row after the last step
    with opt.evaluation_weights():
        assert (model.weight[0] == 0).all() and (model.weight[1] != 0).all()


@pytest.mark.parametrize("kwargs", [dict(lr=0), dict(lr=0.1, momentum=1.0), dict(lr=0.1, weight_decay=-1),
                                    dict(lr=0.1, snapshot_every=-2)])
def test_bad_arguments_are_rejected(kwargs):
    with pytest.raises(ValueError, match="Invalid"):
        SVRG(_model().parameters(), **kwargs)
    with pytest.raises(ValueError, match="Invalid"):
        SARAH(_model().parameters(), **kwargs)


def test_bad_averaging_arguments_are_rejected():
    for kwargs in (dict(average="median"), dict(ema_decay=1.0), dict(swa_every=0), dict(start_epoch=-1)):
        with pytest.raises(ValueError, match="Invalid"):
            AveragedSGD(_model().parameters(), **kwargs)


def test_engine_counts_snapshots_and_growing_batches(small_data):
    data = type(small_data)(train=small_data.train.subset(torch.arange(600)),
                            test=small_data.test.subset(torch.arange(500)))
    n = len(data.train)
    common = dict(epochs=2, train_fraction=0.1)
    svrg = train(RunConfig(optimizer="svrg", **common), data, progress=False).records
    assert [r["grad_evals"] for r in svrg] == [3 * n, 6 * n]  # snapshot + two batch gradients per step
    grow = train(RunConfig(optimizer="sgd_growing_batch", **common), data, progress=False).records
    assert [r["grad_evals"] for r in grow] == [n, 2 * n]
    assert [r["step"] for r in grow] == [math.ceil(n / 32), math.ceil(n / 32) + math.ceil(n / 48)]
    saga = train(RunConfig(optimizer="saga", **common), data, progress=False)
    assert saga.records[-1]["grad_evals"] == 2 * n and not saga.diverged


def test_engine_spends_no_batch_on_sarahs_full_gradient_step(small_data):
    """The step right after a snapshot reads no batch (``uses_gradient`` is False)."""
    data = type(small_data)(train=small_data.train.subset(torch.arange(600)),
                            test=small_data.test.subset(torch.arange(500)))
    n = len(data.train)
    sarah = train(RunConfig(optimizer="sarah", epochs=2, train_fraction=0.1), data, progress=False).records
    assert [r["grad_evals"] for r in sarah] == [3 * n - 2 * 64, 6 * n - 4 * 64]


def test_variance_table_is_exact_at_snapshots_and_tidy(small_data):
    from helpers.evidence.variance import estimator_variance, summary
    frame = estimator_variance(small_data.train, "sgd", {"lr": 0.05}, n_samples=128, batch_size=32,
                               epochs=2, larger_batches=(64,))
    wide = frame.pivot_table(index="step", columns="estimator", values="mse", dropna=False)
    assert sorted(wide.columns) == ["momentum", "saga", "sarah", "sgd", "sgd_b64", "svrg"]
    assert list(wide.index) == list(range(8))
    assert (wide.loc[[0, 4], ["svrg", "sarah"]] == 0).all().all()  # snapshots at epoch starts
    assert (wide.loc[[1, 2, 3, 5, 6, 7], ["svrg", "sarah"]] > 0).all().all()
    assert wide.loc[:3, "saga"].isna().all() and wide.loc[4:, "saga"].notna().all()
    assert torch.allclose(torch.tensor(wide["sgd_b64"].values),
                          torch.tensor(wide["sgd"].values * 32 * 64 / (64 * 96)))
    assert wide.loc[0, "momentum"] == pytest.approx(wide.loc[0, "sgd"])
    assert (wide["sgd"] > 0).all() and summary(frame).index[-1] == "sgd"


# Stacked rules: model k of a K = 4 run against the same configuration alone (K = 1).

SN, SD, SC, SB = 48, 4, 3, 8  # samples, features, classes, batch size -> 6 fixed batches
N_WEIGHTS = SD * SC  # the "constrained" block that the sparse projection acts on
STACKED_TOL = dict(rtol=1e-6, atol=1e-9)


def _stacked_problem():
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(SN, SD, generator=gen, dtype=torch.float64)
    y = (x @ torch.randn(SD, SC, generator=gen, dtype=torch.float64)).argmax(1)
    return x, y


def _row_gradient(w, x, y):
    w = w.detach().clone().requires_grad_(True)
    logits = x @ w[:N_WEIGHTS].view(SC, SD).T + w[N_WEIGHTS:]
    torch.nn.functional.cross_entropy(logits, y).backward()
    return w.grad


class _Oracle:
    """The engine services over K rows: each row's own batch (``index[k]``) and the full data."""

    def __init__(self, x, y):
        self.x, self.y = x, y
        self.index = self.batch_ids = None
        self.n_batches, self.batch_size = SN // SB, SB
        self.calls = 0

    def full_gradient(self, w):
        self.calls += SN
        return torch.stack([_row_gradient(row, self.x, self.y) for row in w])

    def batch_gradient(self, w):
        self.calls += SB
        return torch.stack([_row_gradient(row, self.x[i], self.y[i]) for row, i in zip(w, self.index)])


def _project(p, masked_state):
    """Keep the 60% largest |w| of each row's weight block; zero pruned state there too."""
    block = p[:, :N_WEIGHTS]
    keep = round(0.6 * N_WEIGHTS)
    drop = block.abs().argsort(dim=1, descending=True)[:, keep:]
    mask = torch.ones_like(block, dtype=torch.bool).scatter_(1, drop, False)
    for t in [p, *masked_state]:
        t[:, :N_WEIGHTS].masked_fill_(~mask, 0)


def _stacked_run(rule_class, hparams, orders, scenario, epochs=2):
    """Run the rule on len(hparams) rows; yield copies of (step, state, p, evaluated) after every step."""
    x, y = _stacked_problem()
    gen = torch.Generator().manual_seed(4)
    start = 0.3 * torch.randn(1, SD * SC + SC, generator=gen, dtype=torch.float64)
    p = start.repeat(len(hparams), 1)
    rule = rule_class(hparams, p)
    oracle = _Oracle(x, y)
    if scenario == "sparse60":
        _project(p, rule.masked_state())
    rule.start(p)
    step = 0
    batches = torch.arange(SN).view(-1, SB)
    for epoch in range(epochs):
        rule.on_epoch_start(p, oracle)
        for position in range(SN // SB):
            ids = [order[epoch][position] for order in orders]
            oracle.batch_ids, oracle.index = ids, batches[ids]
            g = torch.stack([_row_gradient(row, x[i], y[i]) for row, i in zip(p, oracle.index)])
            lr = torch.tensor([[h["lr"] * (1 - 0.02 * step)] for h in hparams], dtype=torch.float64)
            rule.step(p, g, lr, oracle)
            if scenario == "sparse60":
                _project(p, rule.masked_state())
            step += 1
            evaluated = rule.evaluation_weights(p).clone()
            yield step, {name: t.clone() for name, t in _state_of(rule).items()}, p.clone(), evaluated


def _state_of(rule):
    state = {name: t for name, t in rule.state.items()}
    state.update({f"counter:{name}": c for name, c in rule.counters.items()})
    if getattr(rule, "table", None) is not None:
        state["saga_table"] = rule.table
    return state


from helpers.optimizers.averaging import AveragingRule  # noqa: E402
from helpers.optimizers.lookahead import LookaheadAdamRule, LookaheadSGDRule  # noqa: E402
from helpers.optimizers.rules import SGDRule  # noqa: E402
from helpers.optimizers.saga import SAGARule  # noqa: E402
from helpers.optimizers.sarah import SARAHRule  # noqa: E402
from helpers.optimizers.svrg import SVRGRule  # noqa: E402

STACKED = {
    "svrg": (SVRGRule, [dict(lr=0.3), dict(lr=0.2, momentum=0.9), dict(lr=0.5, momentum=0.5),
                        dict(lr=0.1)]),
    "svrg_every5": (SVRGRule, [dict(lr=0.3, snapshot_every=5), dict(lr=0.2, momentum=0.9, snapshot_every=5),
                               dict(lr=0.5, momentum=0.5, snapshot_every=5), dict(lr=0.1, snapshot_every=5)]),
    "sarah": (SARAHRule, [dict(lr=0.3), dict(lr=0.2, momentum=0.9), dict(lr=0.5, momentum=0.5),
                          dict(lr=0.1)]),
    "sarah_every5": (SARAHRule, [dict(lr=0.3, snapshot_every=5), dict(lr=0.2, momentum=0.9, snapshot_every=5),
                                 dict(lr=0.5, momentum=0.5, snapshot_every=5), dict(lr=0.1, snapshot_every=5)]),
    "saga": (SAGARule, [dict(lr=0.3), dict(lr=0.2), dict(lr=0.5), dict(lr=0.1)]),
    "averaging": (AveragingRule, [dict(lr=0.2, average="polyak", start_epoch=0.5),
                                  dict(lr=0.1, momentum=0.5, average="ema", ema_decay=0.7),
                                  dict(lr=0.3, average="swa", swa_every=2, start_epoch=0.25),
                                  dict(lr=0.05, momentum=0.0, average="swa", swa_every=3, start_epoch=1.0)]),
    "lookahead_sgd": (LookaheadSGDRule, [dict(lr=0.2, k=2, alpha=0.5), dict(lr=0.1, momentum=0.5, k=3, alpha=0.8),
                                         dict(lr=0.3, k=5, alpha=0.2), dict(lr=0.05, k=1, alpha=1.0)]),
    "lookahead_adam": (LookaheadAdamRule, [dict(lr=0.05, k=2), dict(lr=0.02, betas=(0.8, 0.99), k=3, alpha=0.8),
                                           dict(lr=0.1, k=4, alpha=0.3), dict(lr=0.01, eps=1e-3, k=6)]),
    "growing_batch": (SGDRule, [dict(lr=0.3), dict(lr=0.2, momentum=0.9), dict(lr=0.5), dict(lr=0.1)]),
}
L2 = [1e-2, 5e-2, 0.1, 2e-2]


def _orders(k, epochs=2):
    gen = torch.Generator().manual_seed(5)
    return [[torch.randperm(SN // SB, generator=gen).tolist() for _ in range(epochs)] for _ in range(k)]


@pytest.mark.parametrize("scenario", ["standard", "l2", "sparse60"])
@pytest.mark.parametrize("method", sorted(STACKED))
def test_stacked_row_equals_the_model_run_alone(method, scenario):
    """Every step (12) of a K = 4 run with different hyperparameters (and batch orders) per model:
    parameters, evaluated weights and every state tensor and counter of row k equal the K = 1
    run of model k."""
    rule_class, hparams = STACKED[method]
    if scenario == "l2":
        hparams = [dict(h, weight_decay=wd) for h, wd in zip(hparams, L2)]
    orders = _orders(len(hparams))
    alone = [list(_stacked_run(rule_class, [h], [order], scenario)) for h, order in zip(hparams, orders)]
    steps, moved_apart = 0, False
    for step, state, p, evaluated in _stacked_run(rule_class, hparams, orders, scenario):
        for k in range(len(hparams)):
            _, single_state, p1, evaluated1 = alone[k][step - 1]
            torch.testing.assert_close(p[k], p1[0], **STACKED_TOL, msg=f"model {k} step {step}")
            torch.testing.assert_close(evaluated[k], evaluated1[0], **STACKED_TOL)
            assert set(single_state) <= set(state)
            for name, tensor in state.items():
                if name not in single_state:  # a model without momentum keeps no buffer alone
                    assert name == "momentum_buffer"
                    assert not {**rule_class.hyperparameters, **hparams[k]}["momentum"]
                    continue
                torch.testing.assert_close(tensor[k], single_state[name][0], **STACKED_TOL,
                                           msg=f"{name} of model {k} at step {step}")
        steps += 1
        moved_apart = moved_apart or not torch.equal(evaluated, p)
    assert steps >= 10
    assert moved_apart == (method == "averaging" or method.startswith("lookahead"))


def test_lookahead_rule_follows_the_paper_by_hand():
    """Zhang et al. 2019: theta takes k SGD steps from phi; then phi <- phi + alpha (theta - phi),
    theta <- phi. Three models with their own lr, k and alpha."""
    from helpers.optimizers.lookahead import lookahead_rule
    from helpers.optimizers.stacked import lr_column
    hparams = [dict(lr=0.1, k=2, alpha=0.5), dict(lr=0.05, k=3, alpha=0.8), dict(lr=0.2, k=1, alpha=0.3)]
    gen = torch.Generator().manual_seed(6)
    scale = torch.rand(3, 5, generator=gen, dtype=torch.float64) + 0.5
    p = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    rule = lookahead_rule(SGDRule)(hparams, p)
    rule.start(p)
    theta, phi = p.clone(), p.clone()
    for t in range(1, 10):
        g = scale * p
        rule.step(p, g, lr_column([h["lr"] for h in hparams], p))
        for i, h in enumerate(hparams):
            theta[i] = theta[i] - h["lr"] * scale[i] * theta[i]
            if t % h["k"] == 0:
                phi[i] = phi[i] + h["alpha"] * (theta[i] - phi[i])
                theta[i] = phi[i]
        torch.testing.assert_close(p, theta, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(rule.evaluation_weights(p), phi, rtol=1e-12, atol=1e-14)
