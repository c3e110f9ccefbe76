"""The unfolded-patch conv blocks (the GPU alternative to grouped convolutions) compute what
the grouped path computes: bit for bit on small-integer data, pooling ties included, and for
the whole model in float64 (they run here on the CPU; on CUDA the engine picks them with
``FMNIST_GPU_CONV=unfold``)."""
import pytest
import torch
import torch.nn.functional as F

from exact_data import integers, tied_share
from feature_paths import assert_features_match_grouped
from helpers.engine import stacked_model, unfolded_convs
from helpers.problem.model import LeNet5

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("models, batch, channels, shared", [(1, 5, 1, False), (3, 4, 1, False), (3, 6, 1, True),
                                                              (2, 3, 6, False)])
def test_block_is_max_pool_of_the_grouped_convolution_bit_for_bit_ties_included(models, batch, channels, shared):
    side = 28 if channels == 1 else 12
    h = integers(1 if shared else models, batch, channels, side, side, low=0, high=2).requires_grad_()
    w = integers(models, 16, channels, 5, 5, low=-1, high=2, seed=1).requires_grad_()
    b = integers(models, 16, seed=2).requires_grad_()
    grouped_input = (h[0] if shared else h.transpose(0, 1).reshape(batch, models * channels, side, side))
    conv = F.conv2d(grouped_input, w.reshape(-1, channels, 5, 5) if not shared else w.reshape(-1, 1, 5, 5),
                    b.reshape(-1), groups=1 if shared else models)
    assert tied_share(conv) > 0.05
    want = F.max_pool2d(conv, 2).relu()
    got = unfolded_convs.conv_pool_relu(h.permute(0, 1, 3, 4, 2), w, b)
    out = side // 2 - 2
    assert torch.equal(got.permute(1, 0, 4, 2, 3).reshape(batch, models * 16, out, out), want)
    upstream = integers(*want.shape, seed=3)
    leaves = [w, b] if shared else [h, w, b]
    want_grads = torch.autograd.grad((want * upstream).sum(), leaves)
    got_grads = torch.autograd.grad((got.permute(1, 0, 4, 2, 3).reshape(want.shape) * upstream).sum(), leaves)
    for name, a, c in zip(["h", "w", "b"][-len(leaves):], got_grads, want_grads):
        assert torch.equal(a, c), name


@pytest.mark.parametrize("shared", [False, True])
def test_model_features_and_gradients_equal_the_grouped_path_in_float64(shared):
    torch.manual_seed(0)
    flat = stacked_model.stack_models([LeNet5().double() for _ in range(3)])
    x = torch.rand(*((5,) if shared else (3, 5)), 1, 28, 28, dtype=torch.float64)
    assert_features_match_grouped(flat, x, shared, unfolded_convs.features, dict(rtol=1e-12, atol=1e-12),
                                  dict(rtol=1e-10, atol=1e-12))


def test_an_unknown_gpu_conv_choice_is_named(monkeypatch):
    monkeypatch.setenv("FMNIST_GPU_CONV", "winograd")
    with pytest.raises(ValueError, match="FMNIST_GPU_CONV=.winograd.: choose one of grouped, unfold, triton_conv1, triton"):
        unfolded_convs.choice()
