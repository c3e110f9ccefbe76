"""The physical limit: LeNet-5's training FLOPs per sample and the device's measured peak FLOP rate.

FLOPs per sample are counted from the model itself (forward hooks on one image): each
convolution and linear layer costs ``MACs = output entries x (input channels / groups x
kernel area)`` (linear: in x out features) multiply-adds in the forward pass, i.e. 2 MACs
FLOPs; training adds the weight gradient of every layer (2 MACs) and the input gradient of
every layer but the first (2 MACs; the images need no gradient): ``6 total - 2 first``.
Biases, ReLU, pooling, the loss and the update are not counted (under 1% of the total).

Peak: the best of several float32 ``n x n`` matrix products (``2 n^3`` FLOPs) at the torch
thread count in force, timed by this process's CPU time on a CPU (wall time with a CUDA
synchronize on a GPU). A matmul is the fastest kernel the library has, so the fraction
measured against it is an upper bound on what the convolutions could reach.
"""
from __future__ import annotations

import time

import torch
from torch import nn

from helpers.problem.model import LeNet5


def layer_macs() -> list[tuple[str, int]]:
    """Forward multiply-adds per sample of each convolution and linear layer, in call order."""
    model = LeNet5()
    macs: list[tuple[str, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name, k=per_out: macs.append((name, o.numel() * k))))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: macs.append((name, m.in_features * m.out_features))))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in hooks:
        h.remove()
    return macs


def training_flops_per_sample() -> dict:
    """``forward``, ``training`` (forward + backward) FLOPs per sample and the per-layer MACs."""
    macs = layer_macs()
    total, first = sum(m for _, m in macs), macs[0][1]
    return {"forward": 2 * total, "training": 6 * total - 2 * first, "layer_macs": dict(macs)}


def peak_flops(device: torch.device, n: int = 2048, repeats: int = 5) -> dict:
    """Measured float32 matmul rate (FLOP/s): the best of ``repeats`` products of ``n x n``."""
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter() if device.type == "cuda" else time.process_time()
        a @ b
        _sync(device)
        best = min(best, (time.perf_counter() if device.type == "cuda" else time.process_time()) - t)
    return {"flops_per_s": 2 * n ** 3 / best, "n": n, "repeats": repeats,
            "clock": "wall" if device.type == "cuda" else "process CPU time",
            "threads": torch.get_num_threads()}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
