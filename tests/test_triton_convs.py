"""The Triton conv + pool + ReLU kernels compute what the grouped path computes, bit for bit on
small-integer data (pooling ties between different patches included; every gradient, conv2's
input gradient too), NaN as ``max_pool2d`` and ReLU treat it, and inside the engine's features. On CUDA the kernels are compiled; without a
GPU this module runs itself again in a subprocess under Triton's interpreter
(``TRITON_INTERPRET=1`` must be set before Triton is first imported)."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from exact_data import integers, tied_share
from feature_paths import assert_features_match_grouped
from helpers.engine import stacked_model, unfolded_convs
from helpers.problem.model import LeNet5

triton = pytest.importorskip("triton")

pytestmark = pytest.mark.usefixtures("one_thread", "full_float32")
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
RUNS_HERE = DEVICE == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"
CHECKS = 9  # the tests below marked @here
here = pytest.mark.skipif(not RUNS_HERE, reason="run by test_the_kernel_checks_pass_under_the_interpreter")


@pytest.mark.skipif(RUNS_HERE, reason="the checks run in this process")
def test_the_kernel_checks_pass_under_the_interpreter():
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-o", "addopts=", "-p", "no:cacheprovider", __file__],
                          env={**os.environ, "TRITON_INTERPRET": "1"}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert f"{CHECKS} passed" in done.stdout.splitlines()[-1]


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1", reason="the interpreter compiles nothing")
@pytest.mark.parametrize("name", ["_conv1_forward", "_conv1_backward", "_conv2_forward", "_conv2_backward_weights",
                                  "_conv2_backward_input"])
def test_each_kernel_compiles_to_machine_code_for_an_h200(name):
    """Triton compiles for a GPU without one (PTX, then ptxas to a sm_90 cubin): what the
    interpreter accepts but the compiler would not (types, shapes, unsupported operations) fails here."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from helpers.engine import triton_convs
    fn = getattr(triton_convs, name)
    types = {"BLOCK": "constexpr", "arg_ptr": "*i8"}
    signature = {a: types.get(a, "*fp32" if a.endswith("_ptr") else "i32") for a in fn.arg_names}
    block = triton_convs.INPUT_BLOCK if name == "_conv2_backward_input" else triton_convs.BLOCK
    compiled = triton.compile(ASTSource(fn=fn, signature=signature, constexprs={"BLOCK": block}),
                              target=GPUTarget("cuda", 90, 32))
    assert compiled.asm["cubin"] and ".entry " + name in compiled.asm["ptx"]


@pytest.fixture(scope="module")
def kernel():
    from helpers.engine.triton_convs import Conv1PoolReLU
    return Conv1PoolReLU


@pytest.fixture(scope="module")
def kernel2():
    from helpers.engine.triton_convs import Conv2PoolReLU
    return Conv2PoolReLU


def _grouped(x, w, b, shared):
    """The reference: grouped conv2d, max_pool2d, ReLU, as ``[K, B, 12, 12, 6]``."""
    k, n = w.shape[0], x.shape[1]
    images = x[0].unsqueeze(1) if shared else x.transpose(0, 1)
    conv = F.conv2d(images, w.reshape(-1, 1, 5, 5), b.reshape(-1), groups=1 if shared else k)
    return conv, F.max_pool2d(conv, 2).relu().reshape(n, k, 6, 12, 12).permute(1, 0, 3, 4, 2)


@here
@pytest.mark.parametrize("models, batch, shared", [(1, 3, False), (3, 2, False), (2, 3, True)])
def test_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included(kernel, models, batch, shared):
    x = integers(1 if shared else models, batch, 28, 28, low=0, high=2).to(DEVICE)
    w = integers(models, 6, 1, 5, 5, seed=1).to(DEVICE).requires_grad_()
    b = integers(models, 6, seed=2).to(DEVICE).requires_grad_()
    conv, want = _grouped(x, w, b, shared)
    assert tied_share(conv.cpu()) > 0.05
    got = kernel.apply(x, w, b)
    assert torch.equal(got, want)
    upstream = integers(*want.shape, seed=3).to(DEVICE)
    got_grads = torch.autograd.grad((got * upstream).sum(), [w, b])
    want_grads = torch.autograd.grad((want * upstream).sum(), [w, b])
    assert all(torch.equal(a, c) for a, c in zip(got_grads, want_grads))


