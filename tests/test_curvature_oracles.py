"""BackPACK (Dangel, Kunstner & Hennig 2020) as an independent oracle for curvature pieces.

* K-FAC factors against BackPACK's KFLR (exact expectation over the model's classes). Our
  K-FAC draws one target per example (``fisher="sampled"``); to compare exactly, the batch is
  replicated once per class c with per-row loss weights sqrt(K p_c) and run through our
  ``fisher="empirical"`` path, whose output factor is then sum_n sum_c p_c Ds Ds^T / N, the
  exact Fisher factor KFLR computes. Linear layers: both factors (ours carry the bias as a
  trailing 1 in the activation, BackPACK's weight factor does not). Conv2d: the activation
  factor; BackPACK's is sum_{n,t} a a^T / N, ours the KFC mean over the T locations, so they
  differ by T. BackPACK's conv output factor sums Ds over the locations before the outer
  product (the bias GGN), not KFC's sum_t Ds_t Ds_t^T, so it is no oracle for ours (ours is
  checked by explicit loops in test_curvature_rules.py).
* AdaHessian's Hutchinson target: with unit probes e_j, sum_j e_j (H e_j) is the exact
  diagonal, compared with BackPACK's DiagHessian.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers.optimizers.adahessian import AdaHessian
from helpers.optimizers.kfac import KFAC

backpack = pytest.importorskip("backpack")
from backpack.extensions import KFLR, DiagHessian  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

DOUBLE = torch.float64


def _conv_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(2, 3, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 5), nn.Tanh(), nn.Linear(5, 4)).double()


def _kflr(model, x, y):
    extended = backpack.extend(copy.deepcopy(model))
    loss_fn = backpack.extend(nn.CrossEntropyLoss())
    with backpack.backpack(KFLR()):
        loss_fn(extended(x), y).backward()
    return {name: [f.detach() for f in p.kflr] for name, p in extended.named_parameters()}


def _kfac_exact_expectation(model, x):
    """Our K-FAC factors after one factor update on x, classes enumerated with sqrt(K p_c) weights."""
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
    n, k = probs.shape
    rows = x.repeat(k, *([1] * (x.dim() - 1)))
    targets = torch.arange(k).repeat_interleave(n)
    weights = (k * probs.T.reshape(-1)).sqrt()

    def closure(create_graph=False):
        model.zero_grad()
        loss = (weights * F.cross_entropy(model(rows), targets, reduction="none")).mean()
        loss.backward(create_graph=create_graph)
        return loss
    opt = KFAC(model, lr=1e-12, momentum=0.0, fisher="empirical", factor_interval=1, kl_clip=0.0)
    opt.step(closure)
    return opt


def test_kfac_factors_match_backpack_kflr_for_linear_and_conv_layers():
    model = _conv_net()
    x = torch.randn(6, 2, 7, 7, dtype=DOUBLE, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    oracle = _kflr(model, x, y)
    opt = _kfac_exact_expectation(model, x)
    for index in ("3", "5"):  # the Linear layers
        state = opt.state[model[int(index)].weight]
        g_ref, a_ref = oracle[f"{index}.weight"]
        torch.testing.assert_close(state["G"], g_ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(state["A"][:-1, :-1], a_ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(state["G"], oracle[f"{index}.bias"][0], rtol=1e-9, atol=1e-12)
    locations = 4 * 4
    conv_a = opt.state[model[0].weight]["A"]
    torch.testing.assert_close(conv_a[:-1, :-1] * locations, oracle["0.weight"][1], rtol=1e-9, atol=1e-12)
    assert float(conv_a[-1, -1]) == pytest.approx(1.0)


def test_adahessian_diagonal_target_matches_backpack_diag_hessian():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2, padding=1), nn.Tanh(), nn.Flatten(),
                          nn.Linear(2 * 3 * 3, 3)).double()
    x = torch.randn(5, 1, 5, 5, dtype=DOUBLE, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([0, 1, 2, 1, 0])
    extended = backpack.extend(copy.deepcopy(model))
    loss_fn = backpack.extend(nn.CrossEntropyLoss())
    with backpack.backpack(DiagHessian()):
        loss_fn(extended(x), y).backward()
    oracle = [p.diag_h.detach() for p in extended.parameters()]

    params = list(model.parameters())
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    diagonal = [torch.zeros_like(p) for p in params]
    for i, p in enumerate(params):
        for j in range(p.numel()):
            unit = [torch.zeros_like(q) for q in params]
            unit[i].view(-1)[j] = 1.0
            diagonal[i] += AdaHessian.hutchinson(params, grads, unit)[i]
    for ours, ref in zip(diagonal, oracle):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    assert float(torch.cat([d.flatten() for d in oracle]).abs().max()) > 1e-3
