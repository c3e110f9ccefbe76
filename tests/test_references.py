"""Our optimizers against independent implementations, step by step in float64.

- Schedule-free SGD / AdamW against the authors' package ``schedulefree`` (Defazio et al. 2024):
  the training point y (the model's parameters) and the evaluation point x after every step.
- Polyak / EMA / SWA averages against ``torch.optim.swa_utils.AveragedModel`` (default uniform
  average; ``get_ema_avg_fn``), and the underlying SGD step against ``torch.optim.SGD``.

The registry's classes are built through ``build_optimizer``, so the tests follow any change of
implementation behind the names.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim import swa_utils

from helpers.optimizers import build_optimizer

schedulefree = pytest.importorskip("schedulefree")

N, D, C, B = 64, 5, 3, 16
STEPS = 10
TOL = dict(rtol=1e-9, atol=1e-12)


pytestmark = pytest.mark.usefixtures("one_thread")


def _problem(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D, generator=gen, dtype=torch.float64)
    y = (x @ torch.randn(D, C, generator=gen, dtype=torch.float64)
         + 0.5 * torch.randn(N, C, generator=gen, dtype=torch.float64)).argmax(1)
    return [(x[i:i + B], y[i:i + B]) for i in range(0, N, B)]


def _twins(seed=1):
    torch.manual_seed(seed)
    model = nn.Linear(D, C).double()
    twin = nn.Linear(D, C).double()
    twin.load_state_dict(model.state_dict())
    return model, twin


def _closure(model, xb, yb):
    def closure(create_graph=False):
        model.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        return loss
    return closure


def _vector(model):
    return torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()


def _ours_x(opt, model):
    with opt.evaluation_weights():
        return _vector(model)


def _package_x(ref, model):
    """x of a package optimizer: its reference classes keep x in the state, the others recover
    it from y and z in ``eval()``."""
    if "x" in ref.state[next(iter(model.parameters()))]:
        return torch.cat([ref.state[p]["x"].reshape(-1) for p in model.parameters()])
    ref.eval()
    x = _vector(model)
    ref.train()
    return x


def _compare_schedulefree(name, hparams, ref_cls, ref_hparams):
    batches = _problem()
    model, twin = _twins()
    opt = build_optimizer(name, model, **hparams)
    ref = ref_cls(twin.parameters(), **ref_hparams)
    ref.train()
    for t in range(STEPS):
        xb, yb = batches[t % len(batches)]
        loss = opt.step(_closure(model, xb, yb))
        ref_loss = ref.step(_closure(twin, xb, yb))
        assert loss.item() == pytest.approx(ref_loss.item(), rel=1e-12), f"loss at step {t}"
        torch.testing.assert_close(_vector(model), _vector(twin), **TOL, msg=f"y after step {t}")
        torch.testing.assert_close(_ours_x(opt, model), _package_x(ref, twin), **TOL,
                                   msg=f"x after step {t}")
    assert not torch.allclose(_ours_x(opt, model), _vector(model))  # x and y are distinct points


SGD_HP = dict(lr=0.5, momentum=0.9, weight_decay=0.05, warmup_steps=3, weight_lr_power=2.0)


@pytest.mark.parametrize("ref_name", ["SGDScheduleFreeReference", "SGDScheduleFree"])
def test_sgd_schedulefree_matches_the_authors_package(ref_name):
    """Same update, warm-up, lr_max-weighted average and L2 at y as the package's classes."""
    _compare_schedulefree("sgd_schedulefree", SGD_HP, getattr(schedulefree, ref_name),
                          dict(SGD_HP, foreach=False))


ADAMW_HP = dict(lr=0.05, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05, warmup_steps=3,
                weight_lr_power=2.0)