@here
def test_a_nan_input_gives_nan_where_the_grouped_path_does(kernel):
    x = integers(2, 2, 28, 28, low=0, high=2).to(DEVICE)
    x[0, 1, 5, 7] = float("nan")
    w = integers(2, 6, 1, 5, 5, seed=1).to(DEVICE)
    b = integers(2, 6, seed=2).to(DEVICE)
    got, want = kernel.apply(x, w, b), _grouped(x, w, b, False)[1]
    assert torch.equal(got.isnan(), want.isnan()) and int(got.isnan().sum()) > 0
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


@here
@pytest.mark.parametrize("models, batch", [(1, 2), (3, 2)])
def test_conv2_kernel_is_max_pool_of_the_convolution_bit_for_bit_ties_included(kernel2, models, batch):
    h = integers(models, batch, 12, 12, 6, low=0, high=2).to(DEVICE).requires_grad_()
    w = integers(models, 16, 6, 5, 5, low=-1, high=2, seed=1).to(DEVICE).requires_grad_()
    b = integers(models, 16, seed=2).to(DEVICE).requires_grad_()
    grouped_input = h.permute(1, 0, 4, 2, 3).reshape(batch, models * 6, 12, 12)
    conv = F.conv2d(grouped_input, w.reshape(-1, 6, 5, 5), b.reshape(-1), groups=models)
    assert tied_share(conv.cpu()) > 0.05
    want = F.max_pool2d(conv, 2).relu().reshape(batch, models, 256).transpose(0, 1)
    got = kernel2.apply(h, w, b)
    assert torch.equal(got, want)
    upstream = integers(*want.shape, seed=3).to(DEVICE)
    got_grads = torch.autograd.grad((got * upstream).sum(), [h, w, b])
    want_grads = torch.autograd.grad((want * upstream).sum(), [h, w, b])
    for name, a, c in zip("hwb", got_grads, want_grads):
        assert torch.equal(a, c), name


@here
def test_conv2_nan_input_gives_nan_where_the_grouped_path_does(kernel2):
    h = integers(2, 2, 12, 12, 6, low=0, high=2).to(DEVICE)
    h[1, 0, 3, 4, 2] = float("nan")
    w = integers(2, 16, 6, 5, 5, low=-1, high=2, seed=1).to(DEVICE)
    b = integers(2, 16, seed=2).to(DEVICE)
    conv = F.conv2d(h.permute(1, 0, 4, 2, 3).reshape(2, 12, 12, 12), w.reshape(-1, 6, 5, 5), b.reshape(-1), groups=2)
    want = F.max_pool2d(conv, 2).relu().reshape(2, 2, 256).transpose(0, 1)
    got = kernel2.apply(h, w, b)
    assert torch.equal(got.isnan(), want.isnan()) and int(got.isnan().sum()) > 0
    assert torch.equal(got.nan_to_num(), want.nan_to_num())


@here
@pytest.mark.parametrize("path", ["triton_conv1", "triton"])
def test_engine_features_with_the_kernels_equal_the_grouped_path(kernel, path):
    """Both blocks by the kernels, or conv1 by its kernel and conv2 unfolded, against grouped
    convolutions (float32 on random data: rounding only)."""
    torch.manual_seed(0)
    flat = stacked_model.stack_models([LeNet5() for _ in range(2)]).to(DEVICE)
    x = torch.rand(2, 3, 1, 28, 28, device=DEVICE)
    assert_features_match_grouped(flat, x, False, lambda p, x, shared: unfolded_convs.features(p, x, shared, path),
                                  dict(rtol=1e-5, atol=1e-6), dict(rtol=1e-4, atol=1e-5))
