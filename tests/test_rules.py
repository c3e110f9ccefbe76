"""Each stacked update rule against its reference over several steps, in float64.

References: torch.optim's own SGD / Adam / AdamW / NAdam / RAdam (independent code); for
schedule-free, a hand-written step of the paper's Algorithm 1 (written out below, not the
rule's code). K = 3 models with different hyperparameters run as one stacked rule; each row
must equal its own reference run.
"""
import math

import pytest
import torch

from helpers.optimizers import get_spec
from helpers.optimizers.rules import AdamRule, AdamWRule, NAdamRule, RAdamRule, SGDRule
from helpers.optimizers.schedulefree import (AdamWScheduleFree, AdamWScheduleFreeRule, SGDScheduleFree,
                                             SGDScheduleFreeRule)
from helpers.optimizers.stacked import StackedRule, lr_column

N, STEPS = 7, 12
TOL = dict(rtol=1e-7, atol=1e-9)  # torch.optim.NAdam keeps its mu product in float32 (about 1e-9 apart)

TORCH = {
    SGDRule: (torch.optim.SGD, [dict(lr=0.1), dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
                                dict(lr=0.02, momentum=0.8, nesterov=True, weight_decay=1e-3)]),
    AdamRule: (torch.optim.Adam, [dict(lr=1e-2), dict(lr=3e-3, betas=(0.8, 0.99), weight_decay=1e-2),
                                  dict(lr=1e-3, eps=1e-3)]),
    AdamWRule: (torch.optim.AdamW, [dict(lr=1e-2, weight_decay=0.0), dict(lr=3e-3, weight_decay=0.1),
                                    dict(lr=1e-3, betas=(0.5, 0.9), weight_decay=1e-2)]),
    NAdamRule: (torch.optim.NAdam, [dict(lr=2e-3), dict(lr=1e-2, betas=(0.8, 0.99), weight_decay=1e-2),
                                    dict(lr=1e-3, momentum_decay=1e-2)]),
    RAdamRule: (torch.optim.RAdam, [dict(lr=1e-2), dict(lr=3e-3, betas=(0.9, 0.5), weight_decay=1e-2),
                                    dict(lr=1e-3, betas=(0.8, 0.9))]),
}


