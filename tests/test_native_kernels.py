"""The compiled conv + pool + ReLU kernels compute what the grouped convolutions compute.

Small-integer inputs and weights keep every float32 product and sum exact, so the kernel must
match the grouped path bit for bit, and pooling windows hold many exact ties between different
input patches: a gradient routed to any but max_pool2d's first maximum changes the weight
gradient.
"""
import functools
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from exact_data import integers, tied_share
from helpers.engine import native, stacked_model
from helpers.problem.model import LeNet5

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not native.available(), reason=f"no native kernel: {native.unavailable_reason()}")]


def _grouped(x, w, b, shared):
    k = w.shape[0]
    h = x if shared else x.reshape(k, x.shape[1], 28, 28).transpose(0, 1)
    h = F.conv2d(h.contiguous(memory_format=torch.channels_last), w.reshape(k * 6, 1, 5, 5), b.reshape(-1),
                 groups=1 if shared else k)
    return F.max_pool2d(h, 2).relu()


@pytest.mark.parametrize("models, batch, shared", [(1, 1, False), (1, 64, False), (3, 7, False), (3, 9, True)])
def test_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included(models, batch, shared):
    x = integers(*((batch,) if shared else (models, batch)), 1, 28, 28, low=0, high=2)
    w = integers(models, 6, 1, 5, 5, seed=1).requires_grad_()
    b = integers(models, 6, seed=2).requires_grad_()
    want = _grouped(x, w, b, shared)
    got = native.Conv1PoolReLU.apply(x, w, b, shared)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(got, want)
    upstream = integers(*want.shape, seed=3)
    got_grads = torch.autograd.grad((got * upstream).sum(), [w, b])
    want_grads = torch.autograd.grad((want * upstream).sum(), [w, b])
    assert all(torch.equal(a, c) for a, c in zip(got_grads, want_grads))


@pytest.mark.parametrize("models, batch", [(1, 1), (1, 64), (3, 7)])
def test_conv2_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included(models, batch):
    h = integers(batch, models * 6, 12, 12, low=0, high=2).contiguous(memory_format=torch.channels_last)
    h.requires_grad_()
    w = integers(models, 16, 6, 5, 5, low=-1, high=2, seed=1).requires_grad_()
    b = integers(models, 16, seed=2).requires_grad_()
    conv = F.conv2d(h, w.reshape(models * 16, 6, 5, 5), b.reshape(-1), groups=models)
    want = F.max_pool2d(conv, 2).relu().reshape(batch, models, 256).transpose(0, 1)
    assert tied_share(conv) > 0.05
    got = native.Conv2PoolReLU.apply(h, w, b)
    assert torch.equal(got, want)
    upstream = integers(*want.shape, seed=3)
    got_grads = torch.autograd.grad((got * upstream).sum(), [h, w, b])
    want_grads = torch.autograd.grad((want * upstream).sum(), [h, w, b])
    assert all(torch.equal(a, c) for a, c in zip(got_grads, want_grads))


def test_a_nan_input_gives_nan_outputs_where_the_grouped_path_does():
    x = torch.rand(2, 5, 1, 28, 28)
    x[1, 3, 0, 10, 10] = float("nan")
    w, b = torch.randn(2, 6, 1, 5, 5), torch.randn(2, 6)
    got, want = native.Conv1PoolReLU.apply(x, w, b, False), _grouped(x, w, b, False)
    assert got.isnan().any()
    assert torch.equal(got.isnan(), want.isnan())
    torch.testing.assert_close(got, want, equal_nan=True, rtol=1e-5, atol=1e-5)


def test_the_engine_takes_the_kernels_and_gets_the_grouped_path_s_numbers(monkeypatch):
    torch.manual_seed(0)
    flat = stacked_model.stack_models([LeNet5() for _ in range(2)])
    x = torch.rand(2, 64, 1, 28, 28)
    x[..., :6, :] = 0.0
    y = torch.randint(0, 10, (2, 64))
    calls = []
    for kernel in (native.Conv1PoolReLU, native.Conv2PoolReLU):
        monkeypatch.setattr(kernel, "apply", staticmethod(functools.partial(
            lambda real, *a: calls.append(real) or real(*a), kernel.apply)))
    loss, grad = stacked_model.losses_and_grad(flat, x, y)
    assert len(calls) == 2
    monkeypatch.setattr(stacked_model, "features", functools.partial(stacked_model.features, fast=False))
    want_loss, want_grad = stacked_model.losses_and_grad(flat, x, y)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-6)


def test_the_switch_turns_the_kernel_off_and_says_so():
    code = "from helpers.engine import native; print(native.available(), native.unavailable_reason())"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, native.SWITCH: "0"},
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"False {native.SWITCH}=0"


def test_a_failed_build_warns_and_leaves_the_pytorch_path(tmp_path):
    code = ("import pathlib, sys, warnings\n"
            "from helpers.engine import native\n"
            "native.ROOT = pathlib.Path(sys.argv[1])\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    print(native.available(), len(caught), native.unavailable_reason())\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env={**os.environ, "CC": "false"},
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("False 1 ") and "failed on conv1_pool_relu.c conv2_pool_relu.c" in out
    assert not list(tmp_path.rglob("*.so"))