def test_adamw_schedulefree_matches_the_papers_form_in_the_package():
    """Ours is the paper's Algorithm 1, kept in the package as ``AdamWScheduleFreePaper``:
    gamma_t = lr * warmup * sqrt(1 - beta2^(t+1)), d = g / (sqrt(v) + eps) + wd * y, and the
    average's weights use max gamma_t (bias correction included). Checked with decay and warm-up."""
    _compare_schedulefree("adamw_schedulefree", ADAMW_HP, schedulefree.AdamWScheduleFreePaper,
                          dict(ADAMW_HP, foreach=False))


def test_adamw_schedulefree_differs_from_the_packages_default_only_where_stated():
    """The package's default ``AdamWScheduleFree(Reference)`` moved the bias correction:
    d = g / (sqrt(v / bc2) + eps) with step lr, decay lr * wd * y, and averaging weights from
    lr alone. Ours scales the step (and the decay) by sqrt(bc2) and leaves eps unscaled, and its
    weights include sqrt(bc2). With eps = 0, no decay and weight_lr_power = 0 (uniform weights)
    the two agree; that checks the rest. With the defaults they differ."""
    hp = dict(ADAMW_HP, eps=0.0, weight_decay=0.0, weight_lr_power=0.0)
    _compare_schedulefree("adamw_schedulefree", hp, schedulefree.AdamWScheduleFreeReference, hp)
    with pytest.raises(AssertionError, match="after step"):
        _compare_schedulefree("adamw_schedulefree", ADAMW_HP, schedulefree.AdamWScheduleFreeReference,
                              ADAMW_HP)


AVERAGED = {
    "sgd_polyak": ({}, lambda: {}),
    "sgd_ema": ({"ema_decay": 0.8}, lambda: {"avg_fn": swa_utils.get_ema_avg_fn(0.8)}),
    "sgd_swa": ({"swa_every": 3}, lambda: {}),
}


@pytest.mark.parametrize("name", sorted(AVERAGED))
def test_averages_match_torch_swa_utils(name):
    """Live weights follow torch.optim.SGD (momentum, L2); the evaluated weights follow an
    AveragedModel updated after every iterate whose progress (steps / batches per epoch) has
    reached start_epoch, every swa_every-th one for SWA. Difference on purpose: ours zeroes the
    average wherever the live weights are zero (a projection's support), checked at the end."""
    hparams, reference_kwargs = AVERAGED[name]
    every = hparams.get("swa_every", 1)
    batches = _problem()
    model, twin = _twins()
    sgd_hp = dict(lr=0.2, momentum=0.9, weight_decay=0.05)
    opt = build_optimizer(name, model, **sgd_hp, start_epoch=1.5, **hparams)
    sgd = torch.optim.SGD(twin.parameters(), **sgd_hp)
    averaged = swa_utils.AveragedModel(twin, **reference_kwargs())
    step, eligible = 0, 0
    for _ in range(4):
        opt.on_epoch_start(None)
        for j, (xb, yb) in enumerate(batches):
            opt.on_batch(j, len(batches))
            opt.step(_closure(model, xb, yb))
            sgd.step(_closure(twin, xb, yb))
            step += 1
            if step / len(batches) >= 1.5:
                eligible += 1
                if (eligible - 1) % every == 0:
                    averaged.update_parameters(twin)
            torch.testing.assert_close(_vector(model), _vector(twin), **TOL)
            expected = _vector(averaged.module) if int(averaged.n_averaged) else _vector(twin)
            torch.testing.assert_close(_ours_x(opt, model), expected, **TOL, msg=f"step {step}")
    assert int(averaged.n_averaged) == (11 if every == 1 else 4)
    with torch.no_grad():
        model.weight[0].zero_()
    live = _vector(model)
    inside = _ours_x(opt, model)
    kept = live != 0
    torch.testing.assert_close(inside[kept], _vector(averaged.module)[kept], **TOL)
    assert (inside[~kept] == 0).all() and (_vector(averaged.module)[~kept] != 0).all()
    assert torch.equal(_vector(model), live)


