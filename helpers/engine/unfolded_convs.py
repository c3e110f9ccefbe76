"""LeNet-5's two conv blocks for K models as batched matmuls over unfolded patches.

A GPU alternative to cuDNN's grouped convolutions (groups = K), the engine's layers there (not
yet profiled; table (f) of the README shows the per-model cost at K = 128): each block copies
its 5 x 5 patches into a ``[K, B * positions, C * 25]`` matrix and multiplies it by the ``[K, C * 25, O]`` weights with one
``baddbmm`` (cuBLAS, batched over the models); the outputs are laid out channels-last, so
max-pooling reads them without a copy. Same function and gradients as the grouped path,
pooling ties included (``F.max_pool2d`` routes the gradient); only rounding differs. Used on
CUDA with ``FMNIST_GPU_CONV=unfold`` (:func:`~helpers.engine.stacked_model.features`);
``triton_conv1`` takes the first block from :mod:`~helpers.engine.triton_convs`, ``triton`` both;
each until a GPU run has measured it against the grouped path (``tools/device_speed.sh``).
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

SWITCH = "FMNIST_GPU_CONV"
CHOICES = ("grouped", "unfold", "triton_conv1", "triton")
BLOCKS = {"unfold": ("unfold", "unfold"), "triton_conv1": ("triton", "unfold"), "triton": ("triton", "triton")}


def choice() -> str:
    """The GPU conv path the environment asks for (``FMNIST_GPU_CONV``, default grouped)."""
    value = os.environ.get(SWITCH, "grouped")
    if value not in CHOICES:
        raise ValueError(f"{SWITCH}={value!r}: choose one of {', '.join(CHOICES)}")
    return value


def conv_pool_relu(h: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """relu(max_pool2d(conv2d(h_k, w_k) + b_k, 2)) for each model k, channels-last in and out.

    ``h``: ``[K, B, H, W, C]`` (or ``[1, B, H, W, C]``: the same images for every model);
    ``w``: ``[K, O, C, 5, 5]``; ``b``: ``[K, O]``. Returns ``[K, B, H', W', O]`` with
    H' = (H - 4) // 2, W' = (W - 4) // 2.
    """
    k, o, c = w.shape[:3]
    n, height, width = h.shape[1:4]
    oh, ow = height - 4, width - 4
    patches = h.unfold(2, 5, 1).unfold(3, 5, 1).reshape(h.shape[0], n * oh * ow, c * 25)
    if patches.shape[0] != k:
        patches = patches.expand(k, -1, -1)
    conv = torch.baddbmm(b.unsqueeze(1), patches, w.reshape(k, o, c * 25).transpose(1, 2))
    nchw = conv.view(k * n, oh, ow, o).permute(0, 3, 1, 2)
    pooled = F.max_pool2d(nchw, 2).relu()
    return pooled.permute(0, 2, 3, 1).reshape(k, n, oh // 2, ow // 2, o)


def features(p: dict[str, torch.Tensor], x: torch.Tensor, shared: bool, path: str = "unfold") -> torch.Tensor:
    """fc1's input ``[K, B, 256]`` (in ``(channel, row, column)`` order, as LeNet-5 flattens).

    ``path`` (:data:`BLOCKS`): each block unfolded, or as the Triton kernels of
    :mod:`~helpers.engine.triton_convs` (float32 only; other dtypes stay unfolded)."""
    conv1, conv2 = BLOCKS[path] if x.dtype == torch.float32 else BLOCKS["unfold"]
    k = p["fc3.bias"].shape[0]
    images = x.reshape(1 if shared else k, x.shape[-4], 28, 28, 1)
    w1, b1 = p["conv1.weight"].reshape(k, 6, 1, 5, 5), p["conv1.bias"].reshape(k, 6)
    w2, b2 = p["conv2.weight"].reshape(k, 16, 6, 5, 5), p["conv2.bias"].reshape(k, 16)
    if "triton" in (conv1, conv2):
        from . import triton_convs
    h = triton_convs.Conv1PoolReLU.apply(images.reshape(images.shape[:4]), w1, b1) if conv1 == "triton" \
        else conv_pool_relu(images, w1, b1)
    if conv2 == "triton":
        return triton_convs.Conv2PoolReLU.apply(h, w2, b2)
    h = conv_pool_relu(h, w2, b2)
    return h.permute(0, 1, 4, 2, 3).reshape(k, h.shape[1], 256)