def _grads(steps, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(steps, k, N, generator=g, dtype=torch.float64)


def _gradient_of(x, t, i):
    """A deterministic gradient field (a quadratic plus a step-dependent shift)."""
    return x * (1 + 0.1 * i) + torch.sin(torch.arange(N, dtype=torch.float64) + t)


@pytest.mark.parametrize("rule", list(TORCH), ids=lambda r: r.__name__)
def test_rule_matches_torch_optim(rule):
    cls, hparams = TORCH[rule]
    start = torch.randn(len(hparams), N, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    p = start.clone()
    stacked = rule(hparams, p)
    refs = [torch.nn.Parameter(start[i].clone()) for i in range(len(hparams))]
    opts = [cls([w], **h) for w, h in zip(refs, hparams)]
    lrs = [h["lr"] for h in hparams]
    for t in range(STEPS):
        factor = 1.0 - t / (2 * STEPS)
        g = torch.stack([_gradient_of(p[i], t, i) for i in range(len(hparams))])
        stacked.step(p, g, lr_column([lr * factor for lr in lrs], p))
        for i, (w, o) in enumerate(zip(refs, opts)):
            o.param_groups[0]["lr"] = lrs[i] * factor
            w.grad = _gradient_of(w.detach(), t, i)
            o.step()
        for i, w in enumerate(refs):
            torch.testing.assert_close(p[i], w.detach(), **TOL)
            state = opts[i].state[w]
            for name, tensor in stacked.state.items():
                if state.get(name) is None:  # torch.optim.SGD keeps no buffer without momentum
                    assert not hparams[i].get("momentum")
                    continue
                torch.testing.assert_close(tensor[i], state[name], **TOL)


def _schedulefree_by_hand(x0, grads_fn, h, adam, steps):
    """Algorithm 1 of Defazio et al. 2024, one model, written out with Python floats."""
    z, x, v = x0.clone(), x0.clone(), torch.zeros_like(x0)
    y = x0.clone()
    lr_max, weight_sum = 0.0, 0.0
    beta = h["betas"][0] if adam else h["momentum"]
    out = []
    for t in range(steps):
        g = grads_fn(y, t)
        warm = (t + 1) / h["warmup_steps"] if t < h["warmup_steps"] else 1.0
        gamma = h["lr"] * warm
        if adam:
            b2 = h["betas"][1]
            gamma *= math.sqrt(1 - b2 ** (t + 1))
            v = b2 * v + (1 - b2) * g * g
            z = z - gamma * h["weight_decay"] * y - gamma * g / (v.sqrt() + h["eps"])
        else:
            z = z - gamma * (g + h["weight_decay"] * y)
        lr_max = max(lr_max, gamma)
        weight = lr_max ** h["weight_lr_power"]
        weight_sum += weight
        c = weight / weight_sum
        x = (1 - c) * x + c * z
        y = (1 - beta) * z + beta * x
        out.append((y.clone(), x.clone(), z.clone()))
    return out


@pytest.mark.parametrize("rule, adam", [(SGDScheduleFreeRule, False), (AdamWScheduleFreeRule, True)])
def test_schedulefree_rule_matches_a_hand_computed_step(rule, adam):
    base = rule.hyperparameters
    hparams = [dict(base), {**base, "lr": base["lr"] * 0.3, "weight_decay": 1e-2, "warmup_steps": 4},
               {**base, "weight_lr_power": 1.0, "warmup_steps": 2}]
    if adam:
        hparams[2]["betas"] = (0.8, 0.99)
    else:
        hparams[2]["momentum"] = 0.5
    start = torch.randn(3, N, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    p = start.clone()
    stacked = rule(hparams, p)
    stacked.start(p)
    want = [_schedulefree_by_hand(start[i], lambda w, t, i=i: _gradient_of(w, t, i), {**base, **h},
                                  adam, STEPS) for i, h in enumerate(hparams)]
    for t in range(STEPS):
        g = torch.stack([_gradient_of(p[i], t, i) for i in range(3)])
        stacked.step(p, g, lr_column([h["lr"] for h in hparams], p))
        evaluated = stacked.evaluation_weights(p)
        for i in range(3):
            y, x, z = want[i][t]
            torch.testing.assert_close(p[i], y, **TOL)
            torch.testing.assert_close(evaluated[i], x, **TOL)
            torch.testing.assert_close(stacked.state["z"][i], z, **TOL)


@pytest.mark.parametrize("cls, rule", [(SGDScheduleFree, SGDScheduleFreeRule),
                                       (AdamWScheduleFree, AdamWScheduleFreeRule)])
def test_wrapper_is_the_rule_with_one_row(cls, rule):
    torch.manual_seed(3)
    layers = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2)).double()
    params = list(layers.parameters())
    flat = torch.cat([q.detach().reshape(1, -1) for q in params], 1)
    opt = cls(params, lr=0.05, weight_decay=1e-3)
    stacked = rule([{"lr": 0.05, "weight_decay": 1e-3}], flat)
    stacked.start(flat)
    x = torch.randn(5, 4, dtype=torch.float64)
    for _ in range(4):
        opt.zero_grad()
        layers(x).square().sum().backward()
        g = torch.cat([q.grad.reshape(1, -1) for q in params], 1)
        opt.step()
        stacked.step(flat, g, lr_column([0.05], flat))
        torch.testing.assert_close(torch.cat([q.detach().reshape(1, -1) for q in params], 1), flat, **TOL)
    assert opt.state[params[0]]["x"].shape == params[0].shape
    with opt.evaluation_weights():
        torch.testing.assert_close(torch.cat([q.detach().reshape(1, -1) for q in params], 1),
                                   stacked.evaluation_weights(flat), **TOL)
    torch.testing.assert_close(torch.cat([q.detach().reshape(1, -1) for q in params], 1), flat, **TOL)
    opt.state[params[0]]["z"].zero_()
    assert float(opt._rules[0].state["z"][0, :params[0].numel()].abs().sum()) == 0


def test_reset_restores_a_models_state_and_counters():
    p = torch.randn(2, N, dtype=torch.float64)
    rule = NAdamRule([{}, {}], p)
    for t in range(3):
        rule.step(p, _grads(1, 2, t)[0], lr_column([1e-3, 1e-3], p))
    rule.reset(0)
    assert float(rule.state["exp_avg"][0].abs().sum()) == 0 and float(rule.state["exp_avg"][1].abs().sum()) > 0
    assert float(rule.counters["mu_product"][0]) == 1.0 and float(rule.counters["steps"][0]) == 0.0
    assert float(rule.counters["steps"][1]) == 3.0


def test_every_elementwise_method_has_a_rule_and_bad_values_are_named():
    for name in ("sgd", "sgd_basic", "gd", "heavy_ball", "nesterov", "adam", "adamw", "nadam", "radam",
                 "sgd_schedulefree", "adamw_schedulefree"):
        spec = get_spec(name)
        assert issubclass(spec.rule, StackedRule) and spec.version >= 1
        assert set(spec.defaults) <= set(spec.rule.hyperparameters), name
    p = torch.zeros(1, N)
    with pytest.raises(ValueError, match="momentum"):
        SGDRule([{"momentum": 1.5}], p)
    with pytest.raises(ValueError, match="betas"):
        AdamRule([{"betas": (1.0, 0.9)}], p)
    with pytest.raises(ValueError, match="unknown"):
        AdamRule([{"momentum": 0.9}], p)
    with pytest.raises(ValueError, match="warmup_steps"):
        SGDScheduleFree([torch.nn.Parameter(torch.zeros(2))], warmup_steps=-1)