@pytest.mark.parametrize("name", sorted(AVERAGED))
def test_averages_of_projected_iterates_match_torch_swa_utils(name):
    """Sparse projection (top-k of the weight matrix after every step, optimizer state zeroed
    where pruned): the average is AveragedModel's over the projected iterates, shown on the
    live support. Weights leave and re-enter the support, so a zeroed average would show."""
    from helpers.constraints.sparsity import apply_masks_, mask_state_, topk_masks
    hparams, reference_kwargs = AVERAGED[name]
    batches = _problem()
    model, twin = _twins()
    sgd_hp = dict(lr=0.3, momentum=0.9, weight_decay=0.0)
    opt = build_optimizer(name, model, **sgd_hp, start_epoch=0.0, **hparams)
    sgd = torch.optim.SGD(twin.parameters(), **sgd_hp)
    averaged = swa_utils.AveragedModel(twin, **reference_kwargs())
    every = hparams.get("swa_every", 1)
    supports, eligible = [], 0
    for _ in range(3):
        opt.on_epoch_start(None)
        for j, (xb, yb) in enumerate(batches):
            opt.on_batch(j, len(batches))
            opt.step(_closure(model, xb, yb))
            sgd.step(_closure(twin, xb, yb))
            for net, optimizer in ((model, opt), (twin, sgd)):
                masks = topk_masks([net.weight.detach()], 9)
                apply_masks_([net.weight], masks)
                mask_state_(optimizer, [net.weight], masks)
            supports.append(model.weight.detach() != 0)
            eligible += 1
            if (eligible - 1) % every == 0:
                averaged.update_parameters(twin)
            live = _vector(model)
            torch.testing.assert_close(live, _vector(twin), **TOL)
            kept = live != 0
            inside = _ours_x(opt, model)
            torch.testing.assert_close(inside[kept], _vector(averaged.module)[kept], **TOL,
                                       msg=f"step {eligible}")
            assert (inside[~kept] == 0).all()
    supports = torch.stack(supports)
    was_kept = supports.cummax(0).values
    returned = supports[2:] & ~supports[1:-1] & was_kept[:-2]
    assert returned.any()  # weights left the support and came back


@pytest.mark.parametrize("name", ["lookahead_sgd", "lookahead_adam"])
def test_lookahead_rules_match_lookahead_around_torch_optim(name):
    """The registry's stacked Lookahead rules (three models, their own k, alpha and lr) against
    the generic Lookahead wrapper around torch.optim.SGD (Nesterov) / torch.optim.Adam."""
    from helpers.optimizers import get_spec
    from helpers.optimizers.stacked import lr_column
    spec = get_spec(name)
    hparams = [dict(spec.defaults, lr=0.05, k=2, alpha=0.5), dict(spec.defaults, lr=0.02, k=3, alpha=0.8),
               dict(spec.defaults, lr=0.1, k=5, alpha=0.3, weight_decay=0.01)]
    batches = _problem()
    models = [_twins()[0] for _ in hparams]
    refs = [spec.build(m, **h) for m, h in zip(models, hparams)]
    p = torch.cat([_vector(m).view(1, -1) for m in models])
    rule = spec.rule(hparams, p)
    rule.start(p)
    for t in range(12):
        xb, yb = batches[t % len(batches)]
        g = []
        for m, ref in zip(models, refs):
            closure = _closure(m, xb, yb)
            closure()
            g.append(torch.cat([q.grad.reshape(-1) for q in m.parameters()]))
            ref.step(closure)
        rule.step(p, torch.stack(g), lr_column([h["lr"] for h in hparams], p))
        for i, (m, ref) in enumerate(zip(models, refs)):
            torch.testing.assert_close(p[i], _vector(m), **TOL, msg=f"model {i} step {t}")
            torch.testing.assert_close(rule.evaluation_weights(p)[i], _ours_x(ref, m), **TOL)
