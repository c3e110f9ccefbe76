"""The one-model CPU layers compute what the grouped convolutions compute, gradients and ties included.

Inputs and weights are small integers in float64, so every product and sum is exact and
pooling windows hold many exact ties between *different* input patches: a gradient routed to
any but max_pool2d's first maximum changes the weight gradient.
"""
import functools

import pytest
import torch
import torch.nn.functional as F

from exact_data import integers, tied_share
from helpers.engine import stacked_model
from helpers.engine.one_model_cpu import Conv1PoolReLU, Conv2d
from helpers.problem.model import LeNet5

pytestmark = pytest.mark.usefixtures("one_thread")


def _integers(*shape, **kwargs):
    return integers(*shape, dtype=torch.float64, **kwargs)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_conv1_pool_relu_is_max_pool_of_the_convolution_ties_included(batch):
    x = _integers(batch, 1, 28, 28, low=0, high=2)
    w = _integers(6, 1, 5, 5, seed=1).requires_grad_()
    b = _integers(6, seed=2).requires_grad_()
    want = F.max_pool2d(F.conv2d(x, w, b), 2).relu()
    got = Conv1PoolReLU.apply(x, w.reshape(6, 5, 5), b)
    assert got.is_contiguous(memory_format=torch.channels_last)
    conv = F.conv2d(x, w, b)
    assert tied_share(conv) > 0.1
    assert torch.equal(got, want)
    upstream = _integers(*want.shape, seed=3)
    assert all(torch.equal(a, c) for a, c in zip(torch.autograd.grad((got * upstream).sum(), [w, b]),
                                                 torch.autograd.grad((want * upstream).sum(), [w, b])))


def test_conv2_gradients_are_the_convolution_s():
    h = _integers(9, 6, 12, 12, seed=4).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = _integers(16, 6, 5, 5, seed=5).requires_grad_()
    b = _integers(16, seed=6).requires_grad_()
    upstream = _integers(9, 16, 8, 8, seed=7)
    got = Conv2d.apply(h, w, b)
    want = F.conv2d(h, w, b)
    assert torch.equal(got, want)
    assert all(torch.equal(a, c) for a, c in zip(torch.autograd.grad((got * upstream).sum(), [h, w, b]),
                                                 torch.autograd.grad((want * upstream).sum(), [h, w, b])))


@pytest.mark.parametrize("shared", [False, True])
def test_one_model_on_a_cpu_gets_the_grouped_path_s_loss_and_gradient(shared, monkeypatch):
    torch.manual_seed(0)
    flat = stacked_model.stack_models([LeNet5()]).double()
    x = torch.rand(33, 1, 28, 28, dtype=torch.float64)
    x[:, :, :6] = 0.0  # a blank border, as in Fashion-MNIST: tied pooling windows
    y = torch.randint(0, 10, (33,))
    args = (x, y) if shared else (x[None], y[None])
    loss, grad = stacked_model.losses_and_grad(flat, *args, shared=shared)
    monkeypatch.setattr(stacked_model, "features", functools.partial(stacked_model.features, fast=False))
    want_loss, want_grad = stacked_model.losses_and_grad(flat, *args, shared=shared)
    torch.testing.assert_close(loss, want_loss, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad, want_grad, rtol=1e-10, atol=1e-14)
